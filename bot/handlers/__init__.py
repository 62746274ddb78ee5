"""One router per feature."""

from aiogram import Router

from bot.handlers import admin, draw, help, status


def all_routers() -> list[Router]:
    # draw last: its private-chat catch-all for plain text must not shadow commands.
    return [help.router, status.router, admin.router, draw.router]
