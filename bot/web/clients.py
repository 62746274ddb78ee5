"""Who an HTTP API client is, for its per-user quota in the shared queue.

By its token when each client has its own (several tokens configured), else by its
address: X-Forwarded-For counts only when the direct peer is a trusted proxy, since
anyone else can write that header.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# API clients share the fair queue with Telegram users and chats; ids below this never clash.
API_USER_BASE = -(10**15)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The peer, or behind trusted proxies the right-most X-Forwarded-For address that is
    not one of them (the left part is whatever the client chose to send)."""
    if peer is None:
        return "?"  # not a TCP connection (a test client, a Unix socket)
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer  # only proxies on the way: the first one is the client


def client_key(token: str | None, address: str, tokens: Sequence[str]) -> str:
    """Per token when tokens are per client; one shared token says nothing about who sends."""
    if token is not None and len(tokens) > 1:
        return f"token:{token}"
    return f"address:{address}"


def api_user_id(key: str) -> int:
    """A queue user id for a client: stable across restarts (not the salted ``hash()``),
    and the token is not recoverable from it."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"api-client").digest()
    return API_USER_BASE - int.from_bytes(digest) % 10**12


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return any(ip in network for network in trusted)
