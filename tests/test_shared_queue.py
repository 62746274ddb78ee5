"""Replicas sharing one PostgreSQL job queue (bot/shared_queue.py), two in one process:
each with its own engine on tiny models, its own Bot and pool, against one database and
the stand-in Bot API. Requests go through the real /draw and cancel handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest_asyncio
from aiogram.types import CallbackQuery, Chat, Message, User
from fake_telegram import Call, FakeTelegram

from bot.app import create_bot
from bot.handlers import draw as draw_handlers
from bot.keyboards import CancelRequest
from bot.pg_database import open_pool
from bot.pg_jobs import PgJobs
from bot.shared_queue import start_shared_draws
from config import Settings
from generation import GenerationParams
from generation.composition import create_engine

LEASE_S = 1.0


class Replica:
    """One bot replica's share of the work: engine, Bot, pool, DrawService, claim loop."""

    def __init__(self, name: str, settings: Settings, database_url: str, lease_s: float) -> None:
        self.name, self.settings, self.database_url, self.lease_s = name, settings, database_url, lease_s
        self.started = False

    async def open(self) -> Replica:
        self.engine = create_engine(self.settings)
        self.bot = create_bot(self.settings)
        self.pool = await open_pool(self.database_url)
        self.jobs = PgJobs(
            self.pool, max_queue=self.settings.max_queue, max_pending_per_user=self.settings.max_pending_per_user
        )
        self.draws, self.shared = await start_shared_draws(
            self.bot, self.engine, self.jobs, self.settings, None, self.name, lease_s=self.lease_s
        )
        return self

    async def start_drawing(self) -> None:
        """Load the models: the claim loop claims once they are ready (a replica whose
        models load accepts requests, and leaves them to the others)."""
        await self.engine.start()
        self.started = True

    async def close(self, *, release: bool = True) -> None:
        await self.draws.shutdown(0)
        await self.shared.close(release=release)
        await self.engine.close()
        await self.bot.session.close()
        await self.pool.close()

    async def ask(self, telegram: FakeTelegram, user: int, prompt: str, steps: int = 2, refused: bool = False) -> int:
        """A user's /draw arrives at this replica; the request's message id."""
        message_id = await telegram.send_text(f"/draw {prompt}", user_id=user)
        message = Message(
            message_id=message_id,
            date=datetime.now(UTC),
            chat=Chat(id=user, type="private"),
            from_user=User(id=user, is_bot=False, first_name="u"),
            text=f"/draw {prompt}",
        ).as_(self.bot)
        params = GenerationParams(prompt, 64, 64, steps, 4.0, 1.0, seed=user)
        accepted = await draw_handlers.queue(message, params, False, self.draws, self.engine, self.settings, "en")
        assert (accepted is None) == refused, f"{prompt}: {accepted}"
        return message_id

    async def press_cancel(self, status: Call, user: int) -> None:
        """A user presses the cancel button of ``status``; this replica takes the press."""
        data = status.data["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        query = CallbackQuery(
            id=f"q{status.result['message_id']}",
            from_user=User(id=user, is_bot=False, first_name="u"),
            chat_instance="ci",
            message=Message.model_validate(status.result).as_(self.bot),
            data=data,
        ).as_(self.bot)
        await draw_handlers.cancel(query, CancelRequest.unpack(data), self.draws, "en")


@pytest_asyncio.fixture
async def replicas(
    telegram: FakeTelegram, make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Callable]:
    """Makes replicas on one database; closes those still open at the end."""
    made: list[Replica] = []

    async def make(name: str, lease_s: float = LEASE_S, **env: str) -> Replica:
        env = {"DEFAULT_STEPS": "2", "PRIOR_STEPS": "2", "PROGRESS_INTERVAL_S": "0.2", **env}
        replica = await Replica(name, make_settings(telegram.url, **env), database_url, lease_s).open()
        made.append(replica)
        return replica

    yield make
    for replica in made:
        with contextlib.suppress(Exception):
            await replica.close()


