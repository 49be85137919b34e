"""flashsale settings with channels_redis' pub/sub layer instead of the core layer.

Only for bench/ws_fanout.py's comparison (DJANGO_SETTINGS_MODULE=bench.settings_pubsub); the
service itself keeps what flashsale/settings.py configures.
"""

from flashsale.settings import *  # noqa: F401,F403
from flashsale.settings import CHANNEL_LAYERS, REDIS_URL

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": CHANNEL_LAYERS["default"]["CONFIG"]["hosts"],
                "prefix": CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "flashsale"),
            },
        }
    }
