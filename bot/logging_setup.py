"""Logging set-up that keeps secrets (the bot token, API tokens, the webhook secret) out
of every line the process prints: log messages, the tracebacks attached to them, and
the crash reports Python prints itself for uncaught exceptions.

aiohttp and aiogram put the request URL, which holds the bot token, into their error
messages (``TooManyRedirects ... url='http://host/bot123:SECRET/getMe'``), so redacting
our own messages is not enough: every record and every traceback is redacted as text.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import quote

REDACTED = "<redacted>"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor:
    """Replaces each secret (and its URL-encoded form) with ``<redacted>``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            variants.update((secret, quote(secret, safe="")))
            # A bot token is "<bot id>:<secret>"; the id is public, the part after ":" is not.
            _, colon, private = secret.partition(":")
            if colon and len(private) >= 8:
                variants.update((private, quote(private, safe="")))
        self._secrets = sorted(variants, key=len, reverse=True)  # longest first: no partial leftovers

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    """A handler filter: redacts a record's message, its traceback and its stack.

    The traceback is formatted here and stored redacted as ``record.exc_text``, which
    formatters print instead of formatting ``exc_info`` again; the exception object
    itself, which other code may still hold, is left as it is.
    """

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a call whose arguments don't fit its format: keep both, as text
            message = f"{record.msg} (log arguments: {record.args!r})"
            record.msg, record.args = message, None
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


def setup_logging(level: str | int, secrets: Iterable[str] = ()) -> Redactor:
    """Log to stderr with every record redacted, and print uncaught exceptions (of the
    main thread, other threads, and objects' ``__del__``) redacted too. Warnings go
    through logging, so they are redacted alike. asyncio reports unretrieved task errors
    through its logger, so those pass the same filter."""
    redact = Redactor(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter(redact))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    install_excepthooks(redact)
    return redact


def install_excepthooks(redact: Redactor) -> None:
    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _print(redact, "", kind, exc, tb)

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return  # as threading's own hook: a thread may end itself that way
        name = args.thread.name if args.thread is not None else threading.get_ident()
        _print(redact, f"Exception in thread {name}:\n", args.exc_type, args.exc_value, args.exc_traceback)

    def unraisablehook(unraisable: sys.UnraisableHookArgs) -> None:
        where = unraisable.err_msg or "Exception ignored in"
        header = f"{where}: {unraisable.object!r}\n" if unraisable.object is not None else f"{where}:\n"
        _print(redact, header, unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook


def _print(
    redact: Redactor,
    header: str,
    kind: type[BaseException],
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    text = header + "".join(traceback.format_exception(kind, exc, tb))
    if sys.stderr is not None:
        sys.stderr.write(redact(text))
        sys.stderr.flush()
