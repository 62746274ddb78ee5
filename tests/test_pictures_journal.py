"""The pictures a request draws from are durable: stored with its journal row, read back
after a restart (SIGKILL included), and deleted once the request has ended."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import torch
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from conftest import TOKEN, BotProcess, bot_env, png_image, running_bot
from fake_telegram import FakeTelegram
from PIL import Image

from bot.delivery import caption
from bot.draw_service import DrawService
from bot.journal import INPUTS_DIR, PARAMS_VERSION, Entry, Journal, State, Unreadable, decode_params
from generation import GenerationEngine, GenerationParams, GenerationResult
from generation.params import MixPart

TEXT = GenerationParams("a fox", 64, 64, 4, 4.0, 1.0, seed=7)
REDRAW = GenerationParams("a watercolor", 64, 64, 4, 4.0, 1.0, seed=7, init_image=0, strength=0.5)
MIX = GenerationParams(
    "in winter",
    64,
    64,
    4,
    4.0,
    1.0,
    seed=9,
    mix=(MixPart(0.4, image=0), MixPart(0.2, text="snow"), MixPart(0.4, image=1)),
)


def picture(seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


A, B = picture(1), picture(2)


def add(journal: Journal, message_id: int, params: GenerationParams = MIX, images=(A, B), chat: int = 5) -> int:
    job_id = journal.add(
        chat_id=chat, message_id=message_id, user_id=chat, lang="en", params=params, as_document=False, images=images
    )
    assert job_id is not None
    return job_id


def inputs(data: Path) -> set[str]:
    folder = data / INPUTS_DIR
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_pictures_are_stored_with_the_row_and_read_back_after_reopening(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    mix = add(journal, 1)
    redraw = add(journal, 2, REDRAW, (A,))
    text = add(journal, 3, TEXT, ())
    assert (tmp_path / INPUTS_DIR / str(mix) / "1").read_bytes() == B
    assert inputs(tmp_path) == {str(mix), str(redraw)}  # nothing staged left behind, nothing for text
    journal.close()  # as after a crash

    entries = Journal.in_dir(str(tmp_path)).unfinished()
    assert [(e.id, e.params, e.images) for e in entries] == [
        (mix, MIX, (A, B)),
        (redraw, REDRAW, (A,)),
        (text, TEXT, ()),
    ]


@pytest.mark.parametrize("end", [State.SENT, State.FAILED, State.CANCELLED])
def test_pictures_are_deleted_when_the_request_ends(tmp_path: Path, end: State) -> None:
    journal = Journal.in_dir(str(tmp_path))
    job, other = add(journal, 1), add(journal, 2)
    journal.mark(job, State.RUNNING)
    assert inputs(tmp_path) == {str(job), str(other)}
    journal.mark(job, end)
    assert inputs(tmp_path) == {str(other)}


def test_a_request_not_accepted_or_sent_twice_leaves_no_pictures(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    job = add(journal, 1)
    assert (
        journal.add(chat_id=5, message_id=1, user_id=5, lang="en", params=MIX, as_document=False, images=(A, B)) is None
    )
    assert inputs(tmp_path) == {str(job)}
    journal.remove(job)  # the queue was full after all
    assert inputs(tmp_path) == set()


def test_a_row_that_fails_to_insert_leaves_no_pictures(tmp_path: Path) -> None:
    """The pictures are staged, then the insert fails: neither a row nor a file stays."""
    journal = Journal.in_dir(str(tmp_path))
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    with pytest.raises(sqlite3.Error):
        add(journal, 1)
    assert inputs(tmp_path) == set() and journal.unfinished() == []


def test_orphans_of_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    kept, ended = add(journal, 1), add(journal, 2)
    journal.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # crashed between the row's end and the delete
        db.execute("UPDATE jobs SET state = 'sent' WHERE id = ?", (ended,))
    folder = tmp_path / INPUTS_DIR
    (folder / ".new-0123").mkdir()  # staged by a request whose row never committed
    (folder / ".new-0123" / "0").write_bytes(A)
    (folder / "999").mkdir()  # moved into place, then the transaction was lost
    assert inputs(tmp_path) == {str(kept), str(ended), ".new-0123", "999"}

    journal = Journal.in_dir(str(tmp_path))
    assert inputs(tmp_path) == {str(kept)}
    [entry] = journal.unfinished()
    assert entry.images == (A, B)
    # A rolled-back id may be given again: the new row's pictures replace the orphan's.
    (folder / "3").mkdir()
    (folder / "3" / "0").write_bytes(B)
    new = add(journal, 3, REDRAW, (A,))
    assert new == 3 and journal.unfinished()[1].images == (A,)


def test_a_row_whose_pictures_are_missing_is_unreadable(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    lost, fine = add(journal, 1), add(journal, 2, REDRAW, (A,))
    (tmp_path / INPUTS_DIR / str(lost) / "1").unlink()
    [unreadable, entry] = journal.unfinished()
    assert isinstance(unreadable, Unreadable) and unreadable.id == lost
    assert unreadable.message == "pics-core-missing-pictures" and "pictures missing" in unreadable.reason
    assert (unreadable.chat_id, unreadable.message_id) == (5, 1)
    assert isinstance(entry, Entry) and entry.id == fine


def insert_raw(db_path: Path, message_id: int, params: str, version: int, images: int = 0) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO jobs (chat_id, message_id, user_id, lang, params, params_version, as_document, state,"
            " images, created_at, updated_at) VALUES (5, ?, 5, 'en', ?, ?, 0, 'queued', ?, 0, 0)",
            (message_id, params, version, images),
        )


V1 = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 4, "guidance_scale": 4.0,
      "prior_guidance_scale": 1.0, "seed": 7, "negative_prompt": None}  # fmt: skip


def test_version_1_rows_and_unknown_keys_decode() -> None:
    assert PARAMS_VERSION == 3
    assert decode_params(json.dumps(V1), 1) == TEXT
    newer = {**asdict(MIX), "from_the_future": "ink"}
    newer["mix"] = [{**part, "scale": 2} for part in newer["mix"]]  # a part's key this version doesn't know
    assert decode_params(json.dumps(newer), 3) == MIX
    assert decode_params(json.dumps(asdict(REDRAW)), 2) == REDRAW


@pytest.mark.parametrize(
    "mix",
    [
        "garbage",
        [{"weight": "heavy", "image": 0}],
        [{"weight": 1.0}],  # neither a text nor a picture
        [{"weight": 1.0, "text": "x", "image": 0}],  # both
        [{"weight": 1.0, "image": -1}],
        [{"weight": "NaN", "image": 0}],
        [["not", "an", "object"]],
    ],
)
def test_an_unreadable_mix_is_an_unreadable_row(tmp_path: Path, mix: object) -> None:
    journal = Journal.in_dir(str(tmp_path))
    insert_raw(tmp_path / "jobs.sqlite3", 1, json.dumps({**V1, "mix": mix}), 2, images=1)
    add(journal, 2, TEXT, ())
    [unreadable, entry] = journal.unfinished()
    assert isinstance(unreadable, Unreadable) and unreadable.message == "request_unreadable"
    assert isinstance(entry, Entry)


@pytest.mark.parametrize("fields", [{"init_image": -2}, {"init_image": 0, "strength": 0.1}])
def test_an_impossible_redraw_is_an_unreadable_row(tmp_path: Path, fields: dict) -> None:
    journal = Journal.in_dir(str(tmp_path))
    insert_raw(tmp_path / "jobs.sqlite3", 1, json.dumps({**V1, **fields}), 2)
    [unreadable] = journal.unfinished()
    assert isinstance(unreadable, Unreadable)


def result(params: GenerationParams) -> GenerationResult:
    return GenerationResult(b"", params.width, params.height, params.seed, 1.0, 1)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_captions_say_how_to_repeat_a_picture(lang: str) -> None:
    redraw = caption(
        GenerationParams("a <b>", 64, 64, 10, 4.0, 1.0, seed=5, init_image=0, strength=0.6), result(REDRAW), lang
    )
    assert "--strength 0.6" in redraw and "7" in redraw and "&lt;b&gt;" in redraw
    variation = caption(
        GenerationParams("", 64, 64, 4, 4.0, 1.0, seed=3, mix=(MixPart(1.0, image=0),)), result(TEXT), lang
    )
    assert variation.startswith("🌱") and "🔁" in variation  # no empty line for a missing text
    steered = GenerationParams(
        "in winter", 64, 64, 4, 4.0, 1.0, seed=3, mix=(MixPart(0.7, image=0), MixPart(0.3, text="<snow>"))
    )
    assert "--weights 0.7,0.3" in caption(steered, result(TEXT), lang) and "«&lt;snow&gt;»" in caption(
        steered, result(TEXT), lang
    )
    mix = caption(MIX, result(MIX), lang)
    assert "--weights 0.4,0.2,0.4" in mix and "«snow»" in mix and "9" in mix
    assert ("picture 2" if lang == "en" else "картинка 2") in mix
    assert "🖌" not in caption(TEXT, result(TEXT), lang) and "🔀" not in caption(TEXT, result(TEXT), lang)


# -- DrawService ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def service(
    telegram: FakeTelegram, tmp_path: Path
) -> AsyncIterator[tuple[DrawService, Journal, threading.Event]]:
    """A DrawService whose engine is still loading its models until the event is set (then they fail)."""
    gate = threading.Event()

    def loader(device: torch.device):
        gate.wait(30)
        raise OSError("no weights here")

    engine = GenerationEngine([torch.device("cpu")], loader)
    await engine.start()
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)))
    journal = Journal.in_dir(str(tmp_path))
    draws = DrawService(bot, engine, journal, 0.2)
    try:
        yield draws, journal, gate
    finally:
        gate.set()
        await draws.shutdown(0)
        await engine.close()
        await bot.session.close()
        journal.close()


async def until(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_the_service_passes_pictures_on_and_drops_them_when_cancelled_or_failed(service, tmp_path: Path) -> None:
    draws, journal, gate = service
    submit = dict(as_document=False, chat_id=7, user_id=7, lang="en")
    cancelled = await draws.submit(params=MIX, message_id=1, images=(A, B), **submit)
    failed = await draws.submit(params=REDRAW, message_id=2, images=(B,), **submit)
    assert cancelled.job.images == (A, B) and failed.job.images == (B,)
    assert inputs(tmp_path) == {str(cancelled.journal_id), str(failed.journal_id)}
    draws.follow(cancelled, None)
    draws.follow(failed, None)
    assert draws.cancel(cancelled.journal_id, 7).value == "cancelled"
    await until(lambda: inputs(tmp_path) == {str(failed.journal_id)})
    gate.set()  # the models fail to load: the waiting request fails
    await until(lambda: inputs(tmp_path) == set())
    assert journal.counts() == {"cancelled": 1, "failed": 1}


async def test_recovery_passes_the_stored_pictures_to_the_engine(service, tmp_path: Path) -> None:
    draws, journal, _ = service
    job = add(journal, 1, MIX, (A, B), chat=8)
    await draws.recover()
    [ticket] = draws._tickets.values()
    assert ticket.journal_id == job and ticket.job.images == (A, B) and ticket.params == MIX


async def test_a_row_whose_pictures_are_lost_is_failed_and_its_user_told(
    telegram: FakeTelegram, make_settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    journal = Journal.in_dir(str(data))
    lost = add(journal, 3, REDRAW, (A,), chat=41)
    add(journal, 4, GenerationParams("", 64, 64, 2, 4.0, 1.0, seed=4, mix=(MixPart(1.0, image=0),)), (A,), chat=42)
    journal.close()
    (data / INPUTS_DIR / str(lost) / "0").unlink()
    async with running_bot(make_settings(telegram.url)):
        [told] = await telegram.wait_for("sendMessage", chat_id=41, text_contains="was lost")
        assert told.reply_to == 3
        [photo] = await telegram.wait_for("sendPhoto", chat_id=42, timeout=120)
        assert photo.data["caption"].startswith("🌱 seed 4") and "A variation of the picture" in photo.data["caption"]
        [notice] = telegram.find("sendMessage", chat_id=42, text_contains="The bot restarted")
        assert "«a picture from your pictures»" in notice.data["text"]  # it has no text to name it
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        rows = dict(db.execute("SELECT message_id, state || ' ' || COALESCE(error, '') FROM jobs"))
    assert rows[3].startswith("failed unreadable: pictures missing") and rows[4] == "sent "
    assert inputs(data) == set()


async def test_sigkill_while_drawing_a_redraw_and_the_restart_delivers_it(
    telegram: FakeTelegram, tiny_models, tmp_path: Path
) -> None:
    """A redraw accepted (in the journal with its picture, as DrawService.submit leaves
    it) is being drawn when the bot is killed; the next start draws it from the stored
    picture and delivers it, then deletes the picture."""
    data = tmp_path / "data"
    params = GenerationParams("a watercolor", 128, 64, 60, 4.0, 1.0, seed=11, init_image=0, strength=0.5)
    journal = Journal.in_dir(str(data))
    job = add(journal, 5, params, (picture(3, (400, 300)),), chat=60)
    journal.close()
    env = bot_env(tiny_models, telegram.url, DATA_DIR=str(data))

    bot = await BotProcess(env, tmp_path, "first.log").start()
    try:
        await telegram.wait_for("editMessageText", chat_id=60, text_contains="step", timeout=120)
        progress = telegram.find("editMessageText", chat_id=60, text_contains="step")[0].data["text"]
        assert progress.endswith("of 30.")  # the steps a redraw runs: 60 x 0.5
        with sqlite3.connect(data / "jobs.sqlite3") as db:
            assert db.execute("SELECT state FROM jobs WHERE id = ?", (job,)).fetchone() == ("running",)
    finally:
        await bot.stop(signal.SIGKILL)
    assert not telegram.find("sendPhoto") and inputs(data) == {str(job)}

    bot = await BotProcess(env, tmp_path, "second.log").start()
    try:
        [photo] = await telegram.wait_for("sendPhoto", chat_id=60, timeout=120)
    finally:
        await bot.stop(signal.SIGTERM)
    assert photo.reply_to == 5 and "--strength 0.5" in photo.data["caption"]
    assert png_image(photo.files["photo"]).size == (128, 64)
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        assert db.execute("SELECT state FROM jobs WHERE id = ?", (job,)).fetchone() == ("sent",)
    assert inputs(data) == set()
