"""Wire the bot together and run it: the one start-up path, for production and tests."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.draw_service import DrawService
from bot.handlers import create_routers
from bot.inbox import InboxMiddleware, feed_leftovers
from bot.middlewares.access import AccessMiddleware
from bot.middlewares.language import LanguageMiddleware
from bot.middlewares.rate_limit import RateLimitMiddleware
from bot.storage import open_stores
from bot.stores import SettingsStore, settings_store
from bot.telegram_check import wait_for_telegram
from bot.telegram_retry import RetryMiddleware
from bot.user_settings import UserSettings
from bot.web.api import add_api
from bot.web.metrics import SharedCollector
from config import Settings
from generation import GenerationEngine
from generation.composition import create_engine, create_translator, request_limits
from generation.translation import Translator

log = logging.getLogger(__name__)

# On stop, how long update handlers in progress may take; the rest are fed again next start.
HANDLERS_GRACE_S = 5.0

COMMANDS = {
    "en": [
        ("draw", "Draw a picture: /draw a red fox in the snow"),
        ("vary", "A variation of a photo: send it with /vary, or reply /vary"),
        ("mix", "Blend 2-4 photos: an album captioned /mix"),
        ("help", "How to ask and all options"),
        ("status", "Is the bot ready, how many requests wait"),
        ("settings", "Your defaults: size, quality, style, language"),
        ("styles", "The styles for --style"),
    ],
    "ru": [
        ("draw", "Нарисовать: /draw a red fox in the snow"),
        ("vary", "Вариация фото: подпишите его /vary или ответьте /vary"),
        ("mix", "Смешать 2–4 фото: альбом с подписью /mix"),
        ("help", "Как просить и все параметры"),
        ("status", "Готов ли бот, сколько запросов ждут"),
        ("settings", "Ваши настройки: размер, качество, стиль, язык"),
        ("styles", "Стили для --style"),
    ],
}


def create_bot(settings: Settings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    session.middleware(RetryMiddleware())  # every call through 429s and passing faults
    return Bot(
        token=settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def create_dispatcher(
    settings: Settings,
    engine: GenerationEngine,
    draws: DrawService,
    received: InboxMiddleware | None = None,
    user_settings: UserSettings | SettingsStore | None = None,
) -> Dispatcher:
    # Handlers see a SettingsStore (awaited): the SQLite class or PostgreSQL's (bot/pg_settings.py).
    user_settings = settings_store(user_settings or UserSettings.in_dir(settings.data_dir))
    # settings, engine, draws, translator and user_settings reach handlers, filters and
    # middlewares as workflow data.
    dispatcher = Dispatcher(
        settings=settings, engine=engine, draws=draws, translator=draws.translator, user_settings=user_settings
    )
    if received is not None:  # first: everything after it runs once the update is on disk
        dispatcher.update.outer_middleware(received)
    dispatcher.update.outer_middleware(LanguageMiddleware(user_settings))
    # Inner middlewares run in this order once the filters chose a handler: a stranger is
    # refused before a request is counted.
    access = AccessMiddleware()
    dispatcher.message.middleware(access)
    dispatcher.callback_query.middleware(access)
    limiter = RateLimitMiddleware(settings.rate_limit_per_min)  # one count for /draw and button presses
    dispatcher.message.middleware(limiter)
    dispatcher.callback_query.middleware(limiter)
    dispatcher.include_routers(*create_routers())
    return dispatcher


async def set_commands(bot: Bot) -> None:
    """The command menu in the user's language; a failure here must not stop the bot."""
    try:
        for lang, commands in COMMANDS.items():
            await bot.set_my_commands(
                [BotCommand(command=c, description=d) for c, d in commands],
                language_code=None if lang == "en" else lang,
            )
    except Exception as exc:
        log.warning("could not set the command menu: %s", exc)


async def start_http_server(
    settings: Settings,
    engine: GenerationEngine,
    dispatcher: Dispatcher,
    bot: Bot,
    translator: Translator | None = None,
    shared: SharedCollector | None = None,
) -> web.AppRunner | None:
    """The HTTP API, /metrics and (in webhook mode) the webhook, on HTTP_HOST:HTTP_PORT."""
    if settings.http_port is None:
        return None
    app = web.Application()
    add_api(app, engine, request_limits(settings), settings.api_tokens, settings.trusted_proxies, translator, shared)
    if settings.webhook_url:
        # Telegram sends WEBHOOK_SECRET back in a header; aiogram refuses updates without it.
        # Not in background: Telegram gets its 200 once the update is in the inbox (the
        # handlers then run in a task of InboxMiddleware).
        SimpleRequestHandler(
            dispatcher, bot, secret_token=settings.webhook_secret.get_secret_value(), handle_in_background=False
        ).register(app, path=settings.webhook_path)
    # handler_cancellation: a /generate whose client hung up is cancelled, and so is its job.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("HTTP server on %s:%s", settings.http_host, settings.http_port)
    return runner


