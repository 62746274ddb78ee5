# Pictures from pictures (img2img, variations, mixes): checks shared by Telegram, the
# HTTP API and the command line (bot/picture_args.py), and the caption lines (bot/delivery.py).

pics-core-bad-strength = <code>{ $option }</code> needs a number from { NUMBER($low, minimumFractionDigits: 2) } to { NUMBER($high, minimumFractionDigits: 1) }: how much of the picture may change. Got <code>{ $value }</code>.

pics-core-too-few-steps = At strength { $strength }, { $steps } { $steps ->
        [one] step draws
       *[other] steps draw
    } nothing: a redraw runs steps × strength of them. Use <code>--steps { $needed }</code> or more, or a higher <code>--strength</code>.

pics-core-bad-weights = Can't read the weights <code>{ $value }</code>. Write one number per input, separated by commas, for example <code>--weights 0.3,0.7</code>.

pics-core-weights-count = { $given } { $given ->
        [one] weight
       *[other] weights
    } for { $count } { $count ->
        [one] input
       *[other] inputs
    }: give one weight per picture or text, in order.

pics-core-mix-count = A mix takes from { $low } to { $high } inputs (pictures and texts together); got { $count }.

pics-core-empty-text = A text to mix in is empty: write what it should add.

pics-core-not-image = That file isn't a picture I can read (or it's damaged). Send a JPEG, PNG or WebP photo.

pics-core-animated = Animated pictures (GIFs, animated stickers) can't be drawn from. Send a still photo.

pics-core-too-large = That picture is over { $megabytes } MB. Send a smaller one (a photo rather than a file is compressed for you).

pics-core-too-many-pixels = That picture has more than { $megapixels } million pixels. Send a smaller one.

pics-core-missing-pictures = 😔 The picture your request was drawn from was lost when the bot restarted. Please send it again.

pics-core-caption-img2img = 🖌 Redrawn from the picture at <code>--strength { $strength }</code>

pics-core-caption-variation = 🔁 A variation of the picture

pics-core-caption-variation-text = 🔁 A variation of the picture, steered by { $text } · <code>--weights { $weights }</code>

pics-core-caption-mix = 🔀 A mix of { $parts } · <code>--weights { $weights }</code>

pics-core-part-picture = picture { $number }

# What names a request without a text (a variation or mix of pictures only) in notices.
pics-core-untitled = a picture from your pictures
