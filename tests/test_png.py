"""PNG encoding off the GPU's thread."""

from __future__ import annotations

import numpy as np
from conftest import png_image
from PIL import Image

from generation.png import PngEncoder


async def test_encodes_in_order_and_losslessly() -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 32 + 32 * i, 3), dtype=np.uint8)) for i in range(5)]
    encoder = PngEncoder(threads=3)
    try:
        pngs = await encoder.encode(images)
    finally:
        encoder.shutdown()
    for image, png in zip(images, pngs, strict=True):
        assert np.array_equal(np.asarray(png_image(png)), np.asarray(image))