async def run_bot(settings: Settings, *, handle_signals: bool = True, stop: asyncio.Event | None = None) -> None:
    """Start the engine (models load in the background), queue again what the journal
    holds unfinished (in the background too: updates are taken at once), and take
    updates (polling, or the webhook when WEBHOOK_URL is set)
    until stopped: by SIGINT/SIGTERM, or by ``stop`` being set (cancelling this coroutine
    instead would leave aiogram's polling tasks running).

    With DATABASE_URL this is one replica of several sharing one PostgreSQL database: it
    draws from the shared queue, beats a heartbeat, polls only while elected poller (any
    replica takes webhook updates), and takes over what replicas that died left unhandled.

    On stop: no new work; the running batch is finished and delivered within
    SHUTDOWN_GRACE_S; waiting requests stay in the journal for the next start."""
    stop = stop or asyncio.Event()
    if handle_signals:
        # From the first moment, not only once polling runs: a `docker stop` while the bot
        # waits for Telegram or loads its models is a graceful stop too.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    stores = await open_stores(settings)  # before the models: a wrong database stops the start at once
    received = InboxMiddleware(stores.inbox)
    engine = create_engine(settings)
    translator = create_translator(settings)
    translator.start()  # loads on its own thread, beside the engine's models
    bot = create_bot(settings)
    replica = None
    if stores.shared:
        from bot.replica import Replica  # PostgreSQL's modules only where they are used

        replica = Replica(stores, settings, engine)
        draws = await replica.start_draws(bot, translator)
    else:
        draws = DrawService(bot, engine, stores.journal, settings.progress_interval_s, translator)
    dispatcher = create_dispatcher(settings, engine, draws, received, stores.user_settings)
    await engine.start()
    # The journal is read before the webhook or polling can bring an update; its requests are
    # queued (and drawn) in the background, while Telegram is still being reached.
    draws.start_recovery()
    shared = None
    if replica is not None:
        await replica.start_heartbeat()
        dispatcher["shared"] = replica.status_view()  # /status: the shared queue and the replicas
        shared = replica.metrics()
    http = await start_http_server(settings, engine, dispatcher, bot, translator, shared)
    menu: asyncio.Task | None = None
    try:
        if not await wait_for_telegram(bot, settings.telegram_api_url, stop):
            return
        menu = asyncio.create_task(set_commands(bot))  # Telegram may be slow: nobody waits for it
        if replica is not None:
            replica.keep_feeding_leftovers(dispatcher, bot)  # of replicas that died, now and later
        else:
            # After the journal's recovery read its jobs (start_recovery): a /draw fed again is queued once.
            await feed_leftovers(stores.inbox, dispatcher, bot)
        if settings.webhook_url:
            await take_webhook_updates(settings, bot, dispatcher, stop)
        elif replica is not None:
            await replica.poll_while_elected(lambda until: take_polled_updates(bot, dispatcher, until), stop)
        else:
            await take_polled_updates(bot, dispatcher, stop)
    finally:
        log.info("stopping: finishing the running batch (up to %.0f s)", settings.shutdown_grace_s)
        if menu is not None:
            menu.cancel()
        if replica is not None:
            await replica.stop_taking_updates()
        if http:
            await http.cleanup()
        await received.shutdown(min(settings.shutdown_grace_s, HANDLERS_GRACE_S))
        await draws.shutdown(settings.shutdown_grace_s)
        if replica is not None:
            await replica.close()  # hands back its unfinished jobs, removes its heartbeat
        await engine.close()
        translator.close()
        await bot.session.close()
        await stores.close()
        log.info("stopped")


async def take_polled_updates(bot: Bot, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    await bot.delete_webhook(drop_pending_updates=False)  # getUpdates is refused while one is set
    stopper = asyncio.create_task(_stop_when_set(dispatcher, stop))
    try:
        # Updates in order, each only until InboxMiddleware has it on disk (its handlers
        # then run in a task): the next poll, which confirms the batch to Telegram, is
        # made after the whole batch is recorded.
        # Signals set ``stop`` (run_bot), which stops polling: aiogram need not handle them.
        await dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False, handle_as_tasks=False)
    finally:
        stopper.cancel()


async def take_webhook_updates(settings: Settings, bot: Bot, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    await bot.set_webhook(
        settings.webhook_url,
        secret_token=settings.webhook_secret.get_secret_value(),
        allowed_updates=dispatcher.resolve_used_update_types(),
    )
    log.info("webhook set; waiting for updates on %s", settings.webhook_path)
    await stop.wait()


async def _stop_when_set(dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    await stop.wait()
    while True:
        try:
            await dispatcher.stop_polling()
            return
        except RuntimeError:  # polling has not started yet
            await asyncio.sleep(0.05)
