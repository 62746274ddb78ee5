"""The Telegram side: aiogram 3 routers, filters, middlewares and message texts."""
