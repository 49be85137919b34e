"""
flashsale settings: everything comes from the environment, with embedded defaults.

With no variables set the service runs on SQLite, a local-memory cache and an in-memory channel
layer, with DEBUG on. Production sets DATABASE_URL (PostgreSQL through psycopg 3's pool) and
REDIS_URL (cache for rate limits, channel layer), SECRET_KEY, ALLOWED_HOSTS and DEBUG=false.
Every variable is listed in README.md.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as corsheaders_default_headers
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
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

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

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
    # Outermost, so request latency covers every other middleware (flashsale/metrics.py).
    "flashsale.metrics.MetricsMiddleware",
    "flashsale.middleware.RequestLogMiddleware",
    # Before anything that calls request.get_host(): a bad Host under /api/ gets the JSON error.
    "flashsale.middleware.ApiHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # django-csp's; under /api/ the configured policy is built once, not per response.
    "flashsale.middleware.ApiAwareCSPMiddleware",
    # Serves /static/ from Daphne itself: from the apps' folders in DEBUG, from STATIC_ROOT
    # (filled by `collectstatic`, which ./scripts/serve runs) when DEBUG is off. /api/ skips it.
    "flashsale.middleware.PageWhiteNoiseMiddleware",
    # django-cors-headers'; a request without Origin (never a browser's cross-origin one) only gets Vary.
    "flashsale.middleware.CrossOriginCorsMiddleware",
    "flashsale.middleware.GlobalRateLimitMiddleware",
    # A refusal the sale gate knows is answered here, before sessions and DRF (sales/fastpath.py).
    "sales.fastpath.GatedPurchaseRefusalMiddleware",
    # Sessions, request.user and messages serve the HTML pages only; /api/ skips them.
    "flashsale.middleware.PageSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Stock CSRF (check --deploy looks for it by name); DRF's views are exempt, so under /api/ it
    # only looks for a cookie.
    "django.middleware.csrf.CsrfViewMiddleware",
    "flashsale.middleware.PageAuthenticationMiddleware",
    "flashsale.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "flashsale.urls"

# /metrics (Prometheus) answers only "Authorization: Bearer <METRICS_TOKEN>"; unset, it is a 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

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

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # No per-thread persistent connections (CONN_MAX_AGE): under Daphne every request runs in its
    # own thread, so a herd would open one connection per request and exhaust PostgreSQL's slots.
    # psycopg's pool bounds the connections per process instead.
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN_SIZE", 2),
            "max_size": env_int("DB_POOL_MAX_SIZE", 20),
            # A request that cannot get a connection fails fast (503) instead of queueing forever.
            "timeout": env_int("DB_POOL_TIMEOUT", 10),
        }
        _db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3))
        # A link that silently drops packets must fail a query within seconds, not after TCP's
        # defaults (minutes of retransmissions, hours before a keepalive): the request then answers
        # 503 and the pool drops the connection. The same values go to the server as session
        # settings, so it ends a dead client's session, and with it a transaction left open holding
        # a sale's row lock that every purchase waits for.
        _tcp = {
            "tcp_user_timeout": env_int("DB_TCP_USER_TIMEOUT_MS", 5000),
            "keepalives_idle": env_int("DB_KEEPALIVES_IDLE", 2),
            "keepalives_interval": env_int("DB_KEEPALIVES_INTERVAL", 1),
            "keepalives_count": env_int("DB_KEEPALIVES_COUNT", 3),
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
        _db["ENGINE"] = "flashsale.postgresql"
else:
    _db = {
        # The stock backend plus one queue per process for the write lock (flashsale/sqlite3).
        "ENGINE": "flashsale.sqlite3",
        "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        # IMMEDIATE takes the write lock at BEGIN, so concurrent purchases queue instead of
        # failing with "database is locked" when they upgrade a read lock; `timeout` is how long
        # one waits for it. WAL lets readers (pages, the WebSocket side's database feed, other
        # gunicorn processes) go on while a purchase writes, instead of queueing on that lock too.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL"},
    }
if env_str("TEST_DATABASE_NAME"):
    # Lets several test runs share one PostgreSQL server without dropping each other's database.
    _db["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache, channel layer -------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis answering like an empty cache while Redis is down, behind a circuit
            # breaker (flashsale/cache.py, docs/operations.md "Reliability").
            "BACKEND": "flashsale.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "flashsale"),
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                "RETRY_SECONDS": env_int("CACHE_RETRY_SECONDS", 2),
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
                "capacity": env_int("CHANNEL_LAYER_CAPACITY", 100_000),
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
                        "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 2000),
                    }
                ],
                "prefix": env_str("CHANNEL_PREFIX", "flashsale"),
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
]

# --- REST framework -------------------------------------------------------------------------

REST_FRAMEWORK = {
    # DRF token auth with the token's user cached (invalidated on logout / token delete).
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.CachedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["flashsale.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "flashsale.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI schema at /api/schema/, Swagger UI at /api/docs/ (assets from drf-spectacular-sidecar, no CDN).
# The envelope, error shapes and non-DRF endpoints are added by flashsale/schema.py.
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
    "REDOC_DIST": "SIDECAR",
    # Request and response shapes differ (read-only ids, counters), so they get separate components.
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies require `version` like PUT: no auto-generated all-optional "Patched" components.
    "COMPONENT_SPLIT_PATCH": False,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "PREPROCESSING_HOOKS": ["flashsale.schema.preprocess_endpoints"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "flashsale.schema.postprocess_schema"],
}

# --- Business limits ------------------------------------------------------------------------

MAX_PURCHASE_QUANTITY = env_int("MAX_PURCHASE_QUANTITY", 5)
MAX_UNITS_PER_USER = env_int("MAX_UNITS_PER_USER", MAX_PURCHASE_QUANTITY)
if MAX_PURCHASE_QUANTITY < 1 or MAX_UNITS_PER_USER < 1:
    raise ImproperlyConfigured("MAX_PURCHASE_QUANTITY and MAX_UNITS_PER_USER must be at least 1")

# --- Hot-path caches (docs/performance.md "Performance") -------------------------------------------------

# How long a token's user is served from the cache; deleting the token drops it at once.
AUTH_TOKEN_CACHE_SECONDS = env_int("AUTH_TOKEN_CACHE_SECONDS", 60)
# How long a sold-out / not-live refusal is replayed from the cache (sales.gate) at most; restocks
# and edits invalidate it at once.
SALE_GATE_SECONDS = env_int("SALE_GATE_SECONDS", 10)

# Idempotency-Key on purchases (idempotency app): results are replayed for this long, and a key
# whose request died without finishing can be retried after IDEMPOTENCY_LOCK_SECONDS.
IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24)
IDEMPOTENCY_LOCK_SECONDS = env_int("IDEMPOTENCY_LOCK_SECONDS", 30)
# Most unexpired keys one user may hold (a new one past it is 429), and how often the sale clock
# deletes expired keys.
IDEMPOTENCY_MAX_KEYS_PER_USER = env_int("IDEMPOTENCY_MAX_KEYS_PER_USER", 1000)
IDEMPOTENCY_PURGE_SECONDS = env_int("IDEMPOTENCY_PURGE_SECONDS", 300)

# --- Rate limiting (django-ratelimit) -------------------------------------------------------

RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = env_bool("RATELIMIT_FAIL_OPEN", True)
# Rates are "<count>/<period>" with period s, m, h or d (django-ratelimit syntax).
RATELIMIT_PURCHASE = env_str("RATELIMIT_PURCHASE", "10/s")
RATELIMIT_LOGIN = env_str("RATELIMIT_LOGIN", "20/m")
# Wrong passwords, tightly per (email, client address) and loosely per email (accounts.login_limits).
RATELIMIT_LOGIN_FAILURES = env_str("RATELIMIT_LOGIN_FAILURES", "10/h")
RATELIMIT_LOGIN_EMAIL = env_str("RATELIMIT_LOGIN_EMAIL", "100/h")
RATELIMIT_REGISTER = env_str("RATELIMIT_REGISTER", "20/m")
RATELIMIT_GLOBAL = env_str("RATELIMIT_GLOBAL", "300/s")
# HTML pages (the live page, admin) per client IP, and WebSocket connections opened per client IP.
RATELIMIT_PAGES = env_str("RATELIMIT_PAGES", "120/m")
RATELIMIT_WS_CONNECT = env_str("RATELIMIT_WS_CONNECT", "120/m")
# Behind a reverse proxy, the META key holding the client address, e.g. HTTP_X_REAL_IP or
# HTTP_X_FORWARDED_FOR (the proxy must overwrite it). Empty: the socket peer address.
TRUSTED_CLIENT_IP_HEADER = env_str("TRUSTED_CLIENT_IP_HEADER")
RATELIMIT_IP_META_KEY = "flashsale.ratelimit.client_ip"

# --- Security -------------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Load balancers probe the backends over plain HTTP: a redirect would fail their checks.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health"]
# HSTS (sent only on HTTPS responses): a year once the site says it is served over HTTPS.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# The preload list is a separate, hard-to-undo submission for the whole domain, which its owner
# opts into (SECURE_HSTS_PRELOAD=true); the service cannot decide it.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env_bool("SECURE_PROXY_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Origins (scheme://host[:port]) whose pages may open WebSockets besides the socket's own origin
# (flashsale/websocket_origin.py), e.g. the HTTP port when Daphne listens on another one.
WEBSOCKET_ALLOWED_ORIGINS = env_list("WEBSOCKET_ALLOWED_ORIGINS", [])

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
        "connect-src": [SELF, *env_list("CSP_CONNECT_SRC", [])],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_EXPOSE_HEADERS = ["Retry-After", "Idempotent-Replayed"]
CORS_ALLOW_HEADERS = (*corsheaders_default_headers, "idempotency-key")

# Bodies above 1 MiB are refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- Internationalization, static files -----------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One ISO-like date format on every page, e.g. "2026-11-25 19:15 UTC" (flashsale/formats/en).
FORMAT_MODULE_PATH = ["flashsale.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))

# --- Leaderboard (public reads) -------------------------------------------------------------

# How long the leaderboard's `count` is served from the cache instead of counting purchases, and
# the deepest `page` offset served; past it clients page with `after=<purchaseId>` (keyset).
LEADERBOARD_COUNT_CACHE_SECONDS = env_int("LEADERBOARD_COUNT_CACHE_SECONDS", 5)
LEADERBOARD_MAX_OFFSET = env_int("LEADERBOARD_MAX_OFFSET", 10_000)

# --- Real-time (live.consumers) ------------------------------------------------------------

# Each socket gets at most one stock message per interval, always the newest version (docs/realtime.md "Real-time").
STOCK_PUSH_INTERVAL_MS = env_int("STOCK_PUSH_INTERVAL_MS", 75)
# What one client may cost a process (live.socket_limits; docs/operations.md "What it withstands"). A socket
# over a limit is closed with 1008. The page sends one ping per 25 s, so the message budget is
# generous; a socket that leaves more than WS_SEND_BUFFER_BYTES unread (beyond the kernel's own
# buffer) is many seconds behind and reconnects to a fresh snapshot. 0 sockets: no cap.
WS_MAX_SOCKETS_PER_ADDRESS = env_int("WS_MAX_SOCKETS_PER_ADDRESS", 100)
# Seconds Daphne waits for the next byte of a request's headers (or of an idle keep-alive
# connection) before dropping it; 0: Twisted's 60 s. Slow-header clients (flashsale/asgi.py).
DAPHNE_IDLE_TIMEOUT = env_int("DAPHNE_IDLE_TIMEOUT", 5)
WS_MAX_MESSAGE_BYTES = env_int("WS_MAX_MESSAGE_BYTES", 1024)
WS_MESSAGES_PER_SECOND = env_int("WS_MESSAGES_PER_SECOND", 5)
WS_MESSAGE_BURST = env_int("WS_MESSAGE_BURST", 20)
WS_SEND_BUFFER_BYTES = env_int("WS_SEND_BUFFER_BYTES", 64 * 1024)
WS_UNKNOWN_SALE_CACHE_SECONDS = env_int("WS_UNKNOWN_SALE_CACHE_SECONDS", 5)
# Above 0: the WebSocket side reads what changed from the database this often (live/db_feed.py)
# instead of being told through the channel layer, and nothing is sent to the layer. For
# ./scripts/serve without REDIS_URL, where gunicorn and Daphne are separate processes and the
# in-memory layer cannot carry a purchase from one to the other (docs/realtime.md "Real-time").
REALTIME_POLL_MS = env_int("REALTIME_POLL_MS", 0)
# The port pages open their WebSocket on, when it is not their own (./scripts/serve: Daphne beside
# gunicorn). 0: the page's own host and port (deploy/run, where HAProxy routes /ws/).
WEBSOCKET_PORT = env_int("WEBSOCKET_PORT", 0)

# --- Logging --------------------------------------------------------------------------------

REQUEST_LOG = env_bool("REQUEST_LOG", True)
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "flashsale.logging.JsonFormatter"},
    },
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"},
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Our request log replaces Django's own per-request 4xx/5xx warnings.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "ERROR"},
    },
}
