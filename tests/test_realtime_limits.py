"""What one client address may cost through WebSockets (issue 12, item 2), in-process.

Runs the real ASGI application with Channels' WebsocketCommunicator; the client address is set
in the scope the way Daphne sets it.
"""

import functools

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flashsale.asgi import application
from live import consumers, socket_limits
from live.hub import hub
from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

POLICY_VIOLATION = 1008
NOT_FOUND = 4404


def socket_from(address: str, path: str, headers=()) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    communicator.scope["client"] = (address, 40000)
    return communicator


async def close_code(communicator: WebsocketCommunicator) -> int:
    """Connect, and return the close code the server sent right after accepting."""
    connected, _ = await communicator.connect()
    assert connected
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close", output
    return output["code"]


async def test_sockets_over_the_per_address_cap_are_closed_with_1008_and_other_addresses_still_connect(settings):
    settings.WS_MAX_SOCKETS_PER_ADDRESS = 3
    sale = await sync_to_async(SaleFactory)()
    path = f"/ws/sales/{sale.pk}/"
    held = []
    for _ in range(3):
        communicator = socket_from("203.0.113.7", path)
        assert (await communicator.connect())[0]
        assert (await communicator.receive_json_from())["type"] == "snapshot"
        held.append(communicator)

    over_cap = await close_code(socket_from("203.0.113.7", path))
    other = socket_from("198.51.100.1", path)
    assert (await other.connect())[0]
    other_snapshot = await other.receive_json_from()
    await held.pop().disconnect()  # a slot is given back when a socket closes
    again = socket_from("203.0.113.7", path)
    assert (await again.connect())[0]
    again_snapshot = await again.receive_json_from()

    assert over_cap == POLICY_VIOLATION
    assert other_snapshot["type"] == again_snapshot["type"] == "snapshot"
    assert hub().sockets_of(sale.pk) == 4  # two held, the other address, the one after the slot freed
    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (stored.current_stock, stored.version) == (sale.current_stock, sale.version)
    for communicator in [*held, other, again]:
        await communicator.disconnect()


async def test_the_cap_counts_the_trusted_proxy_header_not_the_proxy(settings):
    settings.WS_MAX_SOCKETS_PER_ADDRESS = 1
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    sale = await sync_to_async(SaleFactory)()
    path = f"/ws/sales/{sale.pk}/"
    first = socket_from("127.0.0.1", path, [(b"x-forwarded-for", b"203.0.113.7")])
    assert (await first.connect())[0]
    await first.receive_json_from()

    same_client = await close_code(socket_from("127.0.0.1", path, [(b"x-forwarded-for", b"10.0.0.9, 203.0.113.7")]))
    other_client = socket_from("127.0.0.1", path, [(b"x-forwarded-for", b"198.51.100.1")])
    connected, _ = await other_client.connect()
    snapshot = await other_client.receive_json_from()

    assert same_client == POLICY_VIOLATION
    assert connected and snapshot["type"] == "snapshot"
    assert hub().sockets_of(sale.pk) == 2
    await first.disconnect()
    await other_client.disconnect()


