### Сэмплеры декодера (--sampler, DEFAULT_SAMPLER): /help, подписи, ошибки.

sampler-unknown = Неизвестный сэмплер <code>{ $value }</code> в <code>{ $option }</code>. Есть такие: { $available }.

# Дописывается в подпись картинки после времени: вместе с seed и шагами повторяет картинку.
sampler-caption = сэмплер { $sampler }

sampler-help =
    <b>Сэмплеры</b> (<code>--sampler ИМЯ</code>, обычно { $default }). Без <code>--steps</code> у каждого своё число шагов:
    <code>ddpm</code>: родной для модели, { $ddpm } { $ddpm ->
        [one] шаг
        [few] шага
        [many] шагов
       *[other] шага
    }
    <code>ddim</code>: детерминированный, гладкий, { $ddim } { $ddim ->
        [one] шаг
        [few] шага
        [many] шагов
       *[other] шага
    }
    <code>dpmpp</code>: DPM-Solver++, то же качество за меньшее число шагов: { $dpmpp } { $dpmpp ->
        [one] шаг
        [few] шага
        [many] шагов
       *[other] шага
    }, примерно вдвое быстрее
