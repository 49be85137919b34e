"""Token authentication that does not cost a database query per request.

DRF's TokenAuthentication reads the token and its user on every request; under a purchase herd that
is one of the four queries of a purchase and the only one of a refused one. Here the user behind a
token is cached (`AUTH_TOKEN_CACHE_SECONDS`) as a handful of plain fields, never the password hash, keyed
by field name: `Model.from_db` assigns values in the model's field order, whatever order the names
are given in, so a positional entry rebuilt a user with `is_superuser` holding the email.

Invalidation: deleting a token (logout, the admin, a user's deletion cascading to it) removes its
entry at once and again after commit; saving a user (deactivation, staff change) removes the
entries of all their tokens. The expiry bounds the one remaining race: a request that read the
token from the database just before a logout committed and writes the cache just after it.
Each process also keeps its copy of an entry for LOCAL_TOKEN_CACHE_MS (core.near_cache); removing the
entry drops the copies of every process, by a pub/sub message to the others.
"""

import functools
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts.models import User
from core import prefetch
from core.near_cache import NearCache

logger = logging.getLogger("flashsale.auth")

# The user fields a request can need without a query; any other field loads lazily (deferred).
CACHED_USER_FIELDS = ("id", "email", "name", "is_active", "is_staff", "is_superuser")


# What a stored key can look like: DRF generates 40 hex digits; the column holds at most 40 characters.
_PLAUSIBLE_KEY = re.compile(r"[!-~]{1,40}")


def token_cache_key(key: str) -> str:
    return f"auth:token:{key}"


class CachedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's, with the token's user served from the cache."""

    def authenticate(self, request: Request) -> tuple[User, Token] | None:
        try:
            return super().authenticate(request)
        except UnicodeError:
            # DRF encodes the header as latin-1 before its own checks; other characters were a 500.
            raise AuthenticationFailed(
                "Invalid token header. Token string should not contain invalid characters."
            ) from None

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        if not _PLAUSIBLE_KEY.fullmatch(key):
            # Refused before the cache and the database: a NUL byte made PostgreSQL raise (a 500),
            # and garbage of any length should not cost a query or a cache key.
            raise AuthenticationFailed("Invalid token.")
        user = cached_user(key)
        if user is None:
            user = user_from_database(key)
        return user, Token(key=key, user=user)


def user_from_database(key: str) -> User:
    """The active user behind token `key`, read from the database and cached for the next request;
    DRF's AuthenticationFailed, in its words, for an unknown token or an inactive user."""
    entry = _entry_from_database(key)
    if entry is None:
        raise AuthenticationFailed(_("Invalid token."))  # DRF's words, and so its translations
    user = user_from_cache_entry(entry)
    if user is None or not user.is_active:
        raise AuthenticationFailed(_("User inactive or deleted."))
    remember_user_id(key, user.pk)
    try:
        cache.set(token_cache_key(key), entry, timeout=settings.AUTH_TOKEN_CACHE_SECONDS)
    except Exception:
        logger.warning("token cache unreachable", exc_info=True)
    return user


@functools.cache
def _token_user_sql() -> str:
    columns = {field.name: field.column for field in User._meta.concrete_fields}
    user_columns = ", ".join(f'u."{columns[name]}"' for name in CACHED_USER_FIELDS)
    token, user = Token._meta, User._meta
    return (
        f'SELECT {user_columns} FROM "{token.db_table}" t JOIN "{user.db_table}" u '
        f'ON u."{user.pk.column}" = t."{Token.user.field.column}" WHERE t."{token.pk.column}" = %s'
    )


def _entry_from_database(key: str) -> dict[str, Any] | None:
    """The cache entry of token `key`'s user read from the database, None for no such token. One
    hand-written statement, where DRF's `select_related` lookup builds two model instances and
    compiles its query each time: a herd's first request of each buyer makes one
    (docs/performance.md, the seventh session)."""
    with connection.cursor() as cursor:
        cursor.execute(_token_user_sql(), [key])
        row = cursor.fetchone()
    if row is None:
        return None
    entry = dict(zip(CACHED_USER_FIELDS, row, strict=True))
    for name in ("is_active", "is_staff", "is_superuser"):
        entry[name] = bool(entry[name])  # SQLite answers 0 and 1
    return entry


def active_user_for(key: str, *, not_cached: bool = False) -> User | None:
    """The active user behind token `key` as DRF's token authentication (this module's) finds it:
    from the cache, else from the database, caching what it read (`not_cached`: the caller read the
    cache already and found no entry, so only the database is asked). None for a token DRF refuses
    or a database it cannot reach: a layer answering before DRF then leaves the request to DRF's
    view, which names the error (401, 503)."""
    try:
        if not_cached:
            return user_from_database(key)
        user, _ = CachedTokenAuthentication().authenticate_credentials(key)
    except Exception:
        return None
    return user if user.is_active else None


def cached_user(key: str) -> User | None:
    """The user behind token `key` as cached: this process's copy of the entry (core.near_cache),
    else the entry as this request read it with its other keys (core.prefetch), else as the cache
    answers now; None when no entry is cached or the cache cannot be read."""
    entry = _near_entries.get(key)
    if entry is None:
        cache_key = token_cache_key(key)
        read, entry = prefetch.cached(cache_key)
        read_at = prefetch.read_at()
        if not read or read_at is None:
            read_at = time.monotonic()
            try:
                entry = cache.get(cache_key)
            except Exception:  # the cache is an optimisation: the database still answers
                logger.warning("token cache unreachable", exc_info=True)
                return None
        keep_near(key, entry, read_at=read_at)
    user = user_from_cache_entry(entry)
    if user is not None:
        remember_user_id(key, user.pk)
    return user