async def test_opening_sockets_faster_than_the_connect_rate_is_closed_with_1008(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_WS_CONNECT = "3/h"
    sale = await sync_to_async(SaleFactory)()
    path = f"/ws/sales/{sale.pk}/"
    for _ in range(3):
        communicator = socket_from("203.0.113.7", path)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        await communicator.disconnect()

    refused = await close_code(socket_from("203.0.113.7", path))

    assert refused == POLICY_VIOLATION
    assert hub().sockets_of(sale.pk) == 0


def lookups_of_unknown_sale(sale_id: int, times: int) -> list[dict]:
    """The queries `times` consumer lookups of `sale_id` run (the sync function consumers call)."""
    with CaptureQueriesContext(connection) as queries:
        for _ in range(times):
            assert consumers._read_sale.func(sale_id) is None
    return [q for q in queries.captured_queries if "sales_flashsale" in q["sql"]]


async def test_connects_to_an_unknown_sale_are_refused_and_the_id_is_not_looked_up_again():
    missing = (await FlashSale.objects.order_by("-pk").values_list("pk", flat=True).afirst() or 0) + 1000

    codes = [await close_code(socket_from(f"203.0.113.{n}", f"/ws/sales/{missing}/")) for n in range(5)]
    later_lookups = await sync_to_async(lookups_of_unknown_sale)(missing, 20)

    assert codes == [NOT_FOUND] * 5
    assert later_lookups == []
    assert not await FlashSale.objects.filter(pk=missing).aexists()


async def test_an_unknown_sale_costs_one_query_per_cache_window():
    missing = (await FlashSale.objects.order_by("-pk").values_list("pk", flat=True).afirst() or 0) + 2000

    lookups = await sync_to_async(lookups_of_unknown_sale)(missing, 20)

    assert len(lookups) == 1


async def test_malformed_sale_ids_are_refused_with_4400():
    codes = [await close_code(socket_from("203.0.113.7", f"/ws/sales/{raw}/")) for raw in ["abc", "0", "-1", "9" * 30]]

    assert codes == [4400] * 4


async def test_a_socket_whose_client_left_before_its_consumer_started_is_left_to_its_disconnect():
    # Under load a handshake can outlast the client's patience: by the time the consumer runs,
    # Daphne's transport is closed and has no socket. Raising there ended the consumer without
    # its disconnect, so the address's socket slot was never given back.
    class ClosedTransport:  # twisted.internet.tcp.Server after connectionLost
        disconnected = 1
        producer = None

        def getHandle(self):
            raise AttributeError("'Server' object has no attribute 'socket'")

        def registerProducer(self, producer, streaming):
            raise AssertionError("a closed transport was given a producer")

    class DaphneProtocol:
        transport = ClosedTransport()

        def sendCloseFrame(self, code, isReply):
            pass

    daphne_send = functools.partial(lambda protocol, message: None, DaphneProtocol())

    assert socket_limits.watch_unread(daphne_send, lambda: None) is False


async def test_a_peer_that_is_not_a_trusted_proxy_is_capped_by_its_own_address_whatever_it_forwards(settings):
    # Straight to Daphne with a new X-Forwarded-For per socket: each used to count as a new client.
    settings.WS_MAX_SOCKETS_PER_ADDRESS = 2
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXIES = ["127.0.0.1", "::1"]
    sale = await sync_to_async(SaleFactory)()
    path = f"/ws/sales/{sale.pk}/"
    held = []
    for n in range(2):
        communicator = socket_from("203.0.113.50", path, [(b"x-forwarded-for", f"198.51.100.{n}".encode())])
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        held.append(communicator)

    rotated = await close_code(socket_from("203.0.113.50", path, [(b"x-forwarded-for", b"198.51.100.99")]))
    via_proxy = socket_from("127.0.0.1", path, [(b"x-forwarded-for", b"198.51.100.99")])
    connected, _ = await via_proxy.connect()

    assert rotated == POLICY_VIOLATION
    assert connected and (await via_proxy.receive_json_from())["type"] == "snapshot"
    assert hub().sockets_of(sale.pk) == 3
    for communicator in [*held, via_proxy]:
        await communicator.disconnect()


async def test_sockets_opened_with_rotating_forwarded_addresses_from_an_untrusted_peer_hit_the_connect_rate(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_WS_CONNECT = "3/h"
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    sale = await sync_to_async(SaleFactory)()
    path = f"/ws/sales/{sale.pk}/"
    for n in range(3):
        communicator = socket_from("203.0.113.51", path, [(b"x-forwarded-for", f"198.51.100.{n}".encode())])
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        await communicator.disconnect()

    over_rate = await close_code(socket_from("203.0.113.51", path, [(b"x-forwarded-for", b"198.51.100.77")]))

    assert over_rate == POLICY_VIOLATION
