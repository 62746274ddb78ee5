"""The message catalogues: every text in Russian and English, real plural forms, numbers that read right."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from babel import Locale
from fluent.syntax import FluentParser
from fluent.syntax import ast as ftl
from fluent.syntax.visitor import Visitor

from bot import texts
from bot.texts import KEYS, LANGUAGES, LOCALES, Messages, TextError, catalogue_problems, language_of, text


class _Variables(Visitor):
    """The ``$variables`` a message uses, and its selects' variant keys."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.numbers: set[str] = set()  # the variables formatted with NUMBER(): callers pass numbers
        self.selects: list[set[str]] = []

    def visit_VariableReference(self, node: ftl.VariableReference) -> None:
        self.names.add(node.id.name)

    def visit_FunctionReference(self, node: ftl.FunctionReference) -> None:
        if node.id.name == "NUMBER":
            self.numbers |= {a.id.name for a in node.arguments.positional if isinstance(a, ftl.VariableReference)}
        self.generic_visit(node)

    def visit_SelectExpression(self, node: ftl.SelectExpression) -> None:
        self.selects.append({v.key.name for v in node.variants if isinstance(v.key, ftl.Identifier)})
        self.generic_visit(node)


def parsed(lang: str) -> dict[str, _Variables]:
    found: dict[str, _Variables] = {}
    for file in sorted(Path(str(LOCALES / lang)).glob("*.ftl")):
        for entry in FluentParser().parse(file.read_text(encoding="utf-8")).body:
            if isinstance(entry, ftl.Message):
                found[entry.id.name] = _Variables()
                found[entry.id.name].visit(entry)
    return found


CATALOGUES = {lang: parsed(lang) for lang in LANGUAGES}


def test_catalogues_load_cleanly() -> None:
    assert catalogue_problems() == []
    assert len(KEYS) > 40 and {"help", "caption", "status"} <= KEYS


def test_every_message_in_both_languages_with_the_same_variables() -> None:
    en, ru = CATALOGUES["en"], CATALOGUES["ru"]
    assert set(en) == set(ru) == KEYS
    for key in KEYS:
        assert en[key].names == ru[key].names, key


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_message_formats_with_its_variables(lang: str, key: str) -> None:
    found = CATALOGUES[lang][key]
    # conftest turned on raise_errors(): a Fluent error here raises TextError instead of falling back.
    for sample in (1, 7, 2.5, "<i>x</i>"):
        args = {name: 3 if name in found.numbers and isinstance(sample, str) else sample for name in found.names}
        result = text(lang, key, **args)
        assert result.strip() and "{" not in result and "$" not in result, result
        assert "\u2068" not in result and "\u2069" not in result  # no bidi isolation marks


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plural_selects_name_every_cldr_form(lang: str) -> None:
    """A select on a count covers each of the language's forms: Russian one, few, many (+ other)."""
    forms = set(Locale.parse(lang).plural_form.tags) | {"other"}
    selects = [(key, s) for key, found in CATALOGUES[lang].items() for s in found.selects]
    assert selects
    for key, variants in selects:
        if variants & forms:  # a select on a count (a select on something else names its own keys)
            assert variants == forms, (key, variants)


@pytest.mark.parametrize(
    ("steps", "words"),
    [(1, "1 шаг ·"), (2, "2 шага"), (4, "4 шага"), (5, "5 шагов"), (11, "11 шагов"), (21, "21 шаг ·"), (22, "22 шага")],
)
def test_russian_steps_by_cldr_plural_rules(steps: int, words: str) -> None:
    caption = text("ru", "caption", prompt="лиса", seed=1, width=64, height=64, steps=steps, seconds=0.9)
    assert words in caption


def test_plurals_of_pictures_seconds_and_english() -> None:
    status = {n: text("ru", "status", health="", devices="cpu", models="", queued=0, running=0, rate=n) for n in (2, 5)}
    assert "Недавно: 2 картинки/мин" in status[2] and "Недавно: 5 картинок/мин" in status[5]
    assert "Подождите 1 секунду." in text("ru", "rate_limited", limit=5, seconds=1)
    assert "Подождите 3 секунды." in text("ru", "rate_limited", limit=5, seconds=3)
    assert "Подождите 30 секунд." in text("ru", "rate_limited", limit=5, seconds=30)
    assert "wait 1 second." in text("en", "rate_limited", limit=1, seconds=1)
    assert "wait 2 seconds." in text("en", "rate_limited", limit=1, seconds=2)
    caption = {n: text("en", "caption", prompt="fox", seed=1, width=1, height=1, steps=n, seconds=1.0) for n in (1, 2)}
    assert "· 1 step ·" in caption[1] and "· 2 steps ·" in caption[2]
    assert "351 символ," in text("ru", "prompt_too_long", length=351, limit=300)
    assert "(1 request in line)" in text("en", "busy_global", limit=1)


