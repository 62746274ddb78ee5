"""docker-compose.replicas.yml, the README's "Scaling out" example: two replicas on their
own GPUs and one PostgreSQL service, with settings the bot knows."""

from __future__ import annotations

from pathlib import Path

import yaml

from config import Settings, settings_from_env

COMPOSE = Path(__file__).parent.parent / "docker-compose.replicas.yml"


def test_two_replicas_share_one_postgresql_service() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    bots = {name: s for name, s in services.items() if name.startswith("bot")}
    assert len(bots) == 2 and services["db"]["image"].startswith("postgres:16")
    known = {(f.validation_alias or name).upper() for name, f in Settings.model_fields.items()}
    urls, devices = set(), set()
    for service in bots.values():
        env = service["environment"]
        assert set(env) <= known, f"unknown settings: {set(env) - known}"
        urls.add(env["DATABASE_URL"])
        devices.add(env["DEVICE"])
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        # What compose passes is a valid setting once the password is filled in.
        filled = {k: v.replace("${POSTGRES_PASSWORD}", "pw") for k, v in env.items()}
        settings = settings_from_env({"BOT_TOKEN": "1:x", **filled})
        assert settings.database_url is not None and "pw" in settings.secret_values
    assert urls == {"postgresql://kandinsky:${POSTGRES_PASSWORD}@db:5432/kandinsky"}
    assert devices == {"cuda:0", "cuda:1"}
