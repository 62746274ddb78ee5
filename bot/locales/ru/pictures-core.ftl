# Картинки из картинок (перерисовка, вариации, смешивание): проверки, общие для Telegram,
# HTTP API и командной строки (bot/picture_args.py), и строки подписей (bot/delivery.py).

pics-core-bad-strength = Для <code>{ $option }</code> нужно число от { NUMBER($low, minimumFractionDigits: 2) } до { NUMBER($high, minimumFractionDigits: 1) }: насколько можно изменить картинку. Получено <code>{ $value }</code>.

pics-core-too-few-steps = При силе { $strength } за { $steps } { $steps ->
        [one] шаг
        [few] шага
        [many] шагов
       *[other] шага
    } ничего не нарисуется: перерисовка делает шаги × силу шагов. Укажите <code>--steps { $needed }</code> или больше либо <code>--strength</code> побольше.

pics-core-bad-weights = Не понимаю веса <code>{ $value }</code>. Напишите по числу на каждый вход через запятую, например <code>--weights 0.3,0.7</code>.

pics-core-weights-count = { $given } { $given ->
        [one] вес
        [few] веса
        [many] весов
       *[other] веса
    } на { $count } { $count ->
        [one] вход
        [few] входа
        [many] входов
       *[other] входа
    }: нужно по весу на каждую картинку или текст, по порядку.

pics-core-mix-count = Смешать можно от { $low } до { $high } входов (картинки и тексты вместе), а получено { $count }.

pics-core-empty-text = Текст для смешивания пуст: напишите, что он должен добавить.

pics-core-not-image = Этот файл не картинка, которую я могу прочитать (или он повреждён). Пришлите фото в JPEG, PNG или WebP.

pics-core-animated = Из анимированных картинок (GIF, анимированных стикеров) рисовать нельзя. Пришлите обычное фото.

pics-core-too-large = Картинка больше { $megabytes } МБ. Пришлите поменьше (фото, а не файл, Telegram сожмёт сам).

pics-core-too-many-pixels = В картинке больше { $megapixels } млн пикселей. Пришлите поменьше.

pics-core-missing-pictures = 😔 Картинка, из которой рисовался ваш запрос, потерялась при перезапуске бота. Пришлите её ещё раз.

pics-core-caption-img2img = 🖌 Перерисовано из картинки с <code>--strength { $strength }</code>

pics-core-caption-variation = 🔁 Вариация картинки

pics-core-caption-variation-text = 🔁 Вариация картинки с уклоном в { $text } · <code>--weights { $weights }</code>

pics-core-caption-mix = 🔀 Смесь: { $parts } · <code>--weights { $weights }</code>

pics-core-part-picture = картинка { $number }

# What names a request without a text (a variation or mix of pictures only) in notices.
pics-core-untitled = картинка из ваших картинок
