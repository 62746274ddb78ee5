from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
# pytest-xdist workers on two cores: one CPU thread each (and in the bots they start),
# not two apiece fighting over the cores (about 10% faster on a 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from fake_telegram import FakeTelegram
from tiny_kandinsky import save_tiny_models
from tiny_marian import save_tiny_marian

from bot import texts
from bot.app import run_bot
from config import Settings, settings_from_env

TOKEN = "123456789:TEST-secret-token-do-not-log"
ADMIN_ID = 99

# torch.compile's structured trace logs every graph at DEBUG on a logger that does not
# propagate; pytest attaches its capture to such loggers, so a failing compiled test
# printed thousands of trace lines. Nothing here reads them.
logging.getLogger("torch.__trace").addFilter(lambda record: False)
texts.raise_errors()  # a missing message or a text that does not format fails the test


# The longest test files first (each takes half a minute to three minutes on 2 cores):
# pytest-xdist's loadfile hands files to the workers in collection order (with
# --no-loadscope-reorder, pyproject.toml), so these start at once, side by side, instead of
# one of them starting last and keeping the run going alone.
LONGEST_FIRST = (
    "test_durability.py",
    "test_pipelines.py",  # the compiled test's cold Inductor compile
    "test_durability_signals.py",
    "test_cold_start.py",
    "test_startup.py",
    "test_pictures_journal.py",
    "test_replicas_e2e.py",
    "test_cli.py",
    "test_bot_draw.py",
    "test_main_process.py",
    "test_cli_pictures.py",
    "test_upscale.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of this pytest worker (started on first use). Its folder is
    outside pytest's: run as root, pgserver runs the server as another user, and pytest
    makes its own folder private again at each start of a run."""
    import shutil
    import tempfile

    from pg_server import PostgresForTests

    folder = Path(tempfile.mkdtemp(prefix="kandinsky-bot-pg-"))
    server = PostgresForTests(folder)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(postgres) -> str:
    """DATABASE_URL of a fresh, empty database on the tests' PostgreSQL server."""
    return postgres.new_database()


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight MarianMT translation model (TRANSLATION_MODEL), built offline."""
    import torch

    torch.set_flush_denormal(True)  # random weights make denormals: 10x slower on the CPU
    return save_tiny_marian(tmp_path_factory.mktemp("marian"))


def bot_env(tiny_models: tuple[Path, Path], api_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    """Environment for a bot on tiny models: small pictures, few steps, CPU."""
    prior, decoder = tiny_models
    env = {
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": api_url,
        "PRIOR_MODEL": str(prior),
        "DECODER_MODEL": str(decoder),
        "DEVICE": "cpu",
        "DEFAULT_WIDTH": "64",
        "DEFAULT_HEIGHT": "64",
        "DEFAULT_STEPS": "4",
        "PRIOR_STEPS": "3",
        "MAX_SIDE": "512",
        "ADMIN_IDS": str(ADMIN_ID),
        "PROGRESS_INTERVAL_S": "0.2",
        # No translation model offline: tests of translation set TRANSLATE=auto and the tiny one.
        "TRANSLATE": "off",
    }
    env.update(extra)
    return env


@pytest.fixture
def make_settings(tiny_models: tuple[Path, Path], tmp_path: Path) -> Callable[..., Settings]:
    def make(api_url: str = "http://127.0.0.1:9", **extra: str) -> Settings:
        extra.setdefault("DATA_DIR", str(tmp_path / "data"))
        return settings_from_env(bot_env(tiny_models, api_url, **extra))

    return make


@pytest_asyncio.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(TOKEN)
    await server.start()
    yield server
    await server.stop()


@contextlib.asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[asyncio.Task]:
    """The bot exactly as main.py runs it, polling the stand-in server."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(settings, handle_signals=False, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)  # also raises what the bot raised


@pytest_asyncio.fixture
async def bot(telegram: FakeTelegram, make_settings: Callable[..., Settings]) -> AsyncIterator[FakeTelegram]:
    """A running bot with default test settings; yields the stand-in server to talk to it."""
    async with running_bot(make_settings(telegram.url)):
        yield telegram


ROOT = Path(__file__).parent.parent


class BotProcess:
    """``python main.py`` in its own process, its output going to a log file."""

    def __init__(self, env: dict[str, str], workdir: Path, log_name: str = "bot.log") -> None:
        self.env = {**os.environ, **env}
        self.workdir = workdir
        self.log_path = workdir / log_name
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> BotProcess:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), cwd=self.workdir, env=self.env, stdout=log, stderr=log
        )
        log.close()
        return self

    async def stop(self, sig: int, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def png_image(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
