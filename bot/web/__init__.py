"""The bot's own aiohttp server: the old service's HTTP API, /metrics, and the webhook."""
