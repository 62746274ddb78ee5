"""Several replicas of the real ``python main.py`` sharing one PostgreSQL database
(DATABASE_URL) and one stand-in Bot API: one polls, all draw, and killing one loses
nothing (issue 14)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from conftest import TOKEN, BotProcess, bot_env
from fake_telegram import FakeTelegram

import main
from bot.logging_setup import RedactingFilter, Redactor
from bot.pg_database import POLLER_LOCK
from config import settings_from_env

PASSWORD = "pg-pass-Do-Not-Log-42"
# Two replicas prove it (the killed poller's role moves to the survivor) at two thirds of
# the CPU of three: every replica imports torch and loads models on the tests' two cores.
REPLICAS = int(os.environ.get("TEST_REPLICAS", "2"))


def with_password(url: str) -> str:
    """The tests' server trusts local connections: a password in the URL is accepted
    (and must still never be shown)."""
    assert "postgres:@" in url
    return url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


def poller_pid(url: str) -> int | None:
    """The process holding the poller lock (its election connection is named after the
    replica id, host-pid-random)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s",
            (POLLER_LOCK & 0xFFFFFFFF,),
        ).fetchone()
    return int(row[0].rsplit("-", 2)[1]) if row else None


def replicas_seen(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('replicas') IS NOT NULL").fetchone()[0]:
            return 0  # no replica has created the schema yet
        return conn.execute("SELECT COUNT(*) FROM replicas").fetchone()[0]


async def stop_all(processes: dict[int, BotProcess]) -> dict[int, int]:
    """SIGTERM to those still running (SIGKILL after a while): their exit codes."""
    codes = {}
    for pid, process in processes.items():
        if process.process is not None and process.process.returncode is None:
            try:
                codes[pid] = await process.stop(signal.SIGTERM, timeout=30)
            except TimeoutError:
                codes[pid] = await process.stop(signal.SIGKILL)
    return codes


async def wait_until(check, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.mark.timeout(480)
async def test_replicas_one_killed_deliver_every_request_once(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], database_url: str, tmp_path: Path
) -> None:
    """60 /draws from 20 users to two (or three) replicas; the poller is killed with SIGKILL midway:
    every request is delivered exactly once, the poller role moves to a survivor, and
    the survivors go on polling and drawing."""
    started = time.monotonic()
    url = with_password(database_url)
    env = bot_env(
        tiny_models,
        telegram.url,
        DATABASE_URL=url,
        JOB_LEASE_S="2",  # a dead replica's jobs and updates are taken over after 2 s
        DEFAULT_STEPS="2",
        PRIOR_STEPS="2",
        MAX_BATCH="4",
        RATE_LIMIT_PER_MIN="0",
        PROGRESS_INTERVAL_S="0.5",
        SHUTDOWN_GRACE_S="10",
    )
    replicas: dict[int, BotProcess] = {}
    first_poller = killed_at = None
    for n in range(REPLICAS):  # started together: they load their models in parallel
        workdir = tmp_path / f"replica{n}"
        workdir.mkdir()
        process = await BotProcess({**env, "DATA_DIR": str(workdir / "data")}, workdir, "bot.log").start()
        replicas[process.process.pid] = process
    try:
        await wait_until(lambda: replicas_seen(url) == REPLICAS, 240, "every replica beating")
        first_poller = await wait_until(lambda: poller_pid(url), 60, "a poller elected")
        assert first_poller in replicas

        requests: dict[int, int] = {}  # the request's message id -> its user
        for i in range(60):
            user = 500 + i % 20
            requests[await telegram.send_text(f"/draw replica picture {i}", user_id=user)] = user
            if i == 29:
                # Midway, with requests still coming: the poller dies. Pictures in flight
                # never arrive (a stalled network), so none is delivered twice unseen.
                await telegram.wait_for("sendPhoto", count=10, timeout=120)
                telegram.hold.set()
                await asyncio.sleep(0.3)
                await replicas[first_poller].stop(signal.SIGKILL)
                telegram.release_held(drop=True)
                killed_at = time.monotonic()
        new_poller = await wait_until(
            lambda: (pid := poller_pid(url)) not in (None, first_poller) and pid, 30, "a new poller elected"
        )
        moved_after = time.monotonic() - killed_at
        assert new_poller != first_poller and new_poller in replicas

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not set(requests) <= {c.reply_to for c in telegram.find("sendPhoto")}:
            await asyncio.sleep(0.3)
    finally:
        codes = await stop_all(replicas)

    photos = Counter(c.reply_to for c in telegram.find("sendPhoto"))
    missing = set(requests) - set(photos)
    duplicates = {m: n for m, n in photos.items() if n > 1}
    print(
        f"\nreplicas: {len(requests)} requests, {len(photos)} delivered, poller moved in {moved_after:.1f} s,"
        f" whole test {time.monotonic() - started:.1f} s"
    )
    assert not missing, f"never delivered: {sorted(missing)}"
    assert not duplicates, f"delivered more than once: {duplicates}"
    for message_id, user in requests.items():  # each in its own chat
        assert {c.chat_id for c in telegram.find("sendPhoto") if c.reply_to == message_id} == {user}
    assert telegram.conflicts == 0  # never two pollers at once
    assert list(codes.values()) == [0] * (REPLICAS - 1)  # the survivors stop cleanly
    logs = "".join(p.log() for p in replicas.values())
    assert "elected to poll Telegram" in replicas[new_poller].log()
    assert PASSWORD not in logs and TOKEN not in logs


def test_a_replica_refuses_a_newer_schema(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:  # as a newer bot would leave it
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (99)")
    code = run_main(monkeypatch, tmp_path, with_password(database_url))
    err = capsys.readouterr().err
    assert code == 2
    assert "DATABASE_URL: the database's schema is version 99, this bot knows up to 1" in err
    assert PASSWORD not in err and "Traceback" not in err


def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_main(monkeypatch, tmp_path, f"postgresql://kandinsky:{PASSWORD}@127.0.0.1:1/kandinsky")
    err = capsys.readouterr().err
    assert code == 2
    assert "DATABASE_URL postgresql://kandinsky:***@127.0.0.1:1/kandinsky can't be used: " in err
    assert PASSWORD not in err and "Traceback" not in err


def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> int:
    """``python main.py`` in this process (no models load: the database is checked first)."""
    monkeypatch.chdir(tmp_path)  # no .env here
    for name, value in {"BOT_TOKEN": TOKEN, "DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    for hook in ("excepthook", "unraisablehook"):  # main sets its redacting hooks: back after the test
        monkeypatch.setattr(sys, hook, getattr(sys, hook))
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        return main.main(["run"])
    finally:  # its handler writes to this test's captured stderr, closed after the test
        root.handlers[:], root.level = before


def test_a_replica_leaves_the_sqlite_journal_alone(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With DATABASE_URL the jobs are in PostgreSQL: no SQLite journal is made (or checked)
    in DATA_DIR."""
    with psycopg.connect(database_url, autocommit=True) as conn:  # stops the start once the database is checked
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (99)")
    assert run_main(monkeypatch, tmp_path, database_url) == 2
    assert not list((tmp_path / "data").glob("*.sqlite3"))


def test_the_password_is_redacted_from_log_lines_and_tracebacks() -> None:
    """Whatever prints DATABASE_URL (a driver's error, our own line), its password is not
    shown: main.py gives it to the log redaction with the other secrets."""
    url = f"postgresql://kandinsky:{PASSWORD}@db.internal:5432/kandinsky"
    settings = settings_from_env({"BOT_TOKEN": TOKEN, "DATABASE_URL": url})
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(Redactor(main.secrets_of(settings))))
    logger = logging.getLogger("test.replicas.password")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise psycopg.OperationalError(f"connection to {url} failed")
    except psycopg.OperationalError:
        logger.exception("database %s not reached", url)
    finally:
        logger.removeHandler(handler)
    assert PASSWORD not in out.getvalue()
    assert "postgresql://kandinsky:<redacted>@db.internal" in out.getvalue() and "Traceback" in out.getvalue()
