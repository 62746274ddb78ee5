"""One router per feature, built anew for each dispatcher (a router joins one parent)."""

from aiogram import Router

from bot.handlers import admin, draw, errors, help, status


def create_routers() -> list[Router]:
    # draw last: its private-chat catch-all for plain text must not shadow commands.
    return [module.create_router() for module in (errors, help, status, admin, draw)]
