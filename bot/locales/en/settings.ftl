### /settings (each user's defaults for /draw) and /styles (--style). Telegram HTML; variables arrive escaped.

settings-help = ⚙️ <b>Your defaults</b>: /settings keeps a size, quality, style and more for every /draw. <code>--style NAME</code> wraps the description in a style's words (<code>--style none</code>: none); /styles lists them.

settings-title = ⚙️ <b>Your defaults for /draw</b>

settings-size = 📐 Size: { $size }{ $saved ->
        [yes] {""}
       *[else] {" "}(default)
    }

settings-quality = ✨ Quality: { $quality ->
        [fast] fast
        [normal] normal
        [best] best
        [default] default
       *[else] custom
    }, { $steps } { $steps ->
        [one] step
       *[other] steps
    }

settings-style = 🎨 Style: { $style ->
        [none] none
       *[else] <code>{ $style }</code>
    }

settings-file = 📄 Send as a file: { $file ->
        [on] yes
       *[else] no
    }

settings-language = 🌐 Language: { $language ->
        [ru] Русский
        [en] English
       *[else] from your Telegram app
    }

settings-others = ➕ Also: <code>{ $options }</code>

settings-footer =
    What you type in a /draw always wins. You can also type any option of /draw:
    <code>/settings --ar 16:9 --steps 30 --neg "blurry, text" --style watercolor --file</code>
    <code>/settings reset</code> clears them all. /styles lists the styles.

settings-saved = ✅ Saved.

settings-cleared = ♻️ Your settings are cleared: /draw uses the bot's defaults.

settings-not-yours = These are someone else's settings. Send /settings for yours.

settings-no-seed = 🌱 A seed can't be a default: every picture would come out the same. Add <code>--seed N</code> to a /draw instead.

settings-not-an-option = <code>/settings</code> takes /draw's options only, such as <code>--ar 16:9 --style watercolor</code>; <code>{ $text }</code> is not one. Put a description in a /draw.

settings-button-quality = { $quality ->
        [fast] ⚡ Fast
        [normal] Normal
       *[best] 💎 Best
    }

settings-button-style = 🎨 Style: { $style ->
        [none] none
       *[else] { $style }
    } ▸

settings-button-file = 📄 As a file: { $file ->
        [on] yes
       *[else] no
    }

settings-button-language = { $language ->
        [ru] Русский
        [en] English
       *[else] 🌐 Auto
    }

settings-button-reset = ♻️ Reset

settings-button-back = « Back

style-unknown = There is no style <code>{ $value }</code>. Styles: { $available }. /styles describes them.

style-caption = 🎨 Style: { $style }

styles-title = 🎨 <b>Styles</b>: the description is wrapped in the style's words.

styles-more = …and { $count } more.

styles-footer =
    <code>/draw a red fox --style watercolor</code>; <code>--style none</code> draws without one.
    Keep one for every /draw: /settings.
