"""Every Bot API call goes through 429s and passing faults the same way (RetryMiddleware)."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetMe, GetUpdates, SendMessage, SendPhoto
from aiogram.types import BufferedInputFile
from conftest import TOKEN
from fake_telegram import Call, FakeTelegram

from bot.telegram_retry import CALLS, PICTURES, RetryMiddleware

TOO_MANY = 429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                 "parameters": {"retry_after": 1}}  # fmt: skip
SERVER_ERROR = 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}


def faults_once(method: str, *faults: tuple[int, dict]):
    """A fault plan: the first calls of ``method`` get ``faults``, in order."""
    left = list(faults)

    def plan(called: str, data: dict):
        if called == method and left:
            return left.pop(0)
        return None

    return plan


async def test_help_survives_a_429_and_a_500(bot: FakeTelegram) -> None:
    bot.fault_plan = faults_once("sendMessage", TOO_MANY, SERVER_ERROR)
    await bot.send_text("/help", user_id=60)
    [reply] = await bot.wait_for("sendMessage", chat_id=60, timeout=20)
    assert "How to ask" in reply.data["text"]
    assert not bot.find("sendMessage", text_contains="went wrong")


async def test_status_survives_a_500(bot: FakeTelegram) -> None:
    bot.fault_plan = faults_once("sendMessage", SERVER_ERROR)
    await bot.send_text("/status", user_id=61)
    [reply] = await bot.wait_for("sendMessage", chat_id=61, timeout=20)
    assert "Device" in reply.data["text"]


async def test_button_answer_survives_a_429(bot: FakeTelegram) -> None:
    bot.fault_plan = faults_once("answerCallbackQuery", TOO_MANY)
    status = Call("sendMessage", {"chat_id": 62, "text": "an old status message"})
    await bot.press_button(status, "cancel:999", user_id=62)  # a job that is long gone
    [answer] = await bot.wait_for("answerCallbackQuery", timeout=20)
    assert answer.data["text"] == "This button no longer works."  # answered, after the 429


# -- the policy, with aiogram's request chain stood in for -----------------------------


class Clock:
    now = 0.0


class Requests:
    """Stands in for aiogram's ``make_request``: raises the given errors, then answers;
    each call takes ``takes_s`` on the clock."""

    def __init__(self, *errors: Exception, clock: Clock | None = None, takes_s: float = 0.0) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.clock = clock or Clock()
        self.takes_s = takes_s

    async def __call__(self, bot: Bot, method: Any) -> Any:
        self.calls += 1
        self.clock.now += self.takes_s
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def middleware(waits: list[float], clock: Clock) -> RetryMiddleware:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    return RetryMiddleware(sleep=sleep, clock=lambda: clock.now)


BOT = Bot(TOKEN)
MESSAGE = SendMessage(chat_id=1, text="hi")
PHOTO = SendPhoto(chat_id=1, photo=BufferedInputFile(b"png", "a.png"))


async def test_429_waits_retry_after_and_5xx_backs_off(middleware: RetryMiddleware, waits: list[float]) -> None:
    requests = Requests(
        TelegramRetryAfter(MESSAGE, "Too Many Requests", 3), TelegramServerError(MESSAGE, "Bad Gateway")
    )
    assert await middleware(requests, BOT, MESSAGE) == "ok"
    assert requests.calls == 3 and waits == [3.0, 1.0]


async def test_other_errors_raise_at_once(middleware: RetryMiddleware, waits: list[float]) -> None:
    requests = Requests(TelegramBadRequest(MESSAGE, "Bad Request: chat not found"))
    with pytest.raises(TelegramBadRequest):
        await middleware(requests, BOT, MESSAGE)
    assert requests.calls == 1 and waits == []


@pytest.mark.parametrize("method", [GetUpdates(timeout=30), GetMe()])
async def test_calls_with_their_own_retry_loop_are_left_alone(
    middleware: RetryMiddleware, waits: list[float], method: Any
) -> None:
    """getUpdates: aiogram's polling backs off; getMe: the start-up check says "can't reach
    Telegram" in one line at once, not after a minute of our retries."""
    requests = Requests(TelegramServerError(method, "Bad Gateway"))
    with pytest.raises(TelegramServerError):
        await middleware(requests, BOT, method)
    assert requests.calls == 1 and waits == []


@pytest.mark.parametrize(("method", "policy"), [(MESSAGE, CALLS), (PHOTO, PICTURES)])
async def test_waits_are_bounded(middleware: RetryMiddleware, waits: list[float], method: Any, policy) -> None:
    requests = Requests(*(TelegramServerError(method, "Internal Server Error") for _ in range(100)))
    with pytest.raises(TelegramServerError):
        await middleware(requests, BOT, method)
    assert requests.calls == policy.attempts and sum(waits) <= policy.max_s
    assert policy is CALLS or sum(waits) >= 180  # a picture is worth minutes of trouble


@pytest.mark.parametrize(("method", "policy"), [(MESSAGE, CALLS), (PHOTO, PICTURES)])
async def test_slow_failures_are_bounded_too(middleware: RetryMiddleware, clock: Clock, method: Any, policy) -> None:
    """Each attempt hangs until aiogram's request timeout: the retries still end in time."""
    errors = (TelegramNetworkError(method, "Request timeout error") for _ in range(100))
    requests = Requests(*errors, clock=clock, takes_s=60.0)
    with pytest.raises(TelegramNetworkError):
        await middleware(requests, BOT, method)
    assert 2 <= requests.calls < policy.attempts and clock.now <= policy.max_s + 60.0


async def test_flood_wait_past_the_budget_is_not_waited(middleware: RetryMiddleware, waits: list[float]) -> None:
    requests = Requests(TelegramRetryAfter(MESSAGE, "Too Many Requests", 3600))
    with pytest.raises(TelegramRetryAfter):
        await middleware(requests, BOT, MESSAGE)
    assert requests.calls == 1 and waits == []
