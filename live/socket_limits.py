"""What one client may cost a Daphne process through WebSockets (docs/operations.md "What it withstands").

Sockets are anonymous, so the limits key on the client address: how many sockets an address may
hold open in this process, how many it may open per minute (django-ratelimit, shared through the
cache), how fast and how large its messages may be, and how much it may leave unread.
"""

import asyncio
import logging
import socket
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from core.patches import daphne_protocol
from core.ratelimit import forwarded_client

logger = logging.getLogger("flashsale.realtime")


def client_address(scope: Mapping[str, Any]) -> str | None:
    """The client's address: the trusted proxy header when configured, else the socket peer.

    Mirrors core.ratelimit.client_ip for HTTP: the header is believed only from a peer in
    TRUSTED_PROXIES, and a value that is not an address is ignored (it could only be
    client-supplied garbage), so the socket peer counts instead.
    """
    client = scope.get("client")
    peer = client[0] if client else None
    header = settings.TRUSTED_CLIENT_IP_HEADER
    if header and header.startswith("HTTP_"):
        name = header[5:].lower().replace("_", "-").encode("latin-1")
        for key, value in scope.get("headers") or ():
            if key.lower() == name:
                forwarded = forwarded_client(peer, value.decode("latin-1"))
                if forwarded is not None:
                    return forwarded
                break
    return peer


class AddressSlots:
    """Open sockets per client address in one event loop (one Daphne process)."""

    def __init__(self):
        self.open: dict[str, int] = {}

    def take(self, address: str | None) -> bool:
        """Count one more socket for `address`; False (and nothing counted) when it is at the cap."""
        cap = settings.WS_MAX_SOCKETS_PER_ADDRESS
        if address is None or cap <= 0:
            return True
        held = self.open.get(address, 0)
        if held >= cap:
            return False
        self.open[address] = held + 1
        return True

    def give_back(self, address: str | None) -> None:
        if address is None or address not in self.open:
            return
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AddressSlots]" = weakref.WeakKeyDictionary()


def address_slots() -> AddressSlots:
    """The socket counts of the running event loop (tests get a new loop per test)."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = AddressSlots()
    return slots


class MessageBudget:
    """A token bucket: WS_MESSAGE_BURST messages at once, refilled at WS_MESSAGES_PER_SECOND."""

    def __init__(self):
        self.rate = settings.WS_MESSAGES_PER_SECOND
        self.burst = max(1, settings.WS_MESSAGE_BURST)
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@implementer(IPushProducer)
class _UnreadWatch:
    """Twisted calls pauseProducing when more than `bufferSize` bytes wait in the transport."""

    def __init__(self, on_backlog: Callable[[], None]):
        self.on_backlog = on_backlog

    def pauseProducing(self):
        self.on_backlog()

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


def watch_unread(send, on_backlog: Callable[[], None]) -> bool:
    """Call `on_backlog` once the client leaves about WS_SEND_BUFFER_BYTES unread (kernel + Twisted).

    ASGI has no way to tell what a client has not read, and a socket that never reads would make
    Twisted buffer every push and pong for it without end. Twisted's streaming-producer contract
    reports a full send buffer (the bytes beyond what the kernel holds) through pauseProducing.
    """
    transport = getattr(daphne_protocol(send), "transport", None)
    if transport is None or not hasattr(transport, "registerProducer"):
        return False
    if getattr(transport, "disconnected", False):
        # The client left before this consumer started (a handshake slower than it would wait):
        # the closed transport has no socket to size, and raising here would lose the disconnect
        # that gives back the socket's per-address slot. Daphne delivers that disconnect next.
        return False
    # Daphne upgrades the connection from Twisted's HTTPChannel, which registered itself as the
    # producer and is done now; it would only pause reading, leaving the buffer in memory.
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()
    limit = settings.WS_SEND_BUFFER_BYTES
    transport.bufferSize = limit
    # The kernel's own send buffer counts too: on loopback Linux sizes it to megabytes at connect
    # (cwnd x MSS), which would hold ~150k unread pongs before Twisted ever saw a backlog.
    handle = transport.getHandle() if hasattr(transport, "getHandle") else None
    if handle is not None:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)
    transport.registerProducer(_UnreadWatch(on_backlog), True)
    return True


def guard_incoming(send, budget: MessageBudget, on_violation: Callable[[], None]) -> bool:
    """Check each message as Daphne reads it, before it is queued for the consumer.

    Daphne queues every frame it parses for the application without bound, and a flooding client
    outruns any consumer: a few flooding sockets grew the queue by hundreds of megabytes and kept
    /api/v1/health waiting for seconds even though the consumer closed them after a few messages
    (docs/performance.md "Measured reasons behind the code").
    Here the message over the size or the rate is answered with a 1008 close frame, the socket is
    no longer read (autobahn drops it 1 s later when no close reply can arrive), and nothing more
    is queued. False when not under Daphne: the consumer then checks what it receives.
    """
    protocol = daphne_protocol(send)
    transport = getattr(protocol, "transport", None)
    if protocol is None or transport is None or not hasattr(transport, "pauseProducing"):
        return False
    deliver = protocol.onMessage

    def on_message(payload: bytes, is_binary: bool) -> None:
        if protocol.state != protocol.STATE_OPEN:
            return  # closing: whatever still arrives is dropped unread
        if len(payload) > settings.WS_MAX_MESSAGE_BYTES or not budget.spend():
            protocol.sendCloseFrame(code=1008, isReply=False)
            transport.pauseProducing()
            on_violation()
            return
        deliver(payload, is_binary)

    protocol.onMessage = on_message
    return True


def send_protocol_close(send, code: int) -> bool:
    """Close with a protocol-level code such as 1008 or 1013; False when not under Daphne.

    Daphne closes through autobahn's sendClose, which only accepts the codes a browser's
    close() may use (1000, 3000-4999) and raises for the rest (daphne issue #374); autobahn's
    own sendCloseFrame sends any code and still runs the closing handshake and its timeout.
    """
    protocol = daphne_protocol(send)
    if protocol is None:
        return False
    protocol.sendCloseFrame(code=code, isReply=False)
    return True