async def rows(replica: Replica) -> dict[int, tuple[str, str | None, int]]:
    """message id -> (state, owner, attempts) of every job."""
    async with replica.pool.connection() as conn:
        found = await (await conn.execute("SELECT message_id, state, owner, attempts FROM jobs")).fetchall()
    return {message_id: (state, owner, attempts) for message_id, state, owner, attempts in found}


async def until(condition, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_requests_accepted_by_one_replica_are_drawn_by_either_and_delivered_once(
    telegram: FakeTelegram, replicas
) -> None:
    one = await replicas("r1", MAX_BATCH="2")
    two = await replicas("r2", MAX_BATCH="2")
    await asyncio.gather(one.start_drawing(), two.start_drawing())
    asked = {}
    for n in range(12):
        user = 500 + n % 6
        asked[await (one if n % 3 else two).ask(telegram, user, f"picture {n}")] = user
    await telegram.wait_for("sendPhoto", count=len(asked), timeout=120)
    await until(lambda: _settled(one))
    await asyncio.sleep(0.3)  # nothing more comes
    photos = Counter(c.reply_to for c in telegram.find("sendPhoto"))
    assert photos == Counter(set(asked))  # each once
    for message_id, user in asked.items():
        assert {c.chat_id for c in telegram.find("sendPhoto") if c.reply_to == message_id} == {user}
    states = await rows(one)
    assert {state for state, _, _ in states.values()} == {"sent"}
    assert {owner for _, owner, _ in states.values()} == {"r1", "r2"}  # both drew
    # Every status message went once its picture was sent, whoever drew it.
    statuses = {c.result["message_id"] for c in telegram.find("sendMessage", text_contains="In line")}
    await until(
        lambda: _true(statuses <= {int(c.data["message_id"]) for c in telegram.find("deleteMessage")}), timeout=10
    )


async def _true(value: bool) -> bool:
    return value


async def test_the_replica_that_draws_edits_the_status_message_another_sent(telegram: FakeTelegram, replicas) -> None:
    accepting = await replicas("r1")  # its models never load: it only accepts
    drawing = await replicas("r2", MAX_STEPS="200")
    await drawing.start_drawing()
    message_id = await accepting.ask(telegram, 600, "a long one", steps=30)
    [status] = telegram.find("sendMessage", chat_id=600, text_contains="In line")
    [edit] = await telegram.wait_for("editMessageText", chat_id=600, text_contains="step", timeout=60)
    assert int(edit.data["message_id"]) == status.result["message_id"]
    [photo] = await telegram.wait_for("sendPhoto", chat_id=600, timeout=120)
    assert photo.reply_to == message_id
    [deleted] = await telegram.wait_for("deleteMessage", chat_id=600, timeout=10)
    assert int(deleted.data["message_id"]) == status.result["message_id"]
    assert (await rows(accepting))[message_id] == ("sent", "r2", 1)


async def test_a_status_message_sent_after_the_claim_still_shows_progress_and_goes(
    telegram: FakeTelegram, replicas
) -> None:
    """The accepting replica was slow to send its status message: the replica that claimed
    the request meanwhile finds it, edits it, and deletes it once the picture is sent (no
    lease renewal in this test brings it: the lease is long)."""
    accepting = await replicas("r1", lease_s=600)
    drawing = await replicas("r2", lease_s=600, MAX_STEPS="200")
    await drawing.start_drawing()
    ticket = await accepting.draws.submit(
        params=GenerationParams("slow status", 64, 64, 40, 4.0, 1.0, seed=1),
        as_document=False, chat_id=610, message_id=1, user_id=610, lang="en",
    )  # fmt: skip
    assert ticket is not None
    await until(lambda: _claimed_by(drawing, 1, "r2"), timeout=30)
    status = await accepting.bot.send_message(610, await accepting.draws.status_text(ticket))
    accepting.draws.follow(ticket, status)
    [edit] = await telegram.wait_for("editMessageText", chat_id=610, text_contains="step", timeout=60)
    assert int(edit.data["message_id"]) == status.message_id
    await telegram.wait_for("sendPhoto", chat_id=610, timeout=120)
    [deleted] = await telegram.wait_for("deleteMessage", chat_id=610, timeout=10)
    assert int(deleted.data["message_id"]) == status.message_id


async def _claimed_by(replica: Replica, message_id: int, owner: str) -> bool:
    return (await rows(replica)).get(message_id, ("", None, 0))[1] == owner


async def test_the_caps_hold_across_replicas(telegram: FakeTelegram, replicas) -> None:
    one = await replicas("r1", MAX_PENDING_PER_USER="2", MAX_QUEUE="3")  # neither draws
    two = await replicas("r2", MAX_PENDING_PER_USER="2", MAX_QUEUE="3")
    await one.ask(telegram, 730, "first")
    await two.ask(telegram, 730, "second")
    await one.ask(telegram, 730, "third", refused=True)
    await telegram.wait_for("sendMessage", chat_id=730, text_contains="as many requests waiting as one person")
    await two.ask(telegram, 731, "fills the queue")
    await one.ask(telegram, 732, "one too many", refused=True)
    await telegram.wait_for("sendMessage", chat_id=732, text_contains="very busy")
    assert await one.jobs.depth() == 3


async def test_queue_place_comes_from_the_shared_queue_and_cancel_works_from_another_replica(
    telegram: FakeTelegram, replicas
) -> None:
    one = await replicas("r1")  # neither draws yet
    two = await replicas("r2")
    first = await one.ask(telegram, 700, "first")
    second = await two.ask(telegram, 701, "second")
    third = await one.ask(telegram, 702, "third")
    [status_first] = telegram.find("sendMessage", chat_id=700)
    [status_third] = telegram.find("sendMessage", chat_id=702)
    assert "3 of 3" in status_third.data["text"]  # behind the other replica's request
    await two.press_cancel(status_first, user=701)  # not theirs
    await telegram.wait_for("answerCallbackQuery", text_contains="Only the person who asked")
    await two.press_cancel(status_first, user=700)  # accepted by r1, cancelled through r2
    await telegram.wait_for("answerCallbackQuery", text="Cancelled.")
    # r1 follows its request's place in the shared line: one fewer ahead now.
    await telegram.wait_for("editMessageText", chat_id=702, text_contains="2 of 2", timeout=10)
    await one.start_drawing()
    for chat in (701, 702):
        await telegram.wait_for("sendPhoto", chat_id=chat, timeout=120)
    await until(lambda: _settled(one))
    states = await rows(one)
    assert states[first][0] == "cancelled" and states[second][0] == states[third][0] == "sent"
    assert not telegram.find("sendPhoto", chat_id=700)


async def _settled(replica: Replica) -> bool:
    return all(state not in ("queued", "running") for state, _, _ in (await rows(replica)).values())


async def test_a_request_another_replica_claimed_is_cancelled_before_it_is_drawn(
    telegram: FakeTelegram, replicas
) -> None:
    accepting = await replicas("r1")
    drawing = await replicas("r2", MAX_BATCH="1", MAX_STEPS="900")
    await drawing.start_drawing()
    await accepting.ask(telegram, 720, "keeps r2 busy", steps=100)
    await telegram.wait_for("editMessageText", chat_id=720, text_contains="step", timeout=60)
    message_id = await accepting.ask(telegram, 721, "claimed by r2, waiting there")
    await until(lambda: _claimed_by(drawing, message_id, "r2"), timeout=30)
    [status] = telegram.find("sendMessage", chat_id=721)
    await accepting.press_cancel(status, user=721)
    await telegram.wait_for("answerCallbackQuery", text="Cancelled.")
    await telegram.wait_for("sendPhoto", chat_id=720, timeout=120)
    await until(lambda: _true(not drawing.draws._tasks), timeout=30)
    assert (await rows(drawing))[message_id][0] == "cancelled"
    assert not telegram.find("sendPhoto", chat_id=721)  # never drawn, never sent
    edits = telegram.find("editMessageText", chat_id=721)
    assert edits[-1].data["text"] == "Cancelled."  # the last word, whatever r2 showed meanwhile


async def test_a_replica_that_dies_drawing_has_its_job_redrawn_by_another_after_the_lease(
    telegram: FakeTelegram, replicas
) -> None:
    dying = await replicas("r1", MAX_STEPS="900")
    other = await replicas("r2", MAX_STEPS="900")
    await dying.start_drawing()
    message_id = await dying.ask(telegram, 800, "interrupted", steps=100)
    await telegram.wait_for("editMessageText", chat_id=800, text_contains="step", timeout=60)
    await dying.close(release=False)  # gone without a word: no renewals, nothing handed back
    assert (await rows(other))[message_id][:2] == ("running", "r1")
    await other.start_drawing()  # takes it once r1's lease runs out
    [photo] = await telegram.wait_for("sendPhoto", chat_id=800, timeout=120)
    assert photo.reply_to == message_id
    await until(lambda: _settled(other))
    assert (await rows(other))[message_id] == ("sent", "r2", 2)
    assert len(telegram.find("sendPhoto")) == 1


async def test_a_graceful_stop_hands_back_unfinished_jobs_at_once(telegram: FakeTelegram, replicas) -> None:
    # A lease nobody waits out in this test: only the handing back lets r2 draw them.
    stopping = await replicas("r1", lease_s=600, MAX_BATCH="1", MAX_STEPS="900")
    other = await replicas("r2", lease_s=600, MAX_STEPS="900")
    await stopping.start_drawing()
    drawing = await stopping.ask(telegram, 900, "drawing when stopped", steps=100)
    await telegram.wait_for("editMessageText", chat_id=900, text_contains="step", timeout=60)
    waiting = await stopping.ask(telegram, 901, "claimed, waiting in r1's engine")
    await until(lambda: _all_owned(stopping, [drawing, waiting], "r1"), timeout=30)
    await stopping.close()  # its grace (none here) over: both handed back
    states = await rows(other)
    assert states[drawing][:2] == states[waiting][:2] == ("queued", None), states
    await other.start_drawing()
    for chat in (900, 901):
        await telegram.wait_for("sendPhoto", chat_id=chat, timeout=120)
    assert Counter(c.reply_to for c in telegram.find("sendPhoto")) == Counter([drawing, waiting])


async def _all_owned(replica: Replica, message_ids: list[int], owner: str) -> bool:
    states = await rows(replica)
    return all(states[m][1] == owner for m in message_ids)


async def test_an_unreadable_row_is_failed_and_its_user_told(telegram: FakeTelegram, replicas) -> None:
    replica = await replicas("r1")
    message_id = await replica.ask(telegram, 950, "garbled later")
    async with replica.pool.connection() as conn:
        await conn.execute("UPDATE jobs SET params = '{\"prompt\": ' WHERE message_id = %s", (message_id,))
    await replica.start_drawing()
    [told] = await telegram.wait_for("sendMessage", chat_id=950, text_contains="can't read your request")
    assert told.reply_to == message_id
    await until(lambda: _settled(replica))
    assert (await rows(replica))[message_id][0] == "failed"


async def test_a_replica_whose_lease_was_taken_over_while_drawing_does_not_deliver(
    telegram: FakeTelegram, replicas
) -> None:
    """r1 stalled past its lease and another replica took the row over: r1's picture,
    drawn meanwhile, is not sent (the other one sends its own), nor is r1's word recorded."""
    stalled = await replicas("r1", MAX_STEPS="900")
    await stalled.start_drawing()
    message_id = await stalled.ask(telegram, 990, "taken over", steps=60)
    await telegram.wait_for("editMessageText", chat_id=990, text_contains="step", timeout=60)
    async with stalled.pool.connection() as conn:  # as a claim by r2 after r1's lease ran out
        await conn.execute(
            "UPDATE jobs SET owner = 'r2', attempts = 2, lease_until = now() + interval '10 minutes'"
            " WHERE message_id = %s",
            (message_id,),
        )
    await until(lambda: _true(not stalled.draws._tasks), timeout=60)  # r1 has drawn it, and given up
    assert not telegram.find("sendPhoto")
    assert (await rows(stalled))[message_id] == ("running", "r2", 2)
