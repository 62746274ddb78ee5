"""The message catalogue: every text in Russian and English with the same placeholders."""

from __future__ import annotations

import string

import pytest

from bot.texts import TEXTS, language_of, text


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_both_languages_with_same_placeholders(key: str) -> None:
    entry = TEXTS[key]
    assert set(entry) == {"en", "ru"}
    fields = [{f for _, f, _, _ in string.Formatter().parse(entry[lang]) if f} for lang in ("en", "ru")]
    assert fields[0] == fields[1], key
    assert entry["en"] != entry["ru"] or key in {"caption"}


def test_language_choice() -> None:
    assert language_of("ru") == language_of("ru-RU") == "ru"
    assert language_of("en") == language_of("uk") == language_of(None) == "en"
    assert text("ru", "cancelled") == "Отменено." and text("de", "cancelled") == "Cancelled."
