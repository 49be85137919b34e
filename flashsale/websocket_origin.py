from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Refuse sockets opened by pages on other origins; let clients that send no Origin in.

    The sockets are anonymous and read-only, so the Origin check only keeps other sites' pages
    from embedding the feed. Browsers always send Origin; programs (load balancers' checks, the
    fan-out benchmark, API clients) usually don't, and they may watch stock like anyone else.
    """

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def browser_origin_validator(application):
    """Like channels' AllowedHostsOriginValidator, with clients without Origin allowed."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
