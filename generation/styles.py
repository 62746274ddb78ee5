"""The styles ``--style NAME`` may name: prompt templates, built in (generation/styles.toml)
and from STYLES_FILE (TOML or JSON, the same layout), which adds styles or replaces built-in
ones by name.

A file that is not right stops the start (config.py turns ``StylesError`` into a
configuration error) with its name and the line to fix: a style nobody can use is better
found by the operator at start than by a user at /draw.

Torch-free: config.py reads the styles while it checks the settings.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from generation.params import Style

# Names travel in a button's callback data (64 bytes in all) and are typed after --style.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
NO_STYLE = "none"  # --style none: no style, whatever the user's saved default is
PLACEHOLDER = "{prompt}"
TEXT_MAX = 500  # a template or negative prompt; the model reads about 77 tokens anyway
DESCRIPTION_MAX = 200  # /styles lists them all in one message
KEYS = ("prompt", "negative", "description")
BUILT_IN = "styles.toml"


class StylesError(ValueError):
    """A style file the bot can't use; the message names the file and the line."""


@dataclass(frozen=True)
class StyleBook:
    """Every style by name, built-in ones first, with a short description in each language."""

    styles: Mapping[str, Style] = field(default_factory=dict)
    descriptions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def description(self, name: str, lang: str) -> str:
        """The description in ``lang``, else in English, else any; "" when there is none."""
        texts = self.descriptions.get(name, {})
        return texts.get(lang) or texts.get("en") or next(iter(texts.values()), "")


def load_styles(path: str | Path | None = None) -> StyleBook:
    """The built-in styles, with those of the file at ``path`` (if any) added or put in
    their place. Raises StylesError."""
    built_in = resources.files("generation") / BUILT_IN
    styles, descriptions = _parse(built_in.read_text(encoding="utf-8"), f"built-in styles {BUILT_IN}", "toml")
    if path:
        path = Path(path)
        source = f"STYLES_FILE {path}"
        if path.suffix.lower() not in (".toml", ".json"):
            raise StylesError(f"{source}: the name must end in .toml or .json")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StylesError(f"{source} can't be read: {reason}") from None
        more, more_descriptions = _parse(text, source, path.suffix.lower()[1:])
        styles.update(more)
        descriptions.update(more_descriptions)
    return StyleBook(styles, descriptions)


def _parse(text: str, source: str, kind: str) -> tuple[dict[str, Style], dict[str, dict[str, str]]]:
    data = _decode(text, source, kind)
    styles: dict[str, Style] = {}
    descriptions: dict[str, dict[str, str]] = {}
    for name, entry in data.items():
        where = f"{source} line {_line_of(text, name)}"
        if not NAME.fullmatch(name) or name == NO_STYLE:
            raise StylesError(
                f"{where}: style name {name!r} must be 1 to 32 lower-case letters, digits, - or _"
                f" (and not {NO_STYLE!r})"
            )
        if not isinstance(entry, dict):
            raise StylesError(f'{where}: style {name!r} must be a table with prompt = "... {PLACEHOLDER} ..."')
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise StylesError(f"{where}: style {name!r} has an unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
        prompt = entry.get("prompt")
        if not isinstance(prompt, str) or PLACEHOLDER not in prompt or len(prompt) > TEXT_MAX:
            raise StylesError(
                f"{where}: style {name!r} needs prompt = text of at most {TEXT_MAX} characters"
                f" with {PLACEHOLDER} where the description goes"
            )
        negative = entry.get("negative", "")
        if not isinstance(negative, str) or len(negative) > TEXT_MAX:
            raise StylesError(f"{where}: style {name!r}: negative must be text of at most {TEXT_MAX} characters")
        styles[name] = Style(name=name, prompt=prompt.strip(), negative=negative.strip())
        descriptions[name] = _descriptions(entry.get("description"), f"{where}: style {name!r}")
    return styles, descriptions


def _decode(text: str, source: str, kind: str) -> dict[str, Any]:
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StylesError(f"{source} line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        if not isinstance(data, dict):
            raise StylesError(f"{source} line 1: must be a JSON object of styles by name")
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's message ends in "(at line N, column M)": said first, as for JSON.
        message = str(exc)
        at = re.search(r"\s*\(at (line \d+, column \d+|end of document)\)$", message)
        if at is None:
            raise StylesError(f"{source}: {message}") from None
        raise StylesError(f"{source} {at.group(1)}: {message[: at.start()]}") from None


def _descriptions(value: Any, where: str) -> dict[str, str]:
    """description = "text" (any language), or description.en = "...", description.ru = "..."."""
    if value is None:
        return {}
    texts = {"en": value} if isinstance(value, str) else value
    if isinstance(texts, dict) and all(isinstance(t, str) and len(t) <= DESCRIPTION_MAX for t in texts.values()):
        return {lang: text.strip() for lang, text in texts.items()}
    raise StylesError(
        f"{where}: description must be text of at most {DESCRIPTION_MAX} characters,"
        " or a table of such texts by language (en, ru)"
    )


def _line_of(text: str, name: str) -> int:
    """The line where style ``name`` starts (its [name] header, "name": or name.key =);
    parsed TOML and JSON keep no line numbers."""
    key = re.escape(name)
    pattern = re.compile(rf"""^\s*[{{,]?\s*(\[\s*["']?{key}["']?\s*\]|["']?{key}["']?\s*[.=:])""")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return number
    return 1
