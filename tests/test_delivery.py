"""How a finished picture or a failure reaches the user."""

from __future__ import annotations

from bot.delivery import caption, fits_as_photo, shorten
from bot.draw_service import failure_text
from generation import GenerationError, GenerationParams, GenerationResult, ModelsUnavailable, OutOfMemory


def result(width: int = 768, height: int = 768, size: int = 1000, truncated: bool = False) -> GenerationResult:
    return GenerationResult(b"x" * size, width, height, seed=5, seconds=1.234, batch_size=1, prompt_truncated=truncated)


def test_too_large_for_a_photo_goes_as_document() -> None:
    assert fits_as_photo(result())
    assert not fits_as_photo(result(size=11 * 1024 * 1024))  # over sendPhoto's 10 MB
    assert not fits_as_photo(result(width=4096, height=128))  # ratio over 20
    assert not fits_as_photo(result(width=6000, height=5000))  # sides sum over 10000


def test_caption_escapes_and_shortens_the_prompt() -> None:
    params = GenerationParams("<b>fox</b> " * 100, 768, 768, 50, 4.0, 1.0, seed=5)
    text = caption(params, result(truncated=True), "en")
    assert "&lt;b&gt;fox&lt;/b&gt;" in text and "<b>fox" not in text
    assert "…" in text and len(text) < 1024  # Telegram's caption limit
    assert "seed 5 · 768×768 · 50 steps · 1.2 s" in text
    assert "the end was cut" in text
    assert shorten("short") == "short"


def test_failures_have_their_own_words() -> None:
    assert "smaller size" in failure_text(OutOfMemory(), "en")
    assert "поменьше" in failure_text(OutOfMemory(), "ru")
    assert "aren't loaded" in failure_text(ModelsUnavailable("x"), "en")
    assert "Sorry" in failure_text(GenerationError("boom"), "en")
