# Russian prompts translated to English before drawing (generation/translation.py).

tr-caption-note = 🔤 Translated from: <i>{ $typed }</i>

tr-status = Translation ru→en: { $state }

tr-state-on = on
tr-state-loading = loading…
tr-state-off = off
tr-state-failed = off (the model did not load)
tr-state-failed-details = off (the model did not load: { $error })

tr-help = <code>--raw</code>: draw the text exactly as typed (a Russian description is otherwise translated to English first, as the model reads English)
