# Русские описания переводятся на английский перед рисованием (generation/translation.py).

tr-caption-note = 🔤 Перевод с: <i>{ $typed }</i>

tr-status = Перевод ru→en: { $state }

tr-state-on = включён
tr-state-loading = загружается…
tr-state-off = выключен
tr-state-failed = выключен (модель не загрузилась)
tr-state-failed-details = выключен (модель не загрузилась: { $error })

tr-help = <code>--raw</code>: рисовать текст ровно как написан (иначе русское описание сначала переводится на английский: модель понимает английский)
