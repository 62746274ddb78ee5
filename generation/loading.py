"""One model load at a time in the process.

transformers' and diffusers' ``from_pretrained`` build modules under process-wide patches
(``init_empty_weights`` swaps ``nn.Module.register_parameter`` for the whole process, not
one thread): a MarianMT loaded on the translation thread while a worker loaded the
Kandinsky pipelines came out with its weights on the meta device. Every load of ours takes
this lock; drawing and translating do not need it.
"""

from __future__ import annotations

import threading

LOADING = threading.Lock()
