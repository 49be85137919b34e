"""A page may open a WebSocket only from the site's own origin (scheme, host and port) or a configured one."""

import pytest
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured

from core.websocket_origin import BrowserOriginValidator
from flashsale.asgi import application

# The check guards every socket path. This one's consumer accepts and closes at once (4400)
# without the database or the channel layer, so a refused handshake is the origin check's alone
# and no channels_redis receive is left to the event loop's teardown.
PATH = "/ws/nope/"


async def connects(path: str, *, origin: str, host: str) -> bool:
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", origin.encode()), (b"host", host.encode())]
    )
    connected, _ = await communicator.connect(timeout=10)
    if connected:
        assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4400}
        await communicator.disconnect(timeout=10)
    return connected


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)  # the consumer's connect closes stale connections
async def test_only_the_pages_own_scheme_host_and_port_may_open_a_socket(settings):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    path = PATH

    assert await connects(path, origin="http://127.0.0.1:8000", host="127.0.0.1:8000")
    assert await connects(path, origin="http://localhost", host="localhost")
    assert not await connects(path, origin="http://127.0.0.1:31337", host="127.0.0.1:8000")
    assert not await connects(path, origin="https://localhost", host="localhost:8000")
    assert not await connects(path, origin="https://localhost", host="localhost")
    assert not await connects(path, origin="http://localhost:8000", host="127.0.0.1:8000")
    # A host the site does not serve, even when the Host header agrees (DNS rebinding).
    assert not await connects(path, origin="http://evil.example:8000", host="evil.example:8000")
    assert not await connects(path, origin="null", host="127.0.0.1:8000")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_configured_origin_may_open_sockets_served_on_another_port(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["http://127.0.0.1:8000"]
    path = PATH

    assert await connects(path, origin="http://127.0.0.1:8000", host="127.0.0.1:8001")
    assert not await connects(path, origin="http://127.0.0.1:8002", host="127.0.0.1:8001")
    assert not await connects(path, origin="https://127.0.0.1:8000", host="127.0.0.1:8001")


def scope(origin: str, host: str, scheme: str = "ws") -> dict:
    return {"type": "websocket", "scheme": scheme, "headers": [(b"origin", origin.encode()), (b"host", host.encode())]}


def test_a_secure_socket_takes_https_pages_of_its_host(settings):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    settings.HTTPS = False
    validator = BrowserOriginValidator(application=None)

    assert validator.valid(scope("https://shop.example.com", "shop.example.com", scheme="wss"))
    assert validator.valid(scope("https://shop.example.com:8443", "shop.example.com:8443", scheme="wss"))
    assert not validator.valid(scope("http://shop.example.com", "shop.example.com", scheme="wss"))
    assert not validator.valid(scope("https://shop.example.com", "shop.example.com", scheme="ws"))


def test_behind_a_tls_proxy_https_pages_are_the_sites_own_when_https_is_on(settings):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    settings.HTTPS = True
    validator = BrowserOriginValidator(application=None)

    assert validator.valid(scope("https://shop.example.com", "shop.example.com"))
    assert not validator.valid(scope("https://shop.example.com:444", "shop.example.com"))
    assert not validator.valid(scope("https://other.example.com", "other.example.com"))


def test_ipv6_origins_compare_by_address_and_port(settings):
    settings.ALLOWED_HOSTS = ["[::1]"]
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    validator = BrowserOriginValidator(application=None)

    assert validator.valid(scope("http://[::1]:8000", "[::1]:8000"))
    assert not validator.valid(scope("http://[::1]:8001", "[::1]:8000"))


@pytest.mark.parametrize("value", ["127.0.0.1:8000", "http://", "http://host/path", "ftp://host", "http://host:port"])
def test_a_malformed_allowed_origin_setting_is_refused_at_startup(settings, value):
    settings.WEBSOCKET_ALLOWED_ORIGINS = [value]

    with pytest.raises(ImproperlyConfigured, match="WEBSOCKET_ALLOWED_ORIGINS"):
        BrowserOriginValidator(application=None)
