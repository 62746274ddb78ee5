### Every message the bot shows a user. Project Fluent syntax: https://projectfluent.org/fluent/guide/
### Messages are Telegram HTML; callers pass every variable already escaped (html.escape).
### Whole numbers come ungrouped ("seed 1234567"); NUMBER($x, useGrouping: 1) groups one.
### A count shown with a noun picks the noun's form with a select on CLDR plural categories:
### English one/other; Russian one (1, 21), few (2-4, 22), many (5-20, 11), other (fractions).

help =
    🎨 I draw pictures with <b>Kandinsky 2.2</b>, { $where }.

    <b>How to ask</b>
    <code>/draw a red fox in the snow</code>
    <code>/draw a lighthouse at dusk --ar 16:9 --seed 42</code>
    <code>/draw a cat astronaut --neg blurry, text --steps 30 --file</code>
    In a private chat you can also just send the description.

    <b>Options</b> (after the description)
    <code>--neg TEXT</code> (or <code>--no</code>): what to avoid
    <code>--size WxH</code>: size, sides from 64 to { $max_side } (rounded to 64)
    <code>--ar W:H</code>: aspect ratio, e.g. 16:9, at about the default size
    <code>--steps N</code>: 1 to { $max_steps } (default { $steps }); more is slower and finer
    <code>--seed N</code>: repeat a picture exactly (every caption shows its seed)
    <code>--guidance X</code>: how closely to follow the text, 0 to 20 (default { $guidance })
    <code>--prior-guidance X</code>: 0 to 20 (default { $prior_guidance })
    <code>--file</code>: send the PNG uncompressed, as a file

    Default size { $width }×{ $height }. The model understands English descriptions best.
    /status shows whether I'm ready and how many requests are waiting.

usage =
    ✏️ Add a description after the command, for example:
    <code>/draw a red fox in the snow</code>
    /help lists the options.

private_hint = Send me a description of a picture, or /help.

unknown_option = Unknown option <code>{ $option }</code>. Available: { $available }.

missing_value = Option <code>{ $option }</code> needs a value, for example <code>{ $example }</code>.

bad_size = Can't read the size <code>{ $value }</code>. Write it as WxH, for example <code>--size 768x512</code>.

size_range = Each side must be from 64 to { $max_side } { $max_side ->
        [one] pixel
       *[other] pixels
    }; you asked for { $width }×{ $height }.

bad_ratio = Can't read the aspect ratio <code>{ $value }</code>. Write it as W:H, for example <code>--ar 16:9</code> (from 1:4 to 4:1).

size_and_ratio = Use either <code>--size</code> or <code>--ar</code>, not both.

bad_integer = <code>{ $option }</code> needs a whole number from { $low } to { $high }; got <code>{ $value }</code>.

bad_number = <code>{ $option }</code> needs a number from { $low } to { $high }; got <code>{ $value }</code>.

prompt_too_long = ✂️ That description is { $length } { $length ->
        [one] character
       *[other] characters
    } long; the most I accept is { $limit }. Please shorten it (the model reads only about the first 60 words anyway).

recovered = 🔄 The bot restarted. Your request «{ $prompt }» is back in line.

not_allowed = 🔒 Sorry, this bot is private. Ask its owner for access.

rate_limited = 🐢 Requests accepted from you in the last minute: { $limit }, the most one person may send. Please wait { $seconds } { $seconds ->
        [one] second
       *[other] seconds
    }.

json_not_object = The request body must be a JSON object.

unknown_field = Unknown field <code>{ $field }</code>. Available: { $available }.

bad_field = <code>{ $field }</code> has the wrong type: a JSON { $expected } is expected.

prompt_required = <code>prompt</code> is required: a non-empty string saying what to draw.

loading = ⏳ The models are still loading. Your request is in line and will be drawn as soon as they're ready.

queued = 🕒 In line: { $position } of { $total }.

starting = 🎨 Starting…

progress = 🎨 Drawing: step { $step } of { $steps }.

cancel_button = ✖ Cancel

cancelled = Cancelled.

cancel_too_late = Too late to cancel: it's already being drawn.

cancel_not_yours = Only the person who asked can cancel this.

caption =
    { $prompt }
    🌱 seed { $seed } · { $width }×{ $height } · { $steps } { $steps ->
        [one] step
       *[other] steps
    } · { NUMBER($seconds, minimumFractionDigits: 1, maximumFractionDigits: 1) } s

caption_truncated = ✂️ The description was longer than the model reads (77 tokens): the end was cut.

busy_user = ✋ You have as many requests waiting as one person may ({ $limit }). Please wait for them to finish, then send more.

busy_global = 😮‍💨 I'm very busy right now ({ $limit } { $limit ->
        [one] request
       *[other] requests
    } in line). Please try again in a few minutes.

models_unavailable = ⚠️ The models aren't loaded, so I can't draw right now. Please try again later.

out_of_memory = 💾 This picture doesn't fit in the GPU's memory. Try a smaller size, e.g. <code>--size 512x512</code>.

failed = 😔 Sorry, something went wrong while drawing. Please try again.

admin_only = ⛔ Only the bot's admins can do that.

reload_started = 🔄 Reloading the models. Requests that arrive meanwhile will wait.

reload_done = ✅ Models reloaded in { NUMBER($seconds, minimumFractionDigits: 1, maximumFractionDigits: 1) } s.

reload_failed =
    ❌ Reloading failed: <code>{ $error }</code>
    The bot stays up; /status shows the models as not loaded until a reload succeeds.

status =
    { $health }
    Device: { $devices }
    Models: { $models }
    Waiting: { $queued } · drawing now: { $running }
    Lately: { NUMBER($rate, maximumFractionDigits: 1) } { NUMBER($rate, maximumFractionDigits: 1) ->
        [one] picture
       *[other] pictures
    }/min

status_gpu_memory = GPU memory in use: { NUMBER($gib, minimumFractionDigits: 1, maximumFractionDigits: 1) } GiB

healthy = ✅ Healthy

unhealthy = ❌ Not ready

models_ready = loaded

models_loading = loading…

models_failed = not loaded ({ $error })

repeated_option = <code>{ $option }</code> is given twice. Please give each option once.

option_takes_no_value = <code>{ $option }</code> takes no value: write just <code>{ $option }</code>.

button_unknown = This button no longer works.

models_failed_hidden = failed to load

help_where_gpu = right on this bot's own GPU

help_where_cpu = on this bot's own processor (it has no GPU, so each picture takes a while)

request_unreadable = 😔 The bot was updated and can't read your request from before the restart. Please send it again.

cancel_gone = Nothing to cancel: this request has already finished.


ratio_range = The aspect ratio <code>{ $value }</code> is out of range: it must be from 1:4 (tall) to 4:1 (wide).
