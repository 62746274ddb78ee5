### Every message the bot shows a user. Project Fluent syntax: https://projectfluent.org/fluent/guide/
### Messages are Telegram HTML; callers pass every variable already escaped (html.escape).
### Whole numbers come ungrouped ("seed 1234567"); NUMBER($x, useGrouping: 1) groups one.
### A count shown with a noun picks the noun's form with a select on CLDR plural categories:
### English one/other; Russian one (1, 21), few (2-4, 22), many (5-20, 11), other (fractions).

help =
    🎨 Я рисую картинки нейросетью <b>Kandinsky 2.2</b> { $where }.

    <b>Как попросить</b>
    <code>/draw a red fox in the snow</code>
    <code>/draw a lighthouse at dusk --ar 16:9 --seed 42</code>
    <code>/draw a cat astronaut --neg blurry, text --steps 30 --file</code>
    В личном чате можно просто прислать описание.

    <b>Параметры</b> (после описания)
    <code>--neg ТЕКСТ</code> (или <code>--no</code>): чего на картинке быть не должно
    <code>--size ШxВ</code>: размер, стороны от 64 до { $max_side } (округляются до 64)
    <code>--ar Ш:В</code>: соотношение сторон, например 16:9, при обычной площади
    <code>--steps N</code>: от 1 до { $max_steps } (обычно { $steps }); больше — дольше и детальнее
    <code>--seed N</code>: повторить картинку точно (seed есть в каждой подписи)
    <code>--guidance X</code>: насколько строго следовать тексту, от 0 до 20 (обычно { $guidance })
    <code>--prior-guidance X</code>: от 0 до 20 (обычно { $prior_guidance })
    <code>--file</code>: прислать PNG без сжатия, файлом

    Обычный размер { $width }×{ $height }. Лучше всего модель понимает описания на английском.
    /status покажет, готов ли я и сколько запросов в очереди.

usage =
    ✏️ Напишите описание после команды, например:
    <code>/draw a red fox in the snow</code>
    Все параметры — в /help.

private_hint = Пришлите описание картинки или /help.

unknown_option = Неизвестный параметр <code>{ $option }</code>. Есть такие: { $available }.

missing_value = Параметру <code>{ $option }</code> нужно значение, например <code>{ $example }</code>.

bad_size = Не понимаю размер <code>{ $value }</code>. Напишите ШxВ, например <code>--size 768x512</code>.

size_range = Каждая сторона должна быть от 64 до { $max_side } { $max_side ->
        [one] пикселя
        [few] пикселей
        [many] пикселей
       *[other] пикселя
    }, а вы попросили { $width }×{ $height }.

bad_ratio = Не понимаю соотношение сторон <code>{ $value }</code>. Напишите Ш:В, например <code>--ar 16:9</code> (от 1:4 до 4:1).

size_and_ratio = Укажите либо <code>--size</code>, либо <code>--ar</code>, но не оба сразу.

bad_integer = Для <code>{ $option }</code> нужно целое число от { $low } до { $high }, а не <code>{ $value }</code>.

bad_number = Для <code>{ $option }</code> нужно число от { $low } до { $high }, а не <code>{ $value }</code>.

prompt_too_long = ✂️ В описании { $length } { $length ->
        [one] символ
        [few] символа
        [many] символов
       *[other] символа
    }, а я принимаю не больше { $limit }. Сократите его (модель всё равно читает только примерно первые 60 слов).

recovered = 🔄 Бот перезапустился. Ваш запрос «{ $prompt }» снова в очереди.

not_allowed = 🔒 Извините, это частный бот. Попросите доступ у владельца.

rate_limited = 🐢 Принято ваших запросов за последнюю минуту: { $limit } — больше одному человеку нельзя. Подождите { $seconds } { $seconds ->
        [one] секунду
        [few] секунды
        [many] секунд
       *[other] секунды
    }.