def has_near_copy(key: str) -> bool:
    """Whether this process keeps a copy of token `key`'s cache entry (core.near_cache)."""
    return _near_entries.get(key) is not None


def counted_while_cached(key: str, plan: prefetch.Plan) -> str | None:
    """The `only_if` of a planned counter that counts only while token `key` is cached: None when
    this process keeps a copy of its entry (it is cached), else the entry's read, planned if it was not."""
    if has_near_copy(key):
        return None
    read = token_cache_key(key)
    if read not in plan.reads:
        plan.reads.append(read)
    return read


def near_user(key: str) -> User | None:
    """The user behind token `key` from this process's copy of its cache entry, if one is kept."""
    return user_from_cache_entry(_near_entries.get(key))


def keep_near(key: str, entry: object, *, read_at: float) -> None:
    """Keep this process's copy of token `key`'s cache entry, read from the cache at `read_at`
    (time.monotonic()), if it is one (core.near_cache)."""
    if user_from_cache_entry(entry) is not None:
        _near_entries.put(key, entry, read_at=read_at)


def cache_entry_for(user: User) -> dict[str, Any]:
    return {name: getattr(user, name) for name in CACHED_USER_FIELDS}


def user_from_cache_entry(entry: object) -> User | None:
    """The user a cache entry describes, as the database row would load with the other fields
    deferred; None for anything that is not a complete entry (a miss: the database answers)."""
    # Entries from before the fields were keyed by name are tuples: misaligned, never trusted.
    if not isinstance(entry, dict) or entry.keys() != set(CACHED_USER_FIELDS):
        return None
    # Names and values both follow the model's field order, which is the order from_db assigns in.
    names = [field.attname for field in User._meta.concrete_fields if field.attname in entry]
    return User.from_db("default", names, [entry[name] for name in names])


# A token's cache entry as this process last read it from the cache, for LOCAL_TOKEN_CACHE_MS: under a
# herd the same tokens come back many times a second. Dropped in every process with the cache's entry
# (`forget_tokens`); a deleted token still answered elsewhere for at most LOCAL_TOKEN_CACHE_MS (a lost
# message) is the bound docs/design.md states.
_near_entries = NearCache("token", lifetime_setting="LOCAL_TOKEN_CACHE_MS")

# Which user a token key belongs to, per process: a token never changes hands (the key is the row's
# primary key and its user a fixed foreign key), so this can only be missing, never wrong. It lets
# core.prefetch name a per-user counter before the request's token is read; the counter is only
# counted when the token is still cached (a deleted token counts nothing). Bounded by clearing.
_user_ids: dict[str, int] = {}
MAX_REMEMBERED_TOKENS = 100_000


def remember_user_id(key: str, user_id: int) -> None:
    if len(_user_ids) >= MAX_REMEMBERED_TOKENS:
        _user_ids.clear()
    _user_ids[key] = user_id


def user_id_of(key: str) -> int | None:
    """The user a token key was last seen to belong to in this process, if it was."""
    return _user_ids.get(key)


@prefetch.planner
def _plan_token_read(request: Any, plan: prefetch.Plan) -> None:
    """An API request with a plausible token reads its cache entry with the request's other keys."""
    if not request.path_info.startswith("/api/"):
        return
    key = plausible_token(request.META.get("HTTP_AUTHORIZATION", ""))
    if key is not None and not has_near_copy(key):
        plan.reads.append(token_cache_key(key))


def plausible_token(authorization: str) -> str | None:
    """The key of an `Authorization: Token <key>` header that could be a stored key, else None."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "token" or not _PLAUSIBLE_KEY.fullmatch(key):
        return None
    return key


def forget_tokens(keys: Iterable[str]) -> None:
    keys = list(keys)
    if not keys:
        return
    try:
        cache.delete_many([token_cache_key(key) for key in keys])
    except Exception:
        logger.error(
            "could not drop cached tokens; they stay valid for at most %ss",
            settings.AUTH_TOKEN_CACHE_SECONDS,
            exc_info=True,
        )
    # After the cache's entries: a process told to drop its copy must not read the old entry again.
    _near_entries.drop(keys)


@receiver(post_delete, sender=Token, dispatch_uid="accounts.forget_deleted_token")
def _token_deleted(sender: type[Token], instance: Token, **kwargs: Any) -> None:
    # Now, so this process stops accepting it at once, and after commit, so a request that read
    # the token before the delete committed cannot leave it cached.
    forget_tokens([instance.key])
    transaction.on_commit(lambda: forget_tokens([instance.key]))


@receiver(post_save, sender=User, dispatch_uid="accounts.forget_tokens_of_changed_user")
def _user_saved(
    sender: type[User], instance: User, created: bool, update_fields: frozenset[str] | None = None, **kwargs: Any
) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login", "password"}):
        return
    keys = list(Token.objects.filter(user_id=instance.pk).values_list("key", flat=True))
    forget_tokens(keys)
    transaction.on_commit(lambda: forget_tokens(keys))
