"""The benchmark measures what users run: its defaults are the bot's (issue 13)."""

from __future__ import annotations

import pytest

from bench.benchmark import parse
from bench.common import BOT_DEFAULTS, compile_setting, max_batch_setting
from config import settings_from_env

TOKEN = "123456:ABC-secret"


def test_bench_defaults_are_the_bots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPILE", raising=False)
    monkeypatch.delenv("MAX_BATCH", raising=False)
    settings = settings_from_env({"BOT_TOKEN": TOKEN})
    assert {name: getattr(settings, name) for name in BOT_DEFAULTS} == BOT_DEFAULTS
    assert (compile_setting(), max_batch_setting()) == (settings.compile, settings.max_batch)
    cfg = parse([])
    assert cfg.mode == "multi"
    assert (cfg.size, cfg.size, cfg.steps, cfg.prior_steps) == (
        settings.default_width,
        settings.default_height,
        settings.default_steps,
        settings.prior_steps,
    )


@pytest.mark.parametrize("value", ["auto", "true", "false", "cudagraphs", "default", "off", "1", "0", "TRUE"])
def test_bench_reads_compile_as_the_bot_does(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COMPILE", value)
    assert compile_setting() == settings_from_env({"BOT_TOKEN": TOKEN, "COMPILE": value}).compile
