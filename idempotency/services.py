"""Idempotency keys for unsafe requests, after the IETF HTTPAPI draft "The Idempotency-Key HTTP
Header Field" and Stripe's practice.

A request with a key first *claims* it: one INSERT, committed at once, that twins see. The owner
then runs the request and *completes* the key with its status and body; for a success this happens
in the same transaction as the work, so a purchase and its key record commit or vanish together.
A request that dies holding the key leaves a lock with no work behind it, which a retry may take
over once it is older than IDEMPOTENCY_LOCK_SECONDS. Completion is conditional on still holding
the lock, so a request whose key was taken over rolls its own work back instead of doubling it.
"""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from accounts import services as accounts_services
from accounts.models import User
from idempotency.exceptions import (
    IdempotencyKeyInUse,
    IdempotencyKeyLimitReached,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
)
from idempotency.models import IdempotencyKey

logger = logging.getLogger("flashsale.idempotency")

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    """This request holds the key: it must complete or release it."""

    record_id: int
    lock_token: uuid.UUID


@dataclass(frozen=True)
class Replay:
    """The key was completed before: answer with the stored result."""

    status_code: int
    body: str


def validate_key(raw: str) -> str:
    """The key as sent, if it is 1..255 printable ASCII characters; else InvalidIdempotencyKey."""
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in raw):
        raise InvalidIdempotencyKey(
            details={"Idempotency-Key": [f"Must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."]}
        )
    return raw


def fingerprint(scope: str, payload: Any) -> str:
    """Identifies the request: the same JSON (whatever its key order or spacing) gives the same value."""
    canonical = json.dumps([scope, payload], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def expiry_cutoff(moment: datetime | None = None) -> datetime:
    return (moment or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


def claim(*, user: User, key: str, request_fingerprint: str) -> Claim | Replay:
    """Take `key` for this request, or say why not.

    Returns a Claim (run the request), a Replay (it ran before), or raises IdempotencyKeyReused
    (another request used the key) or IdempotencyKeyInUse (its twin is still running).
    """
    # Bounded: each round either returns or removes an expired/abandoned obstacle.
    for _ in range(3):
        now = timezone.now()
        token = uuid.uuid4()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    user=user,
                    key=key,
                    fingerprint=request_fingerprint,
                    created_at=now,
                    lock_token=token,
                    locked_at=now,
                )
            return Claim(record.pk, token)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(user=user, key=key).first()
        if existing is None:
            # No twin: either it was released or purged between our INSERT and this read, or the
            # INSERT failed its foreign key because the user is gone (a cached token outlived them).
            accounts_services.raise_if_deleted(user)
            continue
        if existing.created_at <= expiry_cutoff(now):
            # An expired key is forgotten: the request is new.
            IdempotencyKey.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused()
        if existing.status_code is not None:  # completed
            return Replay(existing.status_code, existing.response_body)
        assert existing.locked_at is not None  # set on every key not completed
        if existing.locked_at > now - timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS):
            raise IdempotencyKeyInUse()
        # The owner died without completing (no work of it committed): take the lock over.
        taken = IdempotencyKey.objects.filter(
            pk=existing.pk, status_code__isnull=True, lock_token=existing.lock_token
        ).update(lock_token=token, locked_at=now)
        if taken:
            logger.warning("took over abandoned idempotency key", extra={"record_id": existing.pk})
            return Claim(existing.pk, token)
    raise IdempotencyKeyInUse()


def complete(held: Claim, *, status_code: int, body: str, created_id: int | None = None) -> None:
    """Store the result under the key. Inside the work's transaction, a lost lock rolls the work back."""
    stored = IdempotencyKey.objects.filter(
        pk=held.record_id, lock_token=held.lock_token, status_code__isnull=True
    ).update(status_code=status_code, response_body=body, created_id=created_id, lock_token=None, locked_at=None)
    if not stored:
        # Another request took the key over as abandoned; its answer is the one that counts.
        raise IdempotencyKeyInUse()


def release(held: Claim) -> None:
    """Forget a claim whose request produced no result worth replaying (bad input, outage).

    Best effort: if the database is down the lock simply expires after IDEMPOTENCY_LOCK_SECONDS.
    """
    try:
        IdempotencyKey.objects.filter(pk=held.record_id, lock_token=held.lock_token, status_code__isnull=True).delete()
    except DatabaseError:
        logger.warning("could not release idempotency key %s", held.record_id)


def purge_expired(moment: datetime | None = None) -> int:
    """Delete keys older than IDEMPOTENCY_KEY_TTL_HOURS; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=expiry_cutoff(moment)).delete()
    return deleted


def check_key_quota(*, user: User, key: str, moment: datetime | None = None) -> None:
    """Refuse a new key when the user already holds IDEMPOTENCY_MAX_KEYS_PER_USER unexpired ones.

    Every keyed request stores a row, refusals included, so without a bound one user could fill
    the table for a whole TTL. Counting stops at the bound (bounded work per request); the user's
    expired keys are evicted only on the refusal path, so the bound holds without the sale clock's
    purge. Concurrent requests may pass the bound by their number: it caps growth, not exactly.
    """
    limit = settings.IDEMPOTENCY_MAX_KEYS_PER_USER
    cutoff = expiry_cutoff(moment)
    held = IdempotencyKey.objects.filter(user=user, created_at__gt=cutoff)
    if held[:limit].count() < limit:
        return
    if IdempotencyKey.objects.filter(user=user, key=key).exists():
        return  # a retry of a key the user holds: its replay or takeover is no new key
    IdempotencyKey.objects.filter(user=user, created_at__lte=cutoff).delete()
    oldest = held.order_by("created_at").values_list("created_at", flat=True).first()
    wait = (oldest - cutoff).total_seconds() if oldest else 1
    raise IdempotencyKeyLimitReached(limit=limit, retry_after=int(wait) + 1)
