"""Pictures sent to be drawn from: checked and decoded with Pillow, never trusted.

Torch-free, so the bot and the HTTP API check a picture (off the event loop: decoding
takes milliseconds to a second) before a request is accepted; the worker decodes the same
bytes again when it draws.
"""

from __future__ import annotations

import io
import math
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from generation.errors import GenerationError

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # what a Telegram bot may download (getFile)
MAX_IMAGE_PIXELS = 40_000_000
TILE = 64  # Kandinsky's MoVQ works in 64-pixel tiles


class BadImage(GenerationError):
    """A picture that can't be drawn from. ``reason``: "not_image" (not a picture Pillow
    reads, or corrupt), "animated" (GIF, animated WebP/PNG), "too_large" (over
    MAX_IMAGE_BYTES) or "too_many_pixels" (over MAX_IMAGE_PIXELS)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def open_image(data: bytes) -> Image.Image:
    """The picture in ``data`` as RGB, turned upright as its EXIF says. Raises BadImage.

    Pillow's decompression-bomb guard stays on (its warning is an error here), and the
    size is checked from the header before any pixel is decoded.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise BadImage("too_large", f"{len(data)} bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise BadImage("too_many_pixels", f"{image.width}x{image.height}")
            if getattr(image, "n_frames", 1) > 1:
                raise BadImage("animated", image.format or "")
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                # Transparent pixels become white, not the black of a bare convert().
                if "A" in image.getbands() or "transparency" in image.info:
                    rgba = image.convert("RGBA")
                    image = Image.new("RGB", rgba.size, (255, 255, 255))
                    image.paste(rgba, mask=rgba.getchannel("A"))
                else:
                    image = image.convert("RGB")
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage("too_many_pixels", str(exc)) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
            raise BadImage("not_image", f"{type(exc).__name__}: {exc}") from None
    return image


def fit_size(width: int, height: int, pixels: int, max_side: int) -> tuple[int, int]:
    """A drawing size with the picture's aspect ratio at about ``pixels`` pixels, each
    side a multiple of 64 between 64 and ``max_side``."""
    top = max(TILE, max_side // TILE * TILE)
    scale = math.sqrt(pixels / (width * height))
    w, h = width * scale, height * scale
    shrink = min(1.0, top / w, top / h)  # a long side over the max keeps the ratio
    w, h = w * shrink, h * shrink
    return (
        int(min(top, max(TILE, round(w / TILE) * TILE))),
        int(min(top, max(TILE, round(h / TILE) * TILE))),
    )
