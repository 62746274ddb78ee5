"""Start the Kandinsky 2.2 Telegram bot: ``python main.py`` (settings from .env / env)."""

from __future__ import annotations

import asyncio
import logging
import sys

from config import ConfigError, Settings, load_settings


class RedactSecrets(logging.Filter):
    """Replace the bot token wherever it would appear in a log line (e.g. a URL)."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "<redacted>")
            record.msg, record.args = message, None
        return True


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(settings.bot_token))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    from bot.app import run_bot  # after logging is set: importing torch takes seconds

    asyncio.run(run_bot(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
