"""Denial of service through WebSockets, reproduced against a real Daphne process (issue 12, 1-2).

Each attack is bounded (a few thousand messages, a few hundred sockets) and stays on loopback.
"""

import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness.servers import daphne_server
from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PING = json.dumps({"type": "ping"})
POLICY_VIOLATION = 1008


def ws_url(base_url: str, path: str) -> str:
    return base_url.replace("http://", "ws://") + path


def close_code_after(sock) -> int | None:
    """Read until the server closes the socket; the close code it sent (bounded, never hangs)."""
    try:
        for _ in range(10_000):
            sock.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the server kept the socket open")


def flood(base_url: str, sale_id: int, messages: int) -> tuple[int, int | None]:
    """Send `messages` pings as fast as possible; how many went out, and the close code received.

    On a loaded machine the client library can lose the server's close frame (its reader thread
    fails on data after the end of the stream, "stream ended", and reports no frame): such a socket
    tells nothing of the server, so the flood is tried again on a new one, up to twice."""
    for _ in range(3):
        sent, code = _flood_once(base_url, sale_id, messages)
        if code is not None:
            break
    return sent, code


def _flood_once(base_url: str, sale_id: int, messages: int) -> tuple[int, int | None]:
    with connect(ws_url(base_url, f"/ws/sales/{sale_id}/"), open_timeout=10) as sock:
        sock.recv(timeout=10)  # the snapshot
        sent = 0
        try:
            for _ in range(messages):
                sock.send(PING)
                sent += 1
        except ConnectionClosed:
            pass
        return sent, close_code_after(sock)


def test_sockets_flooding_pings_are_closed_with_1008_while_health_keeps_answering():
    sale = SaleFactory(original_stock=10)

    with daphne_server() as base_url, ThreadPoolExecutor(max_workers=5) as pool:
        floods = [pool.submit(flood, base_url, sale.pk, 20_000) for _ in range(4)]
        health = []
        while not all(f.done() for f in floods):
            health.append(httpx.get(f"{base_url}/api/v1/health", timeout=10).status_code)
        results = [f.result() for f in floods]
        health.append(httpx.get(f"{base_url}/api/v1/health", timeout=10).status_code)

    assert [code for _, code in results] == [POLICY_VIOLATION] * 4
    assert health and set(health) == {200}
    stored = FlashSale.objects.get(pk=sale.pk)
    assert (stored.current_stock, stored.version) == (10, sale.version)


def test_a_message_over_the_size_limit_closes_the_socket_with_1008():
    sale = SaleFactory()

    with daphne_server() as base_url:
        with connect(ws_url(base_url, f"/ws/sales/{sale.pk}/"), open_timeout=10) as sock:
            sock.recv(timeout=10)
            sock.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
            code = close_code_after(sock)

    assert code == POLICY_VIOLATION
    assert FlashSale.objects.get(pk=sale.pk).current_stock == sale.current_stock


def raw_websocket(base_url: str, path: str) -> socket.socket:
    """A bare TCP WebSocket client with a tiny receive buffer, past the handshake and the snapshot.

    The caller never reads from it again: whatever the server sends piles up on the server side.
    """
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1024)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_a_socket_that_never_reads_its_pongs_is_dropped():
    sale = SaleFactory()
    # Pings are allowed at any rate here, so only the unread output can get the socket closed.
    limits = {"WS_MESSAGES_PER_SECOND": "1000000", "WS_MESSAGE_BURST": "1000000", "WS_SEND_BUFFER_BYTES": "16384"}
    batch = masked_text_frame(PING) * 100

    with daphne_server(**limits) as base_url:
        sock = raw_websocket(base_url, f"/ws/sales/{sale.pk}/")
        dropped = False
        deadline = time.monotonic() + 60  # a bound on the attack, not a measurement
        with sock:
            while time.monotonic() < deadline:
                try:
                    sock.sendall(batch)
                except OSError:  # reset or broken pipe: the server dropped the connection
                    dropped = True
                    break
                time.sleep(0.01)  # keep the attack going between the server's reads
        health = httpx.get(f"{base_url}/api/v1/health", timeout=10)

    assert dropped
    assert health.status_code == 200
    assert FlashSale.objects.get(pk=sale.pk).current_stock == sale.current_stock
