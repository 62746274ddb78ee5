"""Settings are validated once; a bad value names the variable and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import DEFAULT_DECODER, DEFAULT_PRIOR, OFFICIAL_BOT_API, ConfigError, load_settings, settings_from_env

TOKEN = "123456:ABC-secret"


def test_defaults_point_at_the_real_things() -> None:
    settings = settings_from_env({"BOT_TOKEN": TOKEN})
    assert settings.telegram_api_url == OFFICIAL_BOT_API == "https://api.telegram.org"
    assert settings.prior_model == DEFAULT_PRIOR == "kandinsky-community/kandinsky-2-2-prior"
    assert settings.decoder_model == DEFAULT_DECODER == "kandinsky-community/kandinsky-2-2-decoder"
    assert (settings.device, settings.dtype, settings.cpu_offload) == ("auto", "auto", False)
    assert (settings.default_width, settings.default_height, settings.default_steps) == (768, 768, 50)
    assert (settings.default_guidance, settings.default_prior_guidance) == (4.0, 1.0)
    assert (settings.max_side, settings.max_steps) == (1024, 100)
    assert settings.admin_ids == frozenset()


def test_values_are_parsed() -> None:
    settings = settings_from_env(
        {
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": "http://localhost:8081/",
            "DEVICE": "cuda:0, cuda:1",
            "DTYPE": "bfloat16",
            "CPU_OFFLOAD": "yes",
            "ADMIN_IDS": "1, 22,333",
            "DEFAULT_WIDTH": "512",
            "DEFAULT_GUIDANCE": "7.5",
        }
    )
    assert settings.telegram_api_url == "http://localhost:8081"
    assert settings.device == "cuda:0,cuda:1"
    assert settings.dtype == "bfloat16" and settings.cpu_offload
    assert settings.admin_ids == {1, 22, 333}
    assert settings.default_width == 512 and settings.default_guidance == 7.5


def test_compile_values() -> None:
    def mode(raw: str) -> str:
        return settings_from_env({"BOT_TOKEN": TOKEN, "COMPILE": raw}).compile

    assert settings_from_env({"BOT_TOKEN": TOKEN}).compile == "auto"
    assert (mode("false"), mode("true"), mode("1"), mode("CUDAGraphs")) == ("off", "default", "default", "cudagraphs")
    assert mode(" Auto ") == "auto"


def test_token_is_never_in_repr() -> None:
    settings = settings_from_env({"BOT_TOKEN": TOKEN})
    assert "secret" not in repr(settings) and "secret" not in str(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "BOT_TOKEN is required"),
        ({"BOT_TOKEN": "nocolon"}, "BOT_TOKEN does not look like"),
        ({"DEVICE": "gpu"}, "DEVICE must be auto, cpu, cuda, cuda:N"),
        ({"DTYPE": "int8"}, "DTYPE must be one of auto, float16, bfloat16, float32"),
        ({"CPU_OFFLOAD": "maybe"}, "CPU_OFFLOAD must be true or false"),
        ({"ADMIN_IDS": "1,bob"}, "ADMIN_IDS must be comma-separated Telegram ids"),
        ({"DEFAULT_STEPS": "abc"}, "DEFAULT_STEPS must be an integer"),
        ({"DEFAULT_STEPS": "500"}, "DEFAULT_STEPS must be between 1 and 100"),
        ({"DEFAULT_WIDTH": "2048"}, "DEFAULT_WIDTH must be between 64 and 1024"),
        ({"DEFAULT_WIDTH": "700"}, "DEFAULT_WIDTH must be a multiple of 64"),
        ({"DEFAULT_GUIDANCE": "x"}, "DEFAULT_GUIDANCE must be a number"),
        ({"MAX_SIDE": "0"}, "MAX_SIDE must be between 64 and 4096"),
        ({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL must start with http"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"COMPILE": "fast"}, "COMPILE must be auto, false, true or cudagraphs"),
        ({"HTTP_PORT": "99999"}, "HTTP_PORT must be between 1 and 65535"),
        ({"HTTP_PORT": "8080", "HTTP_HOST": "0.0.0.0"}, "API_TOKEN is required when HTTP_HOST=0.0.0.0"),
        ({"WEBHOOK_URL": "https://bot.example.org/hook"}, "WEBHOOK_URL needs HTTP_PORT"),
        ({"WEBHOOK_URL": "http://bot.example.org/hook", "HTTP_PORT": "80"}, "WEBHOOK_URL must be an https://"),
        ({"RATE_LIMIT_PER_MIN": "-1"}, "RATE_LIMIT_PER_MIN must be 0 or more"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    full = {"BOT_TOKEN": TOKEN, **env} if "BOT_TOKEN" not in env and env else env
    with pytest.raises(ConfigError, match=message):
        settings_from_env(full)


def test_env_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"BOT_TOKEN={TOKEN}\nDEFAULT_STEPS=30\nMAX_STEPS=60\n")
    for name in ("BOT_TOKEN", "DEFAULT_STEPS", "MAX_STEPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAX_STEPS", "70")
    settings = load_settings(str(env_file))
    assert settings.bot_token == TOKEN
    assert settings.default_steps == 30 and settings.max_steps == 70


def test_env_example_documents_every_variable() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    source = (Path(__file__).parent.parent / "config.py").read_text()
    import re

    read = set(re.findall(r'get\("([A-Z_]+)"', source)) | {"BOT_TOKEN"}
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", example, flags=re.MULTILINE))
    assert read <= documented, f"not in .env.example: {sorted(read - documented)}"
