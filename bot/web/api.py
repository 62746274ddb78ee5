"""The old HTTP service's contract on the bot's own server, so its clients keep working.

GET / (service info), GET /health, POST /generate (JSON in, image/png out, through the same
queue and batching as /draw), POST /reload, GET /metrics. /generate and /reload require
``Authorization: Bearer <token>`` when API_TOKEN or API_TOKENS is set.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.draw_args import DrawArgsError, DrawLimits, params_from_json
from bot.texts import plain, text
from bot.web.clients import Network, api_user_id, client_address, client_key
from bot.web.metrics import CONTENT_TYPE, Metrics
from generation import GenerationEngine, GenerationError, ModelsUnavailable, OutOfMemory, QueueFull, UserQueueFull

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE = web.AppKey("engine", GenerationEngine)
LIMITS = web.AppKey("limits", DrawLimits)
API_TOKENS = web.AppKey("api_tokens", tuple[str, ...])
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])
METRICS = web.AppKey("metrics", Metrics)
TOKEN = web.RequestKey("api_token", str)  # the token the request came with, once checked
# A /generate body is a few fields and two prompts of at most 4096 characters, each of
# which JSON may spell as 12-byte surrogate pairs: 256 KiB is plenty.
MAX_BODY_BYTES = 256 * 1024
# The old service's answer to a reload; its clients check status == "success".
RELOADED = {"status": "success", "message": "Модели успешно загружены"}
RELOAD_FAILED = "Не удалось загрузить модели"  # "loading the models failed", in the same voice
# No field needs more digits (a seed has 10); longer integers are refused before Python
# converts them (past 4300 digits int() raises, and converting is slow well before that).
MAX_INTEGER_DIGITS = 40


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def requires_token(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        tokens = request.app[API_TOKENS]
        if tokens:
            token = presented_token(request.headers.get("Authorization", ""), tokens)
            if token is None:
                return error(401, "missing or wrong API token: send 'Authorization: Bearer <API_TOKEN>'")
            request[TOKEN] = token
        return await handler(request)

    return checked


def presented_token(header: str, tokens: tuple[str, ...]) -> str | None:
    """The configured token the Authorization header carries, compared in constant time."""
    given = header.encode()
    found = None
    for token in tokens:  # all of them, so the time taken does not tell which one matched
        if hmac.compare_digest(given, f"Bearer {token}".encode()):
            found = token
    return found


async def info(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "service": "Kandinsky 2.2 (Telegram bot with the old HTTP API)",
            "endpoints": {
                "GET /": "this description",
                "GET /health": "status (healthy, compiling, reloading or unhealthy), device, models_loaded, "
                "queue_length",
                "POST /generate": "JSON: prompt, negative_prompt, width, height, num_inference_steps, "
                "guidance_scale, prior_guidance_scale, seed -> image/png",
                "POST /reload": "reload both models",
                "GET /metrics": "Prometheus metrics",
            },
        }
    )


async def health(request: web.Request) -> web.Response:
    """ "reloading" is healthy but busy: the old models finish their batch, and requests
    wait for the new ones. "compiling" is healthy and serving, slower until the compiled
    graphs are ready. A health check must not restart the bot for either."""
    status = request.app[ENGINE].status()
    return web.json_response(
        {
            # "compiling": ready, drawing without compiled graphs (slower) until they are
            "status": "reloading"
            if status.reloading
            else "compiling"
            if status.compiling
            else "healthy"
            if status.healthy
            else "unhealthy",
            # loading, ready or failed: a bot still loading answers users and queues their requests
            "models": status.models.value,
            "device": ",".join(status.devices),
            "models_loaded": status.healthy,
            "queue_length": status.queued,
            "running": status.running,
            "error": status.error,
        }
    )


async def read_json(request: web.Request) -> object:
    """The body as JSON, or an HTTP error response to return (400, or 413 when too big)."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return error(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return error(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body, parse_int=_short_integer)
    except _TooManyDigits:
        return error(400, f"a number in the body has more than {MAX_INTEGER_DIGITS} digits")
    except RecursionError:
        return error(400, "the body is nested too deeply")
    except ValueError:  # not JSON, or not UTF-8
        return error(400, "the body must be JSON")


class _TooManyDigits(ValueError):
    pass


def _short_integer(digits: str) -> int:
    if len(digits) > MAX_INTEGER_DIGITS + 1:  # + 1: the sign
        raise _TooManyDigits()
    return int(digits)


@requires_token
async def generate(request: web.Request) -> web.Response:
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    try:
        params = params_from_json(body, request.app[LIMITS])
    except DrawArgsError as exc:
        return error(400, plain(text("en", exc.key, **exc.params)))
    engine = request.app[ENGINE]
    forwarded_for = request.headers.getall("X-Forwarded-For", [])
    address = client_address(request.remote, forwarded_for, request.app[TRUSTED_PROXIES])
    user_id = api_user_id(client_key(request.get(TOKEN), address, request.app[API_TOKENS]))
    try:
        job = await engine.submit(params, user_id=user_id)
    except (QueueFull, UserQueueFull):
        return error(429, "busy: too many requests waiting, try again later")
    except ModelsUnavailable as exc:
        return error(503, f"models not loaded: {exc}")
    try:
        result = await job.result()
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client hangs up: nobody waits for the
        # picture. A waiting job leaves the queue; a running batch just drops it.
        if engine.cancel(job):
            log.info("HTTP client %s went away: its waiting request is cancelled", user_id)
        raise
    except ModelsUnavailable as exc:
        return error(503, f"models not loaded: {exc}")
    except OutOfMemory:
        return error(507, plain(text("en", "out_of_memory")))
    except GenerationError as exc:
        log.error("HTTP /generate failed: %s", exc)
        return error(500, "generation failed")
    return web.Response(
        body=result.png,
        content_type="image/png",
        headers={
            "X-Seed": str(result.seed),
            "X-Generation-Seconds": f"{result.seconds:.3f}",
            "X-Batch-Size": str(result.batch_size),
        },
    )


@requires_token
async def reload(request: web.Request) -> web.Response:
    """The old service's answer (``status: success`` and a message), plus the seconds taken;
    a failure is a 500 with ``status: error``."""
    started = time.monotonic()
    try:
        # Shielded: a client hanging up must not stop a reload halfway.
        await asyncio.shield(request.app[ENGINE].reload())
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return web.json_response(
            {"status": "error", "message": f"{RELOAD_FAILED}: {reason}", "error": f"reload failed: {reason}"},
            status=500,
        )
    return web.json_response({**RELOADED, "seconds": round(time.monotonic() - started, 2)})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


# Every route this module serves; a webhook path must not be one of PATHS.
ROUTES = (
    ("GET", "/", info),
    ("GET", "/health", health),
    ("POST", "/generate", generate),
    ("POST", "/reload", reload),
    ("GET", "/metrics", metrics),
)
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_api(
    app: web.Application,
    engine: GenerationEngine,
    limits: DrawLimits,
    api_tokens: tuple[str, ...],
    trusted_proxies: tuple[Network, ...] = (),
) -> None:
    """``api_tokens``: empty for no auth; several identify clients one by one.
    ``trusted_proxies``: peers whose X-Forwarded-For names the client."""
    app[ENGINE], app[LIMITS], app[METRICS] = engine, limits, Metrics(engine)
    app[API_TOKENS], app[TRUSTED_PROXIES] = tuple(api_tokens), tuple(trusted_proxies)
    for method, path, handler in ROUTES:
        add = app.router.add_get if method == "GET" else app.router.add_post  # GET also answers HEAD
        add(path, handler)
