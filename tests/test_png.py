"""PNG encoding off the GPU's thread."""

from __future__ import annotations

import io

import numpy as np
from conftest import png_image
from PIL import Image

from generation.png import PngEncoder, encode_png


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


def test_pictures_compress_about_as_well_as_pillows_default() -> None:
    """The fast setting costs little in size on a picture with gradients and grain."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:256, 0:256]
    smooth = np.stack([x, y, (x + y) // 2], axis=-1) + rng.integers(0, 12, (256, 256, 3))
    image = Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8))
    default = io.BytesIO()
    image.save(default, format="PNG")  # zlib level 6
    assert len(encode_png(image)) <= len(default.getvalue()) * 1.05
