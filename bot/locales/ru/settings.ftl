### /settings (настройки /draw каждого пользователя) и /styles (--style). Telegram HTML; переменные уже экранированы.

settings-help = ⚙️ <b>Ваши настройки</b>: /settings сохраняет размер, качество, стиль и другое для каждого /draw. <code>--style ИМЯ</code> оборачивает описание в слова стиля (<code>--style none</code> — без стиля); список: /styles.

settings-title = ⚙️ <b>Ваши настройки для /draw</b>

settings-size = 📐 Размер: { $size }{ $saved ->
        [yes] {""}
       *[else] {" "}(по умолчанию)
    }

settings-quality = ✨ Качество: { $quality ->
        [fast] быстрое
        [normal] обычное
        [best] лучшее
        [default] по умолчанию
       *[else] своё
    }, { $steps } { $steps ->
        [one] шаг
        [few] шага
        [many] шагов
       *[other] шага
    }

settings-style = 🎨 Стиль: { $style ->
        [none] нет
       *[else] <code>{ $style }</code>
    }

settings-file = 📄 Присылать файлом: { $file ->
        [on] да
       *[else] нет
    }

settings-language = 🌐 Язык: { $language ->
        [ru] Русский
        [en] English
       *[else] как в вашем Telegram
    }

settings-others = ➕ Ещё: <code>{ $options }</code>

settings-footer =
    То, что вы пишете в /draw, всегда важнее. Любой параметр /draw можно сохранить и текстом:
    <code>/settings --ar 16:9 --steps 30 --neg "blurry, text" --style watercolor --file</code>
    <code>/settings reset</code> сбрасывает все. Список стилей: /styles.

settings-saved = ✅ Сохранено.

settings-cleared = ♻️ Настройки сброшены: /draw рисует с настройками бота.

settings-not-yours = Это чужие настройки. Ваши: /settings.

settings-no-seed = 🌱 Зерно (seed) нельзя сохранить: все картинки выходили бы одинаковыми. Добавьте <code>--seed N</code> в сам /draw.

settings-not-an-option = <code>/settings</code> принимает только параметры /draw, например <code>--ar 16:9 --style watercolor</code>; <code>{ $text }</code> — не параметр. Описание пишите в /draw.

settings-button-quality = { $quality ->
        [fast] ⚡ Быстро
        [normal] Обычно
       *[best] 💎 Лучше всего
    }

settings-button-style = 🎨 Стиль: { $style ->
        [none] нет
       *[else] { $style }
    } ▸

settings-button-file = 📄 Файлом: { $file ->
        [on] да
       *[else] нет
    }

settings-button-language = { $language ->
        [ru] Русский
        [en] English
       *[else] 🌐 Авто
    }

settings-button-reset = ♻️ Сбросить

settings-button-back = « Назад

style-unknown = Стиля <code>{ $value }</code> нет. Стили: { $available }. Описания: /styles.

style-caption = 🎨 Стиль: { $style }

styles-title = 🎨 <b>Стили</b>: описание оборачивается в слова стиля.

styles-more = …и ещё { $count }.

styles-footer =
    <code>/draw a red fox --style watercolor</code>; <code>--style none</code> рисует без стиля.
    Чтобы стиль был в каждом /draw: /settings.
