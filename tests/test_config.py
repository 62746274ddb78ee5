"""Settings are validated once; a bad value names the variable and what is allowed."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

import main
from config import (
    DEFAULT_DECODER,
    DEFAULT_PRIOR,
    HTTP_API_PATHS,
    OFFICIAL_BOT_API,
    ConfigError,
    Settings,
    load_settings,
    settings_from_env,
)

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
    assert (settings.translate, settings.translation_model) == ("auto", "Helsinki-NLP/opus-mt-ru-en")


def test_translate_values() -> None:
    def mode(raw: str) -> str:
        return settings_from_env({"BOT_TOKEN": TOKEN, "TRANSLATE": raw}).translate

    assert (mode("auto"), mode("OFF"), mode("false"), mode("0"), mode("true")) == ("auto", "off", "off", "off", "auto")
    assert refused(TRANSLATE="ru") == "TRANSLATE must be auto or off, got 'ru'"
    assert settings_from_env({"BOT_TOKEN": TOKEN, "TRANSLATION_MODEL": "/models/opus"}).translation_model == (
        "/models/opus"
    )


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
        ({}, "BOT_TOKEN is required: put the token @BotFather gave your bot after BOT_TOKEN= in .env"),
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
        # The schedulers fail past these: 1000 decoder steps (IndexError), 1 prior step (ZeroDivisionError).
        ({"MAX_STEPS": "1000"}, "MAX_STEPS must be between 1 and 999"),
        ({"PRIOR_STEPS": "1"}, "PRIOR_STEPS must be between 2 and 200"),
        ({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL must start with http"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"COMPILE": "fast"}, "COMPILE must be auto, false, true or cudagraphs"),
        ({"DEFAULT_SAMPLER": "euler"}, "DEFAULT_SAMPLER must be one of ddpm, ddim, dpmpp, got 'euler'"),
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
    assert settings.bot_token.get_secret_value() == TOKEN
    assert settings.default_steps == 30 and settings.max_steps == 70


def test_env_example_documents_every_variable() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    read = {(field.validation_alias or name).upper() for name, field in Settings.model_fields.items()}
    assert {"BOT_TOKEN", "API_TOKENS", "TRUSTED_PROXIES", "WEBHOOK_SECRET"} <= read
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", example, flags=re.MULTILINE))
    assert read <= documented, f"not in .env.example: {sorted(read - documented)}"


def refused(**env: str) -> str:
    """The one-line message a bad setting gets."""
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"BOT_TOKEN": TOKEN, **env})
    message = str(caught.value)
    assert "\n" not in message and "pydantic" not in message.lower() and "validation error" not in message
    return message


# 12.25: pydantic-settings; the three secrets are SecretStr, their values never in repr or errors.
def test_secrets_are_secret_str_and_never_shown() -> None:
    secret = "WEBHOOK-secret-0123456789"
    settings = settings_from_env(
        {"BOT_TOKEN": TOKEN, "API_TOKEN": "api-secret-1", "HTTP_PORT": "8080", "WEBHOOK_SECRET": secret}
    )
    for value in (settings.bot_token, settings.api_token, settings.webhook_secret):
        assert isinstance(value, SecretStr)
    assert settings.bot_token.get_secret_value() == TOKEN
    assert settings.webhook_secret.get_secret_value() == secret
    for plain in (TOKEN, "api-secret-1", secret):
        assert plain not in repr(settings) and plain not in str(settings)
    assert set(settings.secret_values) == {TOKEN, "api-secret-1", secret}
    # pydantic would repeat the value it refuses: a wrong BOT_TOKEN must not be echoed.
    assert "bad token" not in refused(BOT_TOKEN="bad token")


# 12.25: every refusal is one line naming the variable, whatever pydantic's error was.
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_BATCH": "1.5"}, "MAX_BATCH must be an integer, got '1.5'"),
        ({"MAX_BATCH": "65"}, "MAX_BATCH must be between 1 and 64, got '65'"),
        ({"MAX_QUEUE": "0"}, "MAX_QUEUE must be 1 or more, got '0'"),
        ({"PROGRESS_INTERVAL_S": "soon"}, "PROGRESS_INTERVAL_S must be a number, got 'soon'"),
        ({"DTYPE": " Float8 "}, "DTYPE must be one of auto, float16, bfloat16, float32; got 'float8'"),
        ({"DEFAULT_STEPS": "101"}, "DEFAULT_STEPS must be between 1 and 100 (MAX_STEPS), got 101"),
        ({"DEFAULT_WIDTH": "7" * 5000}, "DEFAULT_WIDTH must be"),
    ],
)
def test_refusals_are_one_line(env: dict[str, str], message: str) -> None:
    got = refused(**env)
    assert got.startswith(message) and len(got) < 200


def test_values_of_only_spaces_are_unset_and_values_are_stripped() -> None:
    settings = settings_from_env(
        {"BOT_TOKEN": f" {TOKEN} ", "MAX_SIDE": "   ", "LOG_LEVEL": " debug ", "COMPILE": "No"}
    )
    assert settings.bot_token.get_secret_value() == TOKEN
    assert (settings.max_side, settings.log_level, settings.compile) == (1024, "DEBUG", "off")


def test_draw_and_prefetch_need_no_token() -> None:
    assert settings_from_env({}, require_token=False).bot_token.get_secret_value() == ""


# 12.9: webhook mode needs a secret as Telegram defines it, and at least 16 characters.
WEBHOOK = {"WEBHOOK_URL": "https://bot.example.org/telegram/hook", "HTTP_PORT": "8443"}


@pytest.mark.parametrize(
    "secret",
    [
        None,
        "",
        "s3cret-value",  # 12 characters: too short to resist guessing
        "a" * 257,  # Telegram allows at most 256
        "секрет-секрет-секрет",  # letters, but not A-Z a-z
        "has spaces in it, long enough",
        "semi;colon-0123456789",
    ],
)
def test_webhook_needs_a_long_secret_of_telegram_characters(secret: str | None) -> None:
    env = dict(WEBHOOK) if secret is None else {**WEBHOOK, "WEBHOOK_SECRET": secret}
    assert "WEBHOOK_SECRET" in refused(**env)


@pytest.mark.parametrize("secret", ["A" * 16, "Az09_-" * 42 + "Az09", "0123456789abcdef-_XYZ"])
def test_webhook_secrets_telegram_accepts_are_accepted(secret: str) -> None:
    settings = settings_from_env({"BOT_TOKEN": TOKEN, **WEBHOOK, "WEBHOOK_SECRET": secret})
    assert settings.webhook_secret.get_secret_value() == secret


# 12.10: a webhook path that is an HTTP API route would never see an update.
@pytest.mark.parametrize(
    "url",
    [*(f"https://bot.example.org{path}" for path in HTTP_API_PATHS), "https://bot.example.org/health/"],
)
def test_webhook_path_may_not_be_an_api_route(url: str) -> None:
    message = refused(**{**WEBHOOK, "WEBHOOK_URL": url, "WEBHOOK_SECRET": "x" * 16})
    assert message.startswith("WEBHOOK_URL's path") and "/generate" in message


def test_webhook_paths_beside_the_api_are_accepted() -> None:
    env = {"BOT_TOKEN": TOKEN, **WEBHOOK, "WEBHOOK_SECRET": "x" * 16}
    assert settings_from_env({**env, "WEBHOOK_URL": "https://bot.example.org"}).webhook_path == "/webhook"
    assert settings_from_env({**env, "WEBHOOK_URL": "https://b.org/healthz"}).webhook_path == "/healthz"


# 12.8: TELEGRAM_API_URL is checked at start, not when aiohttp first uses it.
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999", "http://127.0.0.1:0", "https://:8081", "http://", "http://host:port"]
)
def test_telegram_api_url_needs_a_host_and_a_valid_port(url: str) -> None:
    assert refused(TELEGRAM_API_URL=url).startswith("TELEGRAM_API_URL must be http(s)://HOST")


def test_a_bad_telegram_api_url_is_one_line_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:99999")
    assert main.main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Configuration error: TELEGRAM_API_URL") and TOKEN not in err


# 15.9: nan and infinity are not numbers a setting can use; sides are whole 64-pixel tiles.
FLOATS = (
    "DEFAULT_GUIDANCE",
    "DEFAULT_PRIOR_GUIDANCE",
    "DEFAULT_STRENGTH",
    "PROGRESS_INTERVAL_S",
    "SHUTDOWN_GRACE_S",
    "UPSCALE_STRENGTH",
)


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
def test_float_settings_refuse_nan_and_infinity(name: str, value: str) -> None:
    assert refused(**{name: value}).startswith(f"{name} must be a number between")


def test_float_settings_are_the_ones_checked() -> None:
    floats = {name.upper() for name, field in Settings.model_fields.items() if field.annotation is float}
    assert floats == set(FLOATS)


@pytest.mark.parametrize("name", ["MAX_SIDE", "DEFAULT_WIDTH", "DEFAULT_HEIGHT", "MAX_UPSCALE_SIDE"])
def test_sides_are_multiples_of_64(name: str) -> None:
    assert refused(**{name: "1000"}).startswith(f"{name} must be a multiple of 64")


# 12.12's settings: per-client tokens and trusted proxies.
def test_api_tokens_join_api_token() -> None:
    settings = settings_from_env({"BOT_TOKEN": TOKEN, "API_TOKEN": "one", "API_TOKENS": " two, three ,,one"})
    assert settings.api_tokens == ("one", "two", "three")
    assert all(isinstance(token, SecretStr) for token in settings.extra_api_tokens)
    assert "two" not in repr(settings)
    assert settings_from_env({"BOT_TOKEN": TOKEN}).api_tokens == ()
    assert settings_from_env({"BOT_TOKEN": TOKEN, "API_TOKENS": "solo"}).api_tokens == ("solo",)
    assert "API_TOKENS" in refused(API_TOKENS="a b,c")


def test_api_tokens_open_the_api_to_other_machines() -> None:
    env = {"BOT_TOKEN": TOKEN, "HTTP_PORT": "8080", "HTTP_HOST": "0.0.0.0"}
    assert settings_from_env({**env, "API_TOKENS": "client-a,client-b"}).api_tokens == ("client-a", "client-b")
    assert refused(**env, API_TOKENS=" , ").startswith("API_TOKEN is required when HTTP_HOST=0.0.0.0")


def test_trusted_proxies_are_networks() -> None:
    settings = settings_from_env({"BOT_TOKEN": TOKEN, "TRUSTED_PROXIES": "10.0.0.5, 172.16.0.0/12,::1"})
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("172.16.0.0/12"),
        ipaddress.ip_network("::1/128"),
    )
    assert settings_from_env({"BOT_TOKEN": TOKEN}).trusted_proxies == ()
    assert refused(TRUSTED_PROXIES="10.0.0.5,proxy.local") == (
        "TRUSTED_PROXIES must be comma-separated IP addresses or networks (such as 10.0.0.5, 172.16.0.0/12),"
        " got 'proxy.local'"
    )
    assert refused(TRUSTED_PROXIES="10.0.0.0/33").startswith("TRUSTED_PROXIES must be")


def test_default_sampler_is_one_of_the_samplers() -> None:
    assert settings_from_env({"BOT_TOKEN": TOKEN}).default_sampler == "ddpm"
    assert settings_from_env({"BOT_TOKEN": TOKEN, "DEFAULT_SAMPLER": " DPMpp "}).default_sampler == "dpmpp"
    assert refused(DEFAULT_SAMPLER="unipc").startswith("DEFAULT_SAMPLER must be one of ddpm, ddim, dpmpp")


# 14: DATABASE_URL (several replicas on PostgreSQL); unset means SQLite under DATA_DIR.
DB_PASSWORD = "pg-Secret/with@odd%chars"
DB_URL = "postgresql://kandinsky:pg-Secret%2Fwith%40odd%25chars@db.internal:5432/kandinsky"


def test_database_url_is_unset_by_default_and_a_secret() -> None:
    assert settings_from_env({"BOT_TOKEN": TOKEN}).database_url is None
    assert settings_from_env({"BOT_TOKEN": TOKEN, "DATABASE_URL": "  "}).database_url is None
    settings = settings_from_env({"BOT_TOKEN": TOKEN, "DATABASE_URL": DB_URL, "JOB_LEASE_S": "5"})
    assert isinstance(settings.database_url, SecretStr)
    assert settings.database_url.get_secret_value() == DB_URL and settings.job_lease_s == 5
    assert "pg-Secret" not in repr(settings) and "pg-Secret" not in str(settings)
    # Both forms of the password are redacted from logs: as written in the URL and decoded.
    assert {"pg-Secret%2Fwith%40odd%25chars", DB_PASSWORD} <= set(settings.secret_values)
    assert settings_from_env({"BOT_TOKEN": TOKEN}).job_lease_s == 30


def test_a_password_given_as_a_parameter_is_a_secret_too() -> None:
    url = "postgres://db/kandinsky?user=bot&password=param-secret-1&sslmode=require"
    assert "param-secret-1" in settings_from_env({"BOT_TOKEN": TOKEN, "DATABASE_URL": url}).secret_values


@pytest.mark.parametrize("url", ["mysql://u:hunter2-pw@db/x", "db.internal:5432", "sqlite:///hunter2-pw.db"])
def test_database_url_must_be_postgresql_and_is_never_repeated(url: str) -> None:
    message = refused(DATABASE_URL=url)
    assert message.startswith("DATABASE_URL must be a PostgreSQL URL, postgresql://USER:PASSWORD@HOST")
    assert "hunter2" not in message and "db.internal" not in message


def test_job_lease_bounds() -> None:
    assert refused(JOB_LEASE_S="1") == "JOB_LEASE_S must be between 2 and 3600, got '1'"
