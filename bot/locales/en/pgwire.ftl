# /status with several replicas sharing one PostgreSQL database (DATABASE_URL).

rep-queue = Shared queue: { $waiting } waiting for a GPU (all replicas)

rep-header = { $count ->
    [one] { $count } replica seen in the last minute:
   *[other] { $count } replicas seen in the last minute:
}

# One replica: its host, its GPUs, and marks (this one, the poller).
rep-line = • { $host }: { $devices }{ $marks }

rep-this = this one

rep-poller = polls Telegram

rep-unknown = not reached (the database did not answer)