json_not_object = Тело запроса должно быть объектом JSON.

unknown_field = Неизвестное поле <code>{ $field }</code>. Есть такие: { $available }.

bad_field = У поля <code>{ $field }</code> неверный тип: нужен JSON { $expected }.

prompt_required = Нужно поле <code>prompt</code>: непустая строка с описанием картинки.

loading = ⏳ Модели ещё загружаются. Запрос в очереди — нарисую, как только они будут готовы.

queued = 🕒 В очереди: { $position } из { $total }.

starting = 🎨 Начинаю…

progress = 🎨 Рисую: шаг { $step } из { $steps }.

cancel_button = ✖ Отменить

cancelled = Отменено.

cancel_too_late = Отменить уже нельзя: картинка рисуется.

cancel_not_yours = Отменить может только тот, кто попросил.

caption =
    { $prompt }
    🌱 seed { $seed } · { $width }×{ $height } · { $steps } { $steps ->
        [one] шаг
        [few] шага
        [many] шагов
       *[other] шага
    } · { NUMBER($seconds, minimumFractionDigits: 1, maximumFractionDigits: 1) } с

caption_truncated = ✂️ Описание длиннее, чем читает модель (77 токенов): конец отброшен.

busy_user = ✋ У вас в очереди уже максимум запросов ({ $limit }). Дождитесь, пока они нарисуются, и присылайте новые.

busy_global = 😮‍💨 Сейчас очень много запросов ({ $limit } в очереди). Попробуйте через несколько минут.

models_unavailable = ⚠️ Модели не загружены, поэтому рисовать сейчас не могу. Попробуйте позже.

out_of_memory = 💾 Такая картинка не помещается в память видеокарты. Попробуйте размер поменьше, например <code>--size 512x512</code>.

failed = 😔 Простите, при рисовании что-то пошло не так. Попробуйте ещё раз.

admin_only = ⛔ Это могут делать только администраторы бота.

reload_started = 🔄 Перезагружаю модели. Новые запросы подождут.

reload_done = ✅ Модели перезагружены за { NUMBER($seconds, minimumFractionDigits: 1, maximumFractionDigits: 1) } с.

reload_failed =
    ❌ Перезагрузка не удалась: <code>{ $error }</code>
    Бот работает; /status покажет, что модели не загружены, пока перезагрузка не пройдёт.

status =
    { $health }
    Устройство: { $devices }
    Модели: { $models }
    В очереди: { $queued } · рисуется: { $running }
    Недавно: { NUMBER($rate, maximumFractionDigits: 1) } { NUMBER($rate, maximumFractionDigits: 1) ->
        [one] картинка
        [few] картинки
        [many] картинок
       *[other] картинки
    }/мин

status_gpu_memory = Занято памяти GPU: { NUMBER($gib, minimumFractionDigits: 1, maximumFractionDigits: 1) } ГиБ

healthy = ✅ Всё в порядке

unhealthy = ❌ Не готов

models_ready = загружены

models_loading = загружаются…

models_failed = не загружены ({ $error })

repeated_option = Параметр <code>{ $option }</code> указан дважды. Укажите каждый параметр один раз.

option_takes_no_value = У <code>{ $option }</code> не бывает значения: напишите просто <code>{ $option }</code>.

button_unknown = Эта кнопка больше не работает.

models_failed_hidden = не загрузились

help_where_gpu = прямо на видеокарте этого бота

help_where_cpu = на процессоре этого бота (видеокарты у него нет, так что каждая картинка рисуется небыстро)

request_unreadable = 😔 Бот обновился и не может прочитать ваш запрос, отправленный до перезапуска. Пожалуйста, пришлите его ещё раз.

cancel_gone = Отменять нечего: этот запрос уже завершён.


ratio_range = Соотношение сторон <code>{ $value }</code> вне допустимого: оно должно быть от 1:4 (вертикально) до 4:1 (горизонтально).
