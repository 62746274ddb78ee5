## The buttons under every picture (bot/handlers/buttons.py)

btn-again = 🎲 Again

btn-vary = 🔀 Variations

btn-upscale = 🔍 Upscale 2x

btn-details = ℹ️ Details

btn-caption-shortened = 📝 The description is shortened here: ℹ️ Details has all of it.

btn-again-pressed = 🎲 Drawing it again with a new seed

btn-vary-pressed = 🔀 Drawing a variation of this picture

btn-upscale-pressed = 🔍 Drawing this picture at twice the size

btn-gone = This picture's request is no longer kept, so its buttons don't work any more.

btn-not-yours = Only the person who asked for this picture (or an admin of this chat) can use its buttons.

btn-no-picture = 😔 I couldn't get this picture back from Telegram. Send it to me as a photo to draw from it.

btn-upscale-max = This picture is already as large as an upscale makes pictures ({ $side } pixels on the longer side).

btn-details-text =
    ℹ️ <b>Details</b> · seed { $seed } · { $width }×{ $height } · { $steps } { $steps ->
        [one] step
       *[other] steps
    }
    Send this to draw it again:
    <code>{ $command }</code>

btn-details-from-picture = 🖼 Drawn from a picture ({ $kind }): the command repeats its description and settings, not the picture.

btn-details-cut = ✂️ Too long for one message: the command above is cut.
