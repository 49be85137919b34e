"""
flashsale settings: everything comes from the environment, with embedded defaults.

With no variables set the service runs on SQLite, a local-memory cache and an in-memory channel
layer, with DEBUG on. Production sets DATABASE_URL (PostgreSQL through psycopg 3's pool) and
REDIS_URL (cache for rate limits, channel layer), SECRET_KEY, ALLOWED_HOSTS and DEBUG=false.
Every variable is listed in docs/operations.md "Configuration". They are read through
core/env.py (django-environ, refusing a boolean or integer that does not parse).
"""

import ipaddress
import secrets
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as corsheaders_default_headers
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from core.env import env

BASE_DIR = Path(__file__).resolve().parent.parent


DEBUG = env.bool("DEBUG", default=True)


def _secret_key() -> str:
    key = env.str("SECRET_KEY")
    if key:
        # The rule of Django's deploy check (security.W009), enforced: sessions, password resets
        # and signed values are only as strong as this key.
        if not DEBUG and (len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-")):
            raise ImproperlyConfigured(
                "SECRET_KEY must be at least 50 characters with at least 5 different ones when DEBUG is off, "
                "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
            )
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # A random development key, kept in a git-ignored file so that several local server
    # processes (and restarts) agree on it and admin sessions survive.
    key_file = BASE_DIR / ".secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        key_file.write_text(key)
        return key


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin with flashsale's AdminSite as the default site (flashsale/admin_site.py).
    "flashsale.apps.FlashsaleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "csp",
    "rest_framework",
    "rest_framework.authtoken",
    "channels",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "sales",
    "live",
    "leaderboard",
    "idempotency",
]

MIDDLEWARE = [
    # Outermost, so request latency covers every other middleware (core/metrics.py).
    "core.metrics.MetricsMiddleware",
    "core.middleware.RequestLogMiddleware",
    # Before anything that calls request.get_host(): a bad Host under /api/ gets the JSON error.
    "core.middleware.ApiHostMiddleware",
    # The liveness probe, answered with what the middleware below make of its answer, replayed
    # (core/health.py); below the metrics, the request log and the Host check, which count it.
    "core.health.LivenessMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # django-csp's; under /api/ the configured policy is built once, not per response.
    "core.middleware.ApiAwareCSPMiddleware",
    # Serves /static/ from Daphne itself: from the apps' folders in DEBUG, from STATIC_ROOT
    # (filled by `collectstatic`, which ./scripts/serve runs) when DEBUG is off. /api/ skips it.
    "core.middleware.PageWhiteNoiseMiddleware",
    # django-cors-headers'; a request without Origin (never a browser's cross-origin one) only gets Vary.
    "core.middleware.CrossOriginCorsMiddleware",
    "core.middleware.GlobalRateLimitMiddleware",
    # Counts refused purchases per sale and code for the drop dashboard, whichever layer below
    # answers them (sales/refusals.py); outside the gate's fast path so it sees its refusals too.
    "sales.refusals.RefusalTallyMiddleware",
    # Sessions, request.user and messages serve the HTML pages only; /api/ skips them.
    "core.middleware.PageSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Stock CSRF (check --deploy looks for it by name); DRF's views are exempt, so under /api/ it
    # only looks for a cookie.
    "django.middleware.csrf.CsrfViewMiddleware",
    "core.middleware.PageAuthenticationMiddleware",
    "core.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A plain purchase, a waiting room's join and place read are answered here, before DRF, as
    # DRF's views answer them (sales/fastpath.py, sales/queue_fastpath.py); innermost, so every
    # middleware above treats their answers as the views'.
    "sales.fastpath.PlainPurchaseMiddleware",
    "sales.queue_fastpath.QueueFastPathMiddleware",
]

ROOT_URLCONF = "flashsale.urls"

