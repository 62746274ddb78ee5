"""Every message the bot shows a user, in Russian and English.

The messages live in Project Fluent catalogues, ``bot/locales/<lang>/*.ftl`` (data files, every
``.ftl`` in a language's folder is loaded), and Fluent picks a counted noun's form by CLDR plural
rules: "1 шаг", "2 шага", "5 шагов". ``ru`` users get Russian; everyone else English. Texts use
Telegram HTML: anything a user typed must be passed through ``html.escape`` before it is formatted
in. The HTTP API and the command line use the same texts through :func:`plain`.

A missing message or one that does not format never breaks a handler: the English text is sent
instead, else the key itself, and the problem is logged once. Tests call :func:`raise_errors` so
that such a problem fails them instead.
"""

from __future__ import annotations

import html
import logging
import re
from decimal import Decimal
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from babel import Locale
from babel.numbers import NumberFormatError, parse_decimal
from fluent.runtime import FluentBundle, FluentResource
from fluent.runtime.types import FluentFloat, FluentInt, FluentNumber, fluent_number
from fluent.syntax import ast as ftl

log = logging.getLogger(__name__)

LANGUAGES = ("en", "ru")
FALLBACK = "en"
LOCALES = resources.files("bot") / "locales"


class TextError(LookupError):
    """A message is missing or does not format (raised only after :func:`raise_errors`)."""


def _shown(value: Any, locale: Locale, **options: Any) -> Any:
    """``value`` as a Fluent number holding exactly the digits it is shown with.

    Fluent picks the plural form from the number it is given, Babel formats it rounded: 5.03
    shown as "5" would still read "5 картинки". Parsing back what is shown makes the plural
    form agree with the digits the user sees ("5 картинок", "2,5 картинки"). (Fluent selects
    only on int and float, so forced trailing zeros, "1,0", still select like the integer.)"""
    number = fluent_number(value, **options)
    if not isinstance(number, FluentNumber):
        return number  # FluentNone: a missing variable, reported by Fluent itself
    try:
        digits: Decimal = parse_decimal(number.format(locale), locale)
    except NumberFormatError:  # a percent or currency: its sign is not a digit
        return number
    exponent = digits.as_tuple().exponent
    shown = FluentInt(digits) if isinstance(exponent, int) and exponent >= 0 else FluentFloat(digits)
    shown.options = number.options
    return shown


def _argument(value: object, locale: Locale) -> object:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return _shown(value, locale, useGrouping=False)  # seeds, sizes, ids: "1234567", never "1 234 567"
    if isinstance(value, float | Decimal):
        return _shown(value, locale)
    return value


class _Catalogue:
    """One language's Fluent bundle, from every ``.ftl`` file in its folder."""

    def __init__(self, lang: str, folder: Traversable) -> None:
        self.locale = Locale.parse(lang)
        self.bundle = FluentBundle(
            [lang],
            functions={"NUMBER": lambda value, **options: _shown(value, self.locale, **options)},
            use_isolating=False,  # no invisible Unicode marks around variables in Telegram messages
        )
        self.problems: list[str] = []
        self.keys: set[str] = set()
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".ftl")), key=lambda f: f.name)
        for file in files:
            resource = FluentResource(file.read_text(encoding="utf-8"))
            for entry in resource.body:
                if isinstance(entry, ftl.Junk):
                    self.problems.append(f"{lang}/{file.name}: syntax error: {entry.content.strip()[:200]!r}")
                elif isinstance(entry, ftl.Message):
                    if entry.id.name in self.keys:
                        self.problems.append(f"{lang}/{file.name}: {entry.id.name} defined twice")
                    self.keys.add(entry.id.name)
            self.bundle.add_resource(resource)

    def format(self, key: str, params: dict[str, object]) -> tuple[str, str | None]:
        """The text, and what went wrong if anything did."""
        if not self.bundle.has_message(key):
            return "", "no such message"
        message = self.bundle.get_message(key)
        if message.value is None:
            return "", "the message has no value"
        args = {name: _argument(value, self.locale) for name, value in params.items()}
        try:
            result, errors = self.bundle.format_pattern(message.value, args)
        except Exception as exc:  # a handler must never fail on a text
            return "", f"{type(exc).__name__}: {exc}"
        if errors:
            return "", "; ".join(f"{type(e).__name__}: {e}" for e in errors)
        return str(result), None


class Messages:
    """The catalogues of every language under ``folder`` (``<folder>/<lang>/*.ftl``)."""

    def __init__(self, folder: Traversable, languages: tuple[str, ...] = LANGUAGES) -> None:
        self.catalogues = {lang: _Catalogue(lang, folder / lang) for lang in languages}
        self.problems = [problem for catalogue in self.catalogues.values() for problem in catalogue.problems]
        for problem in self.problems:
            log.error("message catalogue: %s", problem)
        self._reported: set[tuple[str, str]] = set()

    def text(self, lang: str, key: str, **params: object) -> str:
        for candidate in dict.fromkeys((lang if lang in self.catalogues else FALLBACK, FALLBACK)):
            result, problem = self.catalogues[candidate].format(key, params)
            if problem is None:
                return result
            if _raise:
                raise TextError(f"{candidate}/{key}: {problem}")
            if (candidate, key) not in self._reported:  # once: a broken text may be asked for by every user
                self._reported.add((candidate, key))
                log.error("message %s/%s: %s", candidate, key, problem)
        return key


_raise = False
_MESSAGES = Messages(LOCALES)
KEYS = frozenset(_MESSAGES.catalogues[FALLBACK].keys)  # every message id (English has them all)


def raise_errors(enabled: bool = True) -> None:
    """Make a missing message or a formatting error raise :class:`TextError` (for tests)."""
    global _raise
    _raise = enabled


def catalogue_problems() -> list[str]:
    """Syntax errors and duplicate ids found while loading the catalogues."""
    return list(_MESSAGES.problems)


def language_of(code: str | None) -> str:
    """Russian for ``ru`` (``ru-RU`` too); English for anything else."""
    return "ru" if code and code.lower().split("-")[0] == "ru" else "en"


def text(lang: str, key: str, **params: object) -> str:
    """Message ``key`` in ``lang`` with ``params`` filled in (already HTML-escaped by the caller)."""
    return _MESSAGES.text(lang, key, **params)


def plain(message: str) -> str:
    """A catalogue text without its Telegram HTML, for the HTTP API and the command line."""
    return html.unescape(re.sub(r"</?(code|b|i)>", "", message))
