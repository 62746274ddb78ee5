"""Every message the bot shows a user, in Russian and English.

``ru`` users get Russian; everyone else English. Texts use Telegram HTML: anything a user
typed must be passed through ``html.escape`` before it is formatted in.
"""

from __future__ import annotations

import html
import re

LANGUAGES = ("en", "ru")

TEXTS: dict[str, dict[str, str]] = {
    "help": {
        "en": (
            "🎨 I draw pictures with <b>Kandinsky 2.2</b>, right on this bot's own GPU.\n\n"
            "<b>How to ask</b>\n"
            "<code>/draw a red fox in the snow</code>\n"
            "<code>/draw a lighthouse at dusk --ar 16:9 --seed 42</code>\n"
            "<code>/draw a cat astronaut --neg blurry, text --steps 30 --file</code>\n"
            "In a private chat you can also just send the description.\n\n"
            "<b>Options</b> (after the description)\n"
            "<code>--neg TEXT</code> (or <code>--no</code>): what to avoid\n"
            "<code>--size WxH</code>: size, sides from 64 to {max_side} (rounded to 64)\n"
            "<code>--ar W:H</code>: aspect ratio, e.g. 16:9, at about the default size\n"
            "<code>--steps N</code>: 1 to {max_steps} (default {steps}); more is slower and finer\n"
            "<code>--seed N</code>: repeat a picture exactly (every caption shows its seed)\n"
            "<code>--guidance X</code>: how closely to follow the text, 0 to 20 (default {guidance})\n"
            "<code>--prior-guidance X</code>: 0 to 20 (default {prior_guidance})\n"
            "<code>--file</code>: send the PNG uncompressed, as a file\n\n"
            "Default size {width}×{height}. The model understands English descriptions best.\n"
            "/status shows whether I'm ready and how many requests are waiting."
        ),
        "ru": (
            "🎨 Я рисую картинки нейросетью <b>Kandinsky 2.2</b> прямо на видеокарте этого бота.\n\n"
            "<b>Как попросить</b>\n"
            "<code>/draw a red fox in the snow</code>\n"
            "<code>/draw a lighthouse at dusk --ar 16:9 --seed 42</code>\n"
            "<code>/draw a cat astronaut --neg blurry, text --steps 30 --file</code>\n"
            "В личном чате можно просто прислать описание.\n\n"
            "<b>Параметры</b> (после описания)\n"
            "<code>--neg ТЕКСТ</code> (или <code>--no</code>): чего на картинке быть не должно\n"
            "<code>--size ШxВ</code>: размер, стороны от 64 до {max_side} (округляются до 64)\n"
            "<code>--ar Ш:В</code>: соотношение сторон, например 16:9, при обычной площади\n"
            "<code>--steps N</code>: от 1 до {max_steps} (обычно {steps}); больше — дольше и детальнее\n"
            "<code>--seed N</code>: повторить картинку точно (seed есть в каждой подписи)\n"
            "<code>--guidance X</code>: насколько строго следовать тексту, от 0 до 20 (обычно {guidance})\n"
            "<code>--prior-guidance X</code>: от 0 до 20 (обычно {prior_guidance})\n"
            "<code>--file</code>: прислать PNG без сжатия, файлом\n\n"
            "Обычный размер {width}×{height}. Лучше всего модель понимает описания на английском.\n"
            "/status покажет, готов ли я и сколько запросов в очереди."
        ),
    },
    "usage": {
        "en": "✏️ Add a description after the command, for example:\n<code>/draw a red fox in the snow</code>\n/help lists the options.",
        "ru": "✏️ Напишите описание после команды, например:\n<code>/draw a red fox in the snow</code>\nВсе параметры — в /help.",
    },
    "private_hint": {
        "en": "Send me a description of a picture, or /help.",
        "ru": "Пришлите описание картинки или /help.",
    },
    "unknown_option": {
        "en": "Unknown option <code>{option}</code>. Available: {available}.",
        "ru": "Неизвестный параметр <code>{option}</code>. Есть такие: {available}.",
    },
    "missing_value": {
        "en": "Option <code>{option}</code> needs a value, for example <code>{example}</code>.",
        "ru": "Параметру <code>{option}</code> нужно значение, например <code>{example}</code>.",
    },
    "bad_size": {
        "en": "Can't read the size <code>{value}</code>. Write it as WxH, for example <code>--size 768x512</code>.",
        "ru": "Не понимаю размер <code>{value}</code>. Напишите ШxВ, например <code>--size 768x512</code>.",
    },
    "size_range": {
        "en": "Each side must be from 64 to {max_side} pixels; you asked for {width}×{height}.",
        "ru": "Каждая сторона должна быть от 64 до {max_side} пикселей, а вы попросили {width}×{height}.",
    },
    "bad_ratio": {
        "en": "Can't read the aspect ratio <code>{value}</code>. Write it as W:H, for example <code>--ar 16:9</code> (from 1:4 to 4:1).",
        "ru": "Не понимаю соотношение сторон <code>{value}</code>. Напишите Ш:В, например <code>--ar 16:9</code> (от 1:4 до 4:1).",
    },
    "size_and_ratio": {
        "en": "Use either <code>--size</code> or <code>--ar</code>, not both.",
        "ru": "Укажите либо <code>--size</code>, либо <code>--ar</code>, но не оба сразу.",
    },
    "bad_integer": {
        "en": "<code>{option}</code> needs a whole number from {low} to {high}; got <code>{value}</code>.",
        "ru": "Для <code>{option}</code> нужно целое число от {low} до {high}, а не <code>{value}</code>.",
    },
    "bad_number": {
        "en": "<code>{option}</code> needs a number from {low} to {high}; got <code>{value}</code>.",
        "ru": "Для <code>{option}</code> нужно число от {low} до {high}, а не <code>{value}</code>.",
    },
    "prompt_too_long": {
        "en": "✂️ That description is {length} characters long; the most I accept is {limit}. Please shorten it (the model reads only about the first 60 words anyway).",
        "ru": "✂️ В описании {length} символов, а я принимаю не больше {limit}. Сократите его (модель всё равно читает только примерно первые 60 слов).",
    },
    "recovered": {
        "en": "🔄 The bot restarted. Your request «{prompt}» is back in line.",
        "ru": "🔄 Бот перезапустился. Ваш запрос «{prompt}» снова в очереди.",
    },
    "not_allowed": {
        "en": "🔒 Sorry, this bot is private. Ask its owner for access.",
        "ru": "🔒 Извините, это частный бот. Попросите доступ у владельца.",
    },
    "rate_limited": {
        "en": "🐢 That's {limit} pictures in the last minute — the most one person may ask for. Please wait {seconds} s.",
        "ru": "🐢 Это уже {limit} картинок за минуту — больше одному человеку нельзя. Подождите {seconds} с.",
    },
    "json_not_object": {
        "en": "The request body must be a JSON object.",
        "ru": "Тело запроса должно быть объектом JSON.",
    },
    "unknown_field": {
        "en": "Unknown field <code>{field}</code>. Available: {available}.",
        "ru": "Неизвестное поле <code>{field}</code>. Есть такие: {available}.",
    },
    "bad_field": {
        "en": "<code>{field}</code> has the wrong type: a JSON {expected} is expected.",
        "ru": "У поля <code>{field}</code> неверный тип: нужен JSON {expected}.",
    },
    "prompt_required": {
        "en": "<code>prompt</code> is required: a non-empty string saying what to draw.",
        "ru": "Нужно поле <code>prompt</code>: непустая строка с описанием картинки.",
    },
    "loading": {
        "en": "⏳ The models are still loading. Your request is in line and will be drawn as soon as they're ready.",
        "ru": "⏳ Модели ещё загружаются. Запрос в очереди — нарисую, как только они будут готовы.",
    },
    "queued": {
        "en": "🕒 In line: {position} of {total}.",
        "ru": "🕒 В очереди: {position} из {total}.",
    },
    "starting": {
        "en": "🎨 Starting…",
        "ru": "🎨 Начинаю…",
    },
    "progress": {
        "en": "🎨 Drawing: step {step} of {steps}.",
        "ru": "🎨 Рисую: шаг {step} из {steps}.",
    },
    "cancel_button": {"en": "✖ Cancel", "ru": "✖ Отменить"},
    "cancelled": {"en": "Cancelled.", "ru": "Отменено."},
    "cancel_too_late": {
        "en": "Too late to cancel: it's already being drawn.",
        "ru": "Отменить уже нельзя: картинка рисуется.",
    },
    "cancel_not_yours": {
        "en": "Only the person who asked can cancel this.",
        "ru": "Отменить может только тот, кто попросил.",
    },
    "caption": {
        "en": "{prompt}\n🌱 seed {seed} · {width}×{height} · {steps} steps · {seconds:.1f} s",
        "ru": "{prompt}\n🌱 seed {seed} · {width}×{height} · {steps} шагов · {seconds:.1f} с",
    },
    "caption_truncated": {
        "en": "✂️ The description was longer than the model reads (77 tokens): the end was cut.",
        "ru": "✂️ Описание длиннее, чем читает модель (77 токенов): конец отброшен.",
    },
    "busy_user": {
        "en": "✋ You have as many requests waiting as one person may ({limit}). Please wait for them to finish, then send more.",
        "ru": "✋ У вас в очереди уже максимум запросов ({limit}). Дождитесь, пока они нарисуются, и присылайте новые.",
    },
    "busy_global": {
        "en": "😮‍💨 I'm very busy right now ({limit} requests in line). Please try again in a few minutes.",
        "ru": "😮‍💨 Сейчас очень много запросов ({limit} в очереди). Попробуйте через несколько минут.",
    },
    "models_unavailable": {
        "en": "⚠️ The models aren't loaded, so I can't draw right now. Please try again later.",
        "ru": "⚠️ Модели не загружены, поэтому рисовать сейчас не могу. Попробуйте позже.",
    },
    "out_of_memory": {
        "en": "💾 This picture doesn't fit in the GPU's memory. Try a smaller size, e.g. <code>--size 512x512</code>.",
        "ru": "💾 Такая картинка не помещается в память видеокарты. Попробуйте размер поменьше, например <code>--size 512x512</code>.",
    },
    "failed": {
        "en": "😔 Sorry, something went wrong while drawing. Please try again.",
        "ru": "😔 Простите, при рисовании что-то пошло не так. Попробуйте ещё раз.",
    },
    "admin_only": {
        "en": "⛔ Only the bot's admins can do that.",
        "ru": "⛔ Это могут делать только администраторы бота.",
    },
    "reload_started": {
        "en": "🔄 Reloading the models. Requests that arrive meanwhile will wait.",
        "ru": "🔄 Перезагружаю модели. Новые запросы подождут.",
    },
    "reload_done": {
        "en": "✅ Models reloaded in {seconds:.1f} s.",
        "ru": "✅ Модели перезагружены за {seconds:.1f} с.",
    },
    "reload_failed": {
        "en": "❌ Reloading failed: <code>{error}</code>\nThe bot stays up; /status shows the models as not loaded until a reload succeeds.",
        "ru": "❌ Перезагрузка не удалась: <code>{error}</code>\nБот работает; /status покажет, что модели не загружены, пока перезагрузка не пройдёт.",
    },
    "status": {
        "en": (
            "{health}\n"
            "Device: {devices}\n"
            "Models: {models}\n"
            "Waiting: {queued} · drawing now: {running}\n"
            "Lately: {rate:.1f} pictures/min"
        ),
        "ru": (
            "{health}\n"
            "Устройство: {devices}\n"
            "Модели: {models}\n"
            "В очереди: {queued} · рисуется: {running}\n"
            "Недавно: {rate:.1f} картинок/мин"
        ),
    },
    "status_gpu_memory": {
        "en": "GPU memory in use: {gib:.1f} GiB",
        "ru": "Занято памяти GPU: {gib:.1f} ГиБ",
    },
    "healthy": {"en": "✅ Healthy", "ru": "✅ Всё в порядке"},
    "unhealthy": {"en": "❌ Not ready", "ru": "❌ Не готов"},
    "models_ready": {"en": "loaded", "ru": "загружены"},
    "models_loading": {"en": "loading…", "ru": "загружаются…"},
    "models_failed": {"en": "not loaded ({error})", "ru": "не загружены ({error})"},
    # --- engine ---
    "ratio_range": {
        "en": "The aspect ratio <code>{value}</code> is out of range: it must be from 1:4 (tall) to 4:1 (wide).",
        "ru": "Соотношение сторон <code>{value}</code> вне допустимого: оно должно быть от 1:4 (вертикально) до 4:1 (горизонтально).",
    },
}


def language_of(code: str | None) -> str:
    """Russian for ``ru`` (``ru-RU`` too); English for anything else."""
    return "ru" if code and code.lower().split("-")[0] == "ru" else "en"


def text(lang: str, key: str, **params: object) -> str:
    return TEXTS[key][lang if lang in LANGUAGES else "en"].format(**params)


def plain(message: str) -> str:
    """A catalogue text without its Telegram HTML, for the HTTP API and the command line."""
    return html.unescape(re.sub(r"</?(code|b|i)>", "", message))
