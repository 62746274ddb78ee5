"""The old HTTP service's contract on the bot's own server, so its clients keep working.

GET / (service info), GET /health, POST /generate (JSON in, image/png out, through the same
queue and batching as /draw), POST /img2img, /variations and /mix (pictures from pictures:
multipart/form-data in, image/png out), POST /upscale (a picture at twice the size), POST
/reload, GET /metrics. Every POST requires ``Authorization: Bearer <token>`` when
API_TOKEN or API_TOKENS is set.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from bot.draw_args import SEED_MAX, DrawArgsError, DrawLimits, _integer, params_from_json
from bot.texts import plain, text
from bot.web.clients import Network, api_user_id, client_address, client_key
from bot.web.metrics import CONTENT_TYPE, Metrics, SharedCollector
from bot.web.picture_forms import Form, FormError, img2img_request, mix_request, read_form, variation_request
from generation import (
    GenerationEngine,
    GenerationError,
    GenerationParams,
    GenerationResult,
    ModelsUnavailable,
    OutOfMemory,
    QueueFull,
    UserQueueFull,
)
from generation.images import MAX_IMAGE_BYTES, BadImage, open_image
from generation.params import STRENGTH_MAX, STRENGTH_MIN
from generation.translation import TranslationState, Translator
from generation.upscale import enlarge, upscale_params, upscale_size

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE = web.AppKey("engine", GenerationEngine)
LIMITS = web.AppKey("limits", DrawLimits)
API_TOKENS = web.AppKey("api_tokens", tuple[str, ...])
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])
METRICS = web.AppKey("metrics", Metrics)
TRANSLATOR = web.AppKey("translator", Translator)
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
                "guidance_scale, prior_guidance_scale, seed, sampler, translate -> image/png "
                "(X-Prompt-Used: the prompt drawn, percent-encoded UTF-8)",
                "POST /img2img": "multipart/form-data: image (file), prompt, strength, and the fields of "
                "/generate (no width/height: the picture's shape) -> image/png",
                "POST /variations": "multipart/form-data: image (file), optional prompt (steers it), weights "
                "(picture,prompt), and the fields of /generate -> image/png",
                "POST /mix": "multipart/form-data: 2-4 inputs, each an image (file) or a prompt field, weights "
                "in the order sent (0.3,0.7), and the fields of /generate -> image/png",
                "POST /reload": "reload both models",
                "POST /upscale": "multipart: image, optional seed, steps, strength -> image/png at twice the size",
                "GET /metrics": "Prometheus metrics",
            },
        }
    )


def _health_word(status) -> str:
    if status.reloading:
        return "reloading"
    if not status.healthy:
        return "unhealthy"
    return "compiling" if status.compiling else "healthy"


async def health(request: web.Request) -> web.Response:
    """ "reloading" is healthy but busy: the old models finish their batch, and requests
    wait for the new ones. "compiling" too: pictures are drawn uncompiled (slower) until
    the compiled models are ready. A health check must not restart the bot for either."""
    status = request.app[ENGINE].status()
    return web.json_response(
        {
            "status": _health_word(status),
            # loading, ready or failed: a bot still loading answers users and queues their requests
            "models": status.models.value,
            "device": ",".join(status.devices),
            "models_loaded": status.healthy,
            "queue_length": status.queued,
            "running": status.running,
            "error": status.error,
            # Russian prompts: on, loading or off; why off when the model failed to load.
            "translation": _translation_state(request.app[TRANSLATOR]).value,
            "translation_error": request.app[TRANSLATOR].error,
        }
    )


def _translation_state(translator: Translator) -> TranslationState:
    state = translator.state
    return TranslationState.OFF if state is TranslationState.FAILED else state


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
    params = await translated(request, body, params)
    if isinstance(params, web.Response):
        return params
    return await drawn(request, params)


def picture_endpoint(build: Callable[[Form, DrawLimits], Awaitable[tuple[GenerationParams, list[bytes]]]]) -> Handler:
    """POST /img2img, /variations, /mix: a multipart form in (bot/web/picture_forms.py),
    checked, then queued like /generate."""

    @requires_token
    async def handler(request: web.Request) -> web.Response:
        try:
            form = await read_form(request)
            params, images = await build(form, request.app[LIMITS])
            flag = form.one("translate")
        except FormError as exc:
            return error(exc.status, exc.message)
        except DrawArgsError as exc:
            return error(400, plain(text("en", exc.key, **exc.params)))
        body = {} if flag is None else {"translate": {"true": True, "false": False}.get(flag.strip().lower(), flag)}
        params = await translated(request, body, params)
        if isinstance(params, web.Response):
            return params
        return await drawn(request, params, images)

    return handler


async def drawn(request: web.Request, params: GenerationParams, images: Sequence[bytes] = ()) -> web.Response:
    """Queue a checked request and answer with its PNG (or the error)."""
    engine = request.app[ENGINE]
    forwarded_for = request.headers.getall("X-Forwarded-For", [])
    address = client_address(request.remote, forwarded_for, request.app[TRUSTED_PROXIES])
    user_id = api_user_id(client_key(request.get(TOKEN), address, request.app[API_TOKENS]))
    try:
        job = await engine.submit(params, user_id=user_id, images=images)
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
        log.error("HTTP %s failed: %s", request.path, exc)
        return error(500, "generation failed")
    return png_response(params, result)


async def translated(request: web.Request, body: object, params: GenerationParams) -> GenerationParams | web.Response:
    """``params`` with a Russian prompt in English, as the body's ``"translate": true|false``
    asks (default: as TRANSLATE); a 400 response when it is not a boolean."""
    translator = request.app[TRANSLATOR]
    translate = body.get("translate", translator.enabled) if isinstance(body, dict) else translator.enabled
    if not isinstance(translate, bool):
        return error(400, "translate must be true or false")
    return await translator.translate_params(params, translate=translate)


def png_response(params: GenerationParams, result: GenerationResult) -> web.Response:
    """A picture as every endpoint answers it: the PNG, and headers saying how it was drawn.
    X-Prompt-Used is the prompt drawn (English when translated), percent-encoded UTF-8."""
    return web.Response(
        body=result.png,
        content_type="image/png",
        headers={
            "X-Seed": str(result.seed),
            "X-Generation-Seconds": f"{result.seconds:.3f}",
            "X-Batch-Size": str(result.batch_size),
            "X-Prompt-Used": quote(params.prompt, safe=""),
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
    await request.app[METRICS].refresh()
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


# -- POST /upscale: a picture at twice the size ----------------------------------------

# The picture (at most what a Telegram bot may download) and a few short fields.
UPSCALE_IMAGE_MAX_BYTES = MAX_IMAGE_BYTES
UPSCALE_FIELD_MAX_CHARS = 100
UPSCALE_FIELDS = ("image", "seed", "steps", "strength")


@requires_token
async def upscale(request: web.Request) -> web.Response:
    """multipart/form-data: ``image`` (a picture file), optional ``seed``, ``steps``
    (decoder steps before strength: ``steps * strength`` of them run) and ``strength``
    (default UPSCALE_STRENGTH) -> image/png at twice each side (the longer side at most
    MAX_UPSCALE_SIDE), through the same queue as /generate."""
    form = await read_upscale_form(request)
    if isinstance(form, web.Response):
        return form
    limits = request.app[LIMITS]
    try:
        seed = _integer("seed", form.get("seed"), 0, SEED_MAX, None) if "seed" in form else None
        steps = _integer("steps", form.get("steps"), 1, limits.max_steps, limits.default_steps)
    except DrawArgsError as exc:
        return error(400, plain(text("en", exc.key, **exc.params)))
    strength = _strength(form.get("strength"), limits.upscale_strength)
    if strength is None:
        return error(400, f"strength must be a number from {STRENGTH_MIN} to {STRENGTH_MAX}")
    picture = form["image"]
    try:
        image = await asyncio.to_thread(open_image, picture)
        size = upscale_size(image.width, image.height, limits.max_upscale_side)
        if size is None:
            return error(400, f"the picture is already {limits.max_upscale_side} pixels (MAX_UPSCALE_SIDE) or larger")
        start = await asyncio.to_thread(enlarge, picture, size)
    except BadImage as exc:
        return error(400, f"not a picture that can be drawn from: {exc}")
    params = upscale_params(
        size,
        prompt="upscale",
        steps=steps,
        guidance=limits.default_guidance,
        prior_guidance=limits.default_prior_guidance,
        strength=strength,
        seed=secrets.randbelow(SEED_MAX + 1) if seed is None else seed,
    )
    return await drawn(request, params, [start])  # queued and answered as every picture is


async def read_upscale_form(request: web.Request) -> dict[str, bytes | str] | web.Response:
    """The fields of an /upscale form (``image`` as bytes, the rest as text), or an error
    response: 400 for a form that is not one, 413 for a picture over the limit."""
    if not request.content_type.startswith("multipart/"):
        return error(400, "send multipart/form-data with the picture in the field 'image'")
    form: dict[str, bytes | str] = {}
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name not in UPSCALE_FIELDS or part.name in form:
                return error(400, f"the form's fields are {', '.join(UPSCALE_FIELDS)}, each once")
            limit = UPSCALE_IMAGE_MAX_BYTES if part.name == "image" else UPSCALE_FIELD_MAX_CHARS
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                if len(data) > limit:
                    return error(413, f"the field '{part.name}' must be at most {limit} bytes")
            form[part.name] = bytes(data) if part.name == "image" else data.decode("utf-8", "replace").strip()
    except (ValueError, AssertionError) as exc:  # a malformed multipart body
        return error(400, f"not a multipart form: {exc}")
    if not form.get("image"):
        return error(400, "the field 'image' (the picture) is required")
    return form


def _strength(raw: object, default: float) -> float | None:
    if raw is None:
        return default
    try:
        value = float(str(raw).replace(",", "."))
    except ValueError:
        return None
    return value if STRENGTH_MIN <= value <= STRENGTH_MAX else None  # also refuses nan


# Every route this module serves; a webhook path must not be one of PATHS.
ROUTES = (
    ("GET", "/", info),
    ("GET", "/health", health),
    ("POST", "/generate", generate),
    ("POST", "/img2img", picture_endpoint(img2img_request)),
    ("POST", "/variations", picture_endpoint(variation_request)),
    ("POST", "/mix", picture_endpoint(mix_request)),
    ("POST", "/reload", reload),
    ("GET", "/metrics", metrics),
    ("POST", "/upscale", upscale),
)
PATHS = frozenset(path for _, path, _ in ROUTES)


def add_api(
    app: web.Application,
    engine: GenerationEngine,
    limits: DrawLimits,
    api_tokens: tuple[str, ...],
    trusted_proxies: tuple[Network, ...] = (),
    translator: Translator | None = None,
    shared: SharedCollector | None = None,
) -> None:
    """``api_tokens``: empty for no auth; several identify clients one by one.
    ``trusted_proxies``: peers whose X-Forwarded-For names the client. ``translator``:
    Russian prompts to English (None: every prompt drawn as sent). ``shared``: the shared
    queue of several replicas, for /metrics."""
    app[ENGINE], app[LIMITS], app[METRICS] = engine, limits, Metrics(engine, shared)
    app[TRANSLATOR] = translator if translator is not None else Translator(enabled=False)
    app[API_TOKENS], app[TRUSTED_PROXIES] = tuple(api_tokens), tuple(trusted_proxies)
    for method, path, handler in ROUTES:
        add = app.router.add_get if method == "GET" else app.router.add_post  # GET also answers HEAD
        add(path, handler)