# /metrics (Prometheus) answers only "Authorization: Bearer <METRICS_TOKEN>"; unset, it is a 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "flashsale.wsgi.application"
ASGI_APPLICATION = "flashsale.asgi.application"

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = env.str("DATABASE_URL")
if DATABASE_URL:
    # No per-thread persistent connections (CONN_MAX_AGE): under Daphne every request runs in its
    # own thread, so a herd would open one connection per request and exhaust PostgreSQL's slots.
    # psycopg's pool bounds the connections per process instead.
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
            # A request that cannot get a connection fails fast (503) instead of queueing forever.
            "timeout": env.int("DB_POOL_TIMEOUT", default=10),
        }
        _db["OPTIONS"].setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=3))
        # A link that silently drops packets must fail a query within seconds, not after TCP's
        # defaults (minutes of retransmissions, hours before a keepalive): the request then answers
        # 503 and the pool drops the connection. The same values go to the server as session
        # settings, so it ends a dead client's session, and with it a transaction left open holding
        # a sale's row lock that every purchase waits for.
        _tcp = {
            "tcp_user_timeout": env.int("DB_TCP_USER_TIMEOUT_MS", default=5000),
            "keepalives_idle": env.int("DB_KEEPALIVES_IDLE", default=2),
            "keepalives_interval": env.int("DB_KEEPALIVES_INTERVAL", default=1),
            "keepalives_count": env.int("DB_KEEPALIVES_COUNT", default=3),
        }
        # 0 leaves one to the system: libpq would pass it on, and the kernel refuses a 0 keepalive.
        _tcp = {name: value for name, value in _tcp.items() if value > 0}
        for _name, _value in {"keepalives": 1, **_tcp}.items():
            _db["OPTIONS"].setdefault(_name, _value)
        # The server's own names: tcp_user_timeout, tcp_keepalives_idle, ...
        _server_side = " ".join(
            f"-c {name.replace('keepalives', 'tcp_keepalives')}={value}" for name, value in _tcp.items()
        )
        # Options given in DATABASE_URL come last, so they win.
        if _options := " ".join(filter(None, [_server_side, _db["OPTIONS"].get("options")])):
            _db["OPTIONS"]["options"] = _options
        # The stock backend plus fail-fast while the server is unreachable (docs/operations.md "Reliability").
        _db["ENGINE"] = "core.postgresql"
else:
    _db = {
        # The stock backend plus one queue per process for the write lock (core/sqlite3).
        "ENGINE": "core.sqlite3",
        "NAME": env.str("SQLITE_PATH", default=str(BASE_DIR / "db.sqlite3")),
        # IMMEDIATE takes the write lock at BEGIN, so concurrent purchases queue instead of
        # failing with "database is locked" when they upgrade a read lock; `timeout` is how long
        # one waits for it. WAL lets readers (pages, the WebSocket side's database feed, other
        # gunicorn processes) go on while a purchase writes, instead of queueing on that lock too.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL"},
    }
if env.str("TEST_DATABASE_NAME"):
    # Lets several test runs share one PostgreSQL server without dropping each other's database.
    _db["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME")}
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache, channel layer -------------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis answering like an empty cache while Redis is down, behind a circuit
            # breaker (core/cache.py, docs/operations.md "Reliability").
            "BACKEND": "core.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="flashsale"),
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                "RETRY_SECONDS": env.int("CACHE_RETRY_SECONDS", default=2),
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # channels_redis drops a group_send's copy for a channel holding `capacity` messages,
                # silently. Every socket of one Daphne process shares that process's queue, so the
                # default 100 lost the final stock for all 1000 watchers after a burst of 100
                # purchases (bench/ws_fanout.py, docs/performance.md "Performance").
                "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=100_000),
                # redis-py 8 defaults socket_timeout to 5 s, the same as channels_redis' blocking
                # BZPOPMIN (brpop_timeout = 5): every idle socket's receive then dies with a
                # TimeoutError after ~5 s (channels_redis#422). Reads must outlast the pop.
                # max_connections: redis-py 8's asyncio pool refuses (MaxConnectionsError, "Too many
                # connections") past 100 instead of waiting, and every socket's handshake borrows one
                # for group_add: 1000 watchers connecting at once got 500s (bench/ws_fanout.py).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "max_connections": env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=2000),
                    }
                ],
                "prefix": env.str("CHANNEL_PREFIX", default="flashsale"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Twelve spaces pass the length check (accounts/validators.py).
    {"NAME": "accounts.validators.NotOnlyWhitespacePasswordValidator"},
]

# --- REST framework -------------------------------------------------------------------------

