"""One router per feature, built anew for each dispatcher (a router joins one parent)."""

from aiogram import Router

from bot.handlers import admin, buttons, draw, errors, help, pictures, settings, status, unknown_buttons


def create_routers() -> list[Router]:
    # draw late: its private-chat catch-all for plain text must not shadow commands;
    # pictures before draw: draw's /draw would take a photo's caption as a text request
    # and its private-chat hint would answer a photo.
    # unknown_buttons last: it answers every button press no one else took.
    modules = (errors, help, status, admin, settings, pictures, draw, buttons, unknown_buttons)
    return [module.create_router() for module in modules]
