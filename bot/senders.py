"""Who sent a message, and who may cancel what they asked for.

An anonymous group admin's messages come from one shared account, GroupAnonymousBot
(id 1087968824), in every group; someone writing "as a channel" looks the same. Telegram
names the real sender in ``sender_chat``: that chat's id (negative, so never a user's id)
is who asked, for the rate limit, the waiting quota and the cancel button alike.
"""

from __future__ import annotations

import logging

from aiogram.enums import ChatMemberStatus
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message

log = logging.getLogger(__name__)

CHAT_ADMINS = (ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR)


def sender_id(message: Message) -> int:
    """The user who wrote ``message``, or the chat it was written as."""
    if message.sender_chat is not None:
        return message.sender_chat.id
    if message.from_user is not None:
        return message.from_user.id
    return message.chat.id  # a channel post


async def may_cancel(query: CallbackQuery, owner_id: int) -> bool:
    """Whether the presser of a cancel button may cancel a request of ``owner_id``.

    The person who asked may. A request written as a chat (an anonymous admin, a channel)
    may be cancelled by that chat's admins: a button press always names the real person,
    even an anonymous admin, so asking Telegram whether they administer the chat works."""
    if query.from_user.id == owner_id:
        return True
    if owner_id >= 0 or query.bot is None:
        return False
    try:
        member = await query.bot.get_chat_member(chat_id=owner_id, user_id=query.from_user.id)
    except TelegramAPIError as exc:  # the bot can't see that chat's members: only the owner may cancel
        log.info("can't check admins of chat %s: %s", owner_id, exc)
        return False
    return member.status in CHAT_ADMINS
