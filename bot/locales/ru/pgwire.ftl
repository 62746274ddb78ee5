# /status с несколькими репликами на одной базе PostgreSQL (DATABASE_URL).

rep-queue = Общая очередь: { $waiting } ждут GPU (все реплики)

rep-header = { $count ->
    [one] { $count } реплика за последнюю минуту:
    [few] { $count } реплики за последнюю минуту:
    [many] { $count } реплик за последнюю минуту:
   *[other] { $count } реплики за последнюю минуту:
}

# Одна реплика: хост, её GPU и отметки (эта, опрашивает Telegram).
rep-line = • { $host }: { $devices }{ $marks }

rep-this = эта

rep-poller = опрашивает Telegram

rep-unknown = неизвестно (база данных не ответила)