REST_FRAMEWORK = {
    # DRF token auth with the token's user cached (invalidated on logout / token delete).
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.CachedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI schema at /api/schema/, Swagger UI at /api/docs/ (assets from drf-spectacular-sidecar, no CDN).
# The envelope, error shapes and non-DRF endpoints are added by core/schema.py.
SPECTACULAR_SETTINGS = {
    "TITLE": "flashsale API",
    "DESCRIPTION": "Limited-stock flash sales. Every success is wrapped in {success, message, data}; "
    "every failure is {success: false, error: {code, message, details}} with a stable code.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is public and must not fail on a stale token a browser or client still sends.
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # The Authorize box takes the token alone: Swagger UI adds "Token " itself (see the file).
    "SWAGGER_UI_SETTINGS": (BASE_DIR / "flashsale" / "swagger_ui_settings.js").read_text(),
    "REDOC_DIST": "SIDECAR",
    # Request and response shapes differ (read-only ids, counters), so they get separate components.
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies require `version` like PUT: no auto-generated all-optional "Patched" components.
    "COMPONENT_SPLIT_PATCH": False,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "PREPROCESSING_HOOKS": ["core.schema.preprocess_endpoints"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.postprocess_schema"],
}

# --- Business limits ------------------------------------------------------------------------

MAX_PURCHASE_QUANTITY = env.int("MAX_PURCHASE_QUANTITY", default=5)
MAX_UNITS_PER_USER = env.int("MAX_UNITS_PER_USER", default=MAX_PURCHASE_QUANTITY)
if MAX_PURCHASE_QUANTITY < 1 or MAX_UNITS_PER_USER < 1:
    raise ImproperlyConfigured("MAX_PURCHASE_QUANTITY and MAX_UNITS_PER_USER must be at least 1")
# How long a waiting room's join challenge (sales.join_challenge) may be solved and used: long enough
# for a slow phone at the highest difficulty, short enough that solutions cannot be stockpiled.
JOIN_CHALLENGE_SECONDS = env.int("JOIN_CHALLENGE_SECONDS", default=300)
if JOIN_CHALLENGE_SECONDS < 1:
    raise ImproperlyConfigured("JOIN_CHALLENGE_SECONDS must be at least 1")

# --- Hot-path caches (docs/performance.md "Performance") -------------------------------------------------

# How long a token's user is served from the cache; deleting the token drops it at once.
AUTH_TOKEN_CACHE_SECONDS = env.int("AUTH_TOKEN_CACHE_SECONDS", default=60)
# How long a sold-out / not-live refusal is replayed from the cache (sales.gate) at most; restocks
# and edits invalidate it at once.
SALE_GATE_SECONDS = env.int("SALE_GATE_SECONDS", default=10)
# How long a process answers from its own copy of a token's user or a sale gate's refusal read from
# Redis (core.near_cache), in milliseconds; 0 asks Redis every time. Other processes' logouts,
# restocks and edits reach it by pub/sub at once; a lost message is outlived by this much at most.
LOCAL_CACHE_MS = env.int("LOCAL_CACHE_MS", default=10_000)
if LOCAL_CACHE_MS < 0:
    raise ImproperlyConfigured("LOCAL_CACHE_MS must be 0 or more")
# The same for a token's user, whose copy may live as long as the Redis entry itself: a lost message
# then keeps a logged-out token usable elsewhere no longer than the entry's own race already does.
# A herd's buyers come back to the same worker seldom within 10 s (docs/design.md). LOCAL_CACHE_MS=0
# turns every copy off.
LOCAL_TOKEN_CACHE_MS = env.int("LOCAL_TOKEN_CACHE_MS", default=AUTH_TOKEN_CACHE_SECONDS * 1000)
if LOCAL_TOKEN_CACHE_MS < 0:
    raise ImproperlyConfigured("LOCAL_TOKEN_CACHE_MS must be 0 or more")
# A waiting room's line state, written by the sale clock every tick (sales.line_cache): gone this
# long after the clock stops writing it. A numbered place's position, which never changes, is cached
# for LINE_CACHE_PLACE_SECONDS.
LINE_CACHE_SECONDS = env.int("LINE_CACHE_SECONDS", default=2)
LINE_CACHE_PLACE_SECONDS = env.int("LINE_CACHE_PLACE_SECONDS", default=900)

# Idempotency-Key on purchases (idempotency app): results are replayed for this long, and a key
# whose request died without finishing can be retried after IDEMPOTENCY_LOCK_SECONDS.
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
IDEMPOTENCY_LOCK_SECONDS = env.int("IDEMPOTENCY_LOCK_SECONDS", default=30)
# Most unexpired keys one user may hold (a new one past it is 429), and how often the sale clock
# deletes expired keys.
IDEMPOTENCY_MAX_KEYS_PER_USER = env.int("IDEMPOTENCY_MAX_KEYS_PER_USER", default=1000)
IDEMPOTENCY_PURGE_SECONDS = env.int("IDEMPOTENCY_PURGE_SECONDS", default=300)

# --- Rate limiting (django-ratelimit) -------------------------------------------------------

RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = env.bool("RATELIMIT_FAIL_OPEN", default=True)
# Rates are "<count>/<period>" with period s, m, h or d (django-ratelimit syntax).
RATELIMIT_PURCHASE = env.str("RATELIMIT_PURCHASE", default="10/s")
RATELIMIT_LOGIN = env.str("RATELIMIT_LOGIN", default="20/m")
# Wrong passwords, tightly per (email, client address) and loosely per email (accounts.login_limits).
RATELIMIT_LOGIN_FAILURES = env.str("RATELIMIT_LOGIN_FAILURES", default="10/h")
RATELIMIT_LOGIN_EMAIL = env.str("RATELIMIT_LOGIN_EMAIL", default="100/h")
RATELIMIT_REGISTER = env.str("RATELIMIT_REGISTER", default="20/m")
# Sized from bench/one_address.py (docs/performance.md "One address"): past it one address slowed
# every other buyer's reads.
RATELIMIT_GLOBAL = env.str("RATELIMIT_GLOBAL", default="20/s")
# Joins of a waiting room (POST .../queue) per client IP, besides the per-user limit: one address
# running many accounts takes places no faster than this; people behind one NAT share it.
RATELIMIT_QUEUE_JOIN_IP = env.str("RATELIMIT_QUEUE_JOIN_IP", default="60/m")
# The OpenAPI schema and Swagger UI (/api/schema/, /api/docs/) per client IP, instead of the global
# limit: a schema costs far more than an API read (docs/performance.md "One address").
RATELIMIT_SCHEMA = env.str("RATELIMIT_SCHEMA", default="30/m")
# HTML pages (the live page, admin) per client IP, and WebSocket connections opened per client IP.
RATELIMIT_PAGES = env.str("RATELIMIT_PAGES", default="120/m")
RATELIMIT_WS_CONNECT = env.str("RATELIMIT_WS_CONNECT", default="120/m")
# Behind a reverse proxy, the META key holding the client address, e.g. HTTP_X_REAL_IP or
# HTTP_X_FORWARDED_FOR (the proxy must overwrite it). Empty: the socket peer address.
TRUSTED_CLIENT_IP_HEADER = env.str("TRUSTED_CLIENT_IP_HEADER")
# The socket peers (addresses or networks) whose TRUSTED_CLIENT_IP_HEADER is believed: the proxies
# in front (deploy/run's HAProxy and a TLS proxy on the same host are on loopback). A request from
# any other peer is counted under the peer's own address, whatever header it sends.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network") from None
RATELIMIT_IP_META_KEY = "core.ratelimit.client_ip"

# --- Security -------------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Load balancers probe the backends over plain HTTP: a redirect would fail their checks.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health"]
# HSTS (sent only on HTTPS responses): a year once the site says it is served over HTTPS.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The preload list is a separate, hard-to-undo submission for the whole domain, which its owner
# opts into (SECURE_HSTS_PRELOAD=true); the service cannot decide it.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env.bool("SECURE_PROXY_SSL", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Origins (scheme://host[:port]) whose pages may open WebSockets besides the socket's own origin
# (core/websocket_origin.py), e.g. the HTTP port when Daphne listens on another one.
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=[])

# Content-Security-Policy (django-csp) on every response. Pages load scripts only from files of
# this origin (the live page keeps its token in localStorage: no inline script, no other origin
# may run there); styles may be inline because Django's admin and Swagger UI write some.
# CSP_CONNECT_SRC adds fetch/WebSocket targets, e.g. ws://127.0.0.1:8001 when Daphne serves the
# sockets on another port than the pages.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF, *env.list("CSP_CONNECT_SRC", default=[])],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_EXPOSE_HEADERS = ["Retry-After", "Idempotent-Replayed"]
CORS_ALLOW_HEADERS = (*corsheaders_default_headers, "idempotency-key")

# Bodies above 1 MiB are refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
# Largest request body under /api/ (JSON of a few fields), refused with 413 before it is read by
# HAProxy (deploy/haproxy.cfg) and by gunicorn's worker (core/gunicorn_worker.py), which both
# receive a body in full before the application sees it.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=8192)

# --- Internationalization, static files -----------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One ISO-like date format on every page, e.g. "2026-11-25 19:15 UTC" (flashsale/formats/en).
FORMAT_MODULE_PATH = ["flashsale.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))

# --- Leaderboard (public reads) -------------------------------------------------------------

# How long the leaderboard's `count` is served from the cache instead of counting purchases, and
# the deepest `page` offset served; past it clients page with `after=<purchaseId>` (keyset).
LEADERBOARD_COUNT_CACHE_SECONDS = env.int("LEADERBOARD_COUNT_CACHE_SECONDS", default=5)
LEADERBOARD_MAX_OFFSET = env.int("LEADERBOARD_MAX_OFFSET", default=10_000)

# --- Real-time (live.consumers) ------------------------------------------------------------

# Each socket gets at most one stock message per interval, always the newest version (docs/realtime.md "Real-time").
STOCK_PUSH_INTERVAL_MS = env.int("STOCK_PUSH_INTERVAL_MS", default=75)
# A process sends what its requests queued for the channel layer at most once per interval, one
# group_send per sale for all of it (live/layer_sender.py): in a herd the sends' CPU is shared by
# the purchases that waited together. The first push after a quiet spell goes at once.
CHANNEL_LAYER_SEND_INTERVAL_MS = env.int("CHANNEL_LAYER_SEND_INTERVAL_MS", default=25)
# A waiting room's line (queue_advanced) is told at most once per interval per sale, however long
# the line and however many sources announce it (live/queue_news.py, live/hub.py).
QUEUE_PUSH_INTERVAL_MS = env.int("QUEUE_PUSH_INTERVAL_MS", default=1000)
# What one client may cost a process (live.socket_limits; docs/operations.md "What it withstands"). A socket
# over a limit is closed with 1008. The page sends one ping per 25 s, so the message budget is
# generous; a socket that leaves more than WS_SEND_BUFFER_BYTES unread (beyond the kernel's own
# buffer) is many seconds behind and reconnects to a fresh snapshot. 0 sockets: no cap.
WS_MAX_SOCKETS_PER_ADDRESS = env.int("WS_MAX_SOCKETS_PER_ADDRESS", default=100)
# Seconds Daphne waits for the next byte of a request's headers (or of an idle keep-alive
# connection) before dropping it; 0: Twisted's 60 s. Slow-header clients (flashsale/asgi.py).
DAPHNE_IDLE_TIMEOUT = env.int("DAPHNE_IDLE_TIMEOUT", default=5)
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=1024)
WS_MESSAGES_PER_SECOND = env.int("WS_MESSAGES_PER_SECOND", default=5)
WS_MESSAGE_BURST = env.int("WS_MESSAGE_BURST", default=20)
WS_SEND_BUFFER_BYTES = env.int("WS_SEND_BUFFER_BYTES", default=64 * 1024)
WS_UNKNOWN_SALE_CACHE_SECONDS = env.int("WS_UNKNOWN_SALE_CACHE_SECONDS", default=5)
# Above 0: the WebSocket side reads what changed from the database this often (live/db_feed.py)
# instead of being told through the channel layer, and nothing is sent to the layer. For
# ./scripts/serve without REDIS_URL, where gunicorn and Daphne are separate processes and the
# in-memory layer cannot carry a purchase from one to the other (docs/realtime.md "Real-time").
REALTIME_POLL_MS = env.int("REALTIME_POLL_MS", default=0)
# The port pages open their WebSocket on, when it is not their own (./scripts/serve: Daphne beside
# gunicorn). 0: the page's own host and port (deploy/run, where HAProxy routes /ws/).
WEBSOCKET_PORT = env.int("WEBSOCKET_PORT", default=0)

# --- Logging --------------------------------------------------------------------------------

REQUEST_LOG = env.bool("REQUEST_LOG", default=True)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# A failure logged again within this many seconds is counted, not written: one line per cause
# per interval says how many (core.logging.RepeatedFailureSummary). 0 writes every one.
LOG_REPEAT_INTERVAL_SECONDS = env.int("LOG_REPEAT_INTERVAL_SECONDS", default=10)
# The loggers that report outages (cache, channel layer, breakers, database, unhandled errors):
# during one, every request logs the same failure.
_SUMMARISED_LOGGERS = [
    "flashsale.auth",
    "flashsale.cache",
    "flashsale.db",
    "flashsale.errors",
    "flashsale.gate",
    "flashsale.idempotency",
    "flashsale.realtime",
    "flashsale.saleclock",
    "django.request",
    "channels_redis.core",
    "channels_redis.pubsub",
    "daphne.server",
    "daphne.http_protocol",
    "daphne.ws_protocol",
    "asyncio",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "filters": {
        "summarise_repeats": {
            "()": "core.logging.RepeatedFailureSummary",
            "interval_seconds": LOG_REPEAT_INTERVAL_SECONDS,
        },
    },
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"},
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Our request log replaces Django's own per-request 4xx/5xx warnings.
        "django.request": {"level": "ERROR", "filters": ["summarise_repeats"]},
        "django.server": {"level": "ERROR"},
        **{name: {"filters": ["summarise_repeats"]} for name in _SUMMARISED_LOGGERS if name != "django.request"},
    },
}
