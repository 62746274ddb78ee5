"""The old HTTP service's contract on the bot's own server, so its clients keep working.

GET / (service info), GET /health, POST /generate (JSON in, image/png out, through the same
queue and batching as /draw), POST /reload, GET /metrics. /generate and /reload require
``Authorization: Bearer <token>`` when API_TOKEN or API_TOKENS is set (any one of them).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.draw_args import DrawArgsError, DrawLimits, params_from_json
from bot.texts import plain, text
from bot.web.metrics import CONTENT_TYPE, Metrics
from generation import GenerationEngine, GenerationError, ModelsUnavailable, OutOfMemory, QueueFull, UserQueueFull

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE = web.AppKey("engine", GenerationEngine)
LIMITS = web.AppKey("limits", DrawLimits)
API_TOKENS = web.AppKey("api_tokens", tuple[str, ...])
METRICS = web.AppKey("metrics", Metrics)
# API clients share the fair queue with Telegram users; ids below this never clash.
API_USER_BASE = -(10**15)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def requires_token(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        tokens = request.app[API_TOKENS]
        if tokens:
            given = request.headers.get("Authorization", "").encode()
            # every token compared (a list, not a generator): the time says nothing about which matched
            if not any([hmac.compare_digest(given, f"Bearer {token}".encode()) for token in tokens]):
                return error(401, "missing or wrong API token: send 'Authorization: Bearer <API_TOKEN>'")
        return await handler(request)

    return checked


async def info(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "service": "Kandinsky 2.2 (Telegram bot with the old HTTP API)",
            "endpoints": {
                "GET /": "this description",
                "GET /health": "status, device, models_loaded, queue_length",
                "POST /generate": "JSON: prompt, negative_prompt, width, height, num_inference_steps, "
                "guidance_scale, prior_guidance_scale, seed -> image/png",
                "POST /reload": "reload both models",
                "GET /metrics": "Prometheus metrics",
            },
        }
    )


async def health(request: web.Request) -> web.Response:
    status = request.app[ENGINE].status()
    return web.json_response(
        {
            "status": "healthy" if status.healthy else "unhealthy",
            "device": ",".join(status.devices),
            "models_loaded": status.healthy,
            "queue_length": status.queued,
            "running": status.running,
            "error": status.error,
        }
    )


@requires_token
async def generate(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "the body must be JSON")
    try:
        params = params_from_json(body, request.app[LIMITS])
    except DrawArgsError as exc:
        return error(400, plain(text("en", exc.key, **exc.params)))
    engine = request.app[ENGINE]
    client = request.remote or "?"
    try:
        job = await engine.submit(params, user_id=API_USER_BASE - (hash(client) % 10**9))
        result = await job.result()
    except (QueueFull, UserQueueFull):
        return error(429, "busy: too many requests waiting, try again later")
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
    started = time.monotonic()
    try:
        await request.app[ENGINE].reload()
    except Exception as exc:
        return error(500, f"reload failed: {type(exc).__name__}: {exc}")
    return web.json_response({"status": "reloaded", "seconds": round(time.monotonic() - started, 2)})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


def add_api(app: web.Application, engine: GenerationEngine, limits: DrawLimits, api_tokens: tuple[str, ...]) -> None:
    app[ENGINE], app[LIMITS], app[API_TOKENS] = engine, limits, api_tokens
    app[METRICS] = Metrics(engine)
    app.router.add_get("/", info)
    app.router.add_get("/health", health)
    app.router.add_post("/generate", generate)
    app.router.add_post("/reload", reload)
    app.router.add_get("/metrics", metrics)