def test_numbers_read_naturally_and_ids_are_not_grouped() -> None:
    for lang in LANGUAGES:
        caption = text(lang, "caption", prompt="fox", seed=4294967295, width=1024, height=1024, steps=100, seconds=0.93)
        assert "seed 4294967295 · 1024×1024 · 100 " in caption  # no "4,294,967,295" nor "4 294 967 295"
    assert caption.endswith("· 0,9 с")
    assert text("en", "caption", prompt="fox", seed=1, width=64, height=64, steps=2, seconds=0.93).endswith("· 0.9 s")
    args = {
        "max_side": 1024,
        "max_steps": 100,
        "steps": 50,
        "prior_guidance": 1.0,
        "width": 768,
        "height": 768,
        "where": "here",
    }
    assert "(обычно 4,5)" in text("ru", "help", guidance=4.5, **args)
    assert "(default 4.5)" in text("en", "help", guidance=4.5, **args)
    assert "from 64 to 1024 (rounded" in text("en", "help", guidance=4.0, **args)
    assert "от 0 до 4294967295" in text("ru", "bad_integer", option="--seed", low=0, high=4294967295, value="-1")


@pytest.mark.parametrize(
    ("rate", "ru", "en"),
    [
        (0.0, "0 картинок/мин", "0 pictures/min"),
        (1.0, "1 картинка/мин", "1 picture/min"),
        (2.5, "2,5 картинки/мин", "2.5 pictures/min"),
        (5.03, "5 картинок/мин", "5 pictures/min"),  # the form of the number shown, not of 5.03
        (21.0, "21 картинка/мин", "21 pictures/min"),
    ],
)
def test_status_rate_takes_the_form_of_the_number_shown(rate: float, ru: str, en: str) -> None:
    args = {"health": "ok", "devices": "cpu", "models": "loaded", "queued": 0, "running": 0, "rate": rate}
    assert text("ru", "status", **args).endswith(ru)
    assert text("en", "status", **args).endswith(en)


def test_language_choice() -> None:
    assert language_of("ru") == language_of("ru-RU") == "ru"
    assert language_of("en") == language_of("uk") == language_of(None) == "en"
    assert text("ru", "cancelled") == "Отменено." and text("de", "cancelled") == "Cancelled."


@pytest.fixture
def fallback_mode():
    """As in production: problems fall back and are logged, not raised."""
    texts.raise_errors(False)
    yield
    texts.raise_errors(True)


def test_broken_text_falls_back_to_english_then_the_key_and_logs_once(
    tmp_path: Path, fallback_mode: None, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "ru").mkdir()
    (tmp_path / "en" / "bot.ftl").write_text("hello = Hello, { $name }!\nonly-en = Only English\n")
    (tmp_path / "en" / "later.ftl").write_text("later = From a second file\n")  # every .ftl is loaded
    (tmp_path / "ru" / "bot.ftl").write_text("hello = Привет, { $name }!\nbroken = { $x\n")
    messages = Messages(tmp_path)
    assert messages.problems and "ru/bot.ftl: syntax error" in messages.problems[0]

    assert messages.text("ru", "hello", name="Аня") == "Привет, Аня!"
    assert messages.text("ru", "later") == "From a second file"
    with caplog.at_level(logging.ERROR, logger="bot.texts"):
        assert messages.text("ru", "only-en") == "Only English"
        assert messages.text("ru", "only-en") == "Only English"
        assert messages.text("ru", "hello") == "hello"  # no variable: neither language formats
        assert messages.text("ru", "nothing-like-it") == "nothing-like-it"
    logged = [r.getMessage() for r in caplog.records]
    assert sum("ru/only-en: no such message" in m for m in logged) == 1, logged
    assert any("ru/hello: FluentReferenceError" in m for m in logged)
    assert any("en/hello: FluentReferenceError" in m for m in logged)


def test_tests_see_every_text_problem() -> None:
    with pytest.raises(TextError, match=r"ru/caption: .*Unknown external: seed"):
        text("ru", "caption", prompt="fox")
    with pytest.raises(TextError, match="no such message"):
        text("en", "no_such_message")
