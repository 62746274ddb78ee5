"""One router per feature, built anew for each dispatcher (a router joins one parent)."""

from aiogram import Router

from bot.handlers import admin, buttons, draw, errors, help, status, unknown_buttons


def create_routers() -> list[Router]:
    # draw late: its private-chat catch-all for plain text must not shadow commands;
    # unknown_buttons last: it answers every button press no one else took.
    return [module.create_router() for module in (errors, help, status, admin, draw, buttons, unknown_buttons)]
