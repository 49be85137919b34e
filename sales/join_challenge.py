"""The proof of work a waiting room's join may ask for (a sale's `join_difficulty` > 0): ALTCHA's
challenges (the `altcha` library, its v2 "PBKDF2/SHA-256" scheme), issued here and redeemed by a join.

A challenge is signed (HMAC, a key derived from SECRET_KEY), expires after JOIN_CHALLENGE_SECONDS and
carries the buyer's and the sale's ids in its signed data, so a solution is worth one join of that
buyer to that sale and nothing else. It is made in ALTCHA's deterministic mode: the server draws the
counter the solver must reach, uniformly around the difficulty, so no solution comes cheap by luck,
and the server checks a solution with one HMAC of its derived key instead of deriving it again.

Each try is a PBKDF2 of PBKDF2_ITERATIONS rounds, not one SHA-256: the browser pays a promise per
crypto.subtle call, which made single hashes many times slower there than in a bot's native loop,
while a PBKDF2 call runs its rounds natively in both (docs/performance.md "Join challenge").

Single use: redeeming adds the challenge's nonce to the cache until its expiry. While the cache
(Redis) cannot answer, redeeming goes on without that record: the solution still binds one buyer to
one sale, and PostgreSQL's one place per (sale, buyer) means a reused solution can take no second place.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import altcha
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.models import User
from sales.exceptions import ChallengeFailed
from sales.models import FlashSale

logger = logging.getLogger("flashsale.sales")

ALGORITHM = "PBKDF2/SHA-256"
# Enough rounds per try that the browser's cost per crypto.subtle call is a small share of a try.
PBKDF2_ITERATIONS = 1000
_KEY_SALT = "flashsale.sales.join_challenge"


class Reason:
    """Why a join's solution was refused: `details.reason` of `challenge_failed`."""

    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"
    USED = "used"
    NOT_YOURS = "not_yours"


@dataclass(frozen=True)
class IssuedChallenge:
    """What the page fetches: `challenge` (None when the sale asks for no proof) is ALTCHA's
    {parameters, signature}, sent back unchanged with the solution."""

    sale_id: int
    difficulty: int
    expires_at: datetime | None
    challenge: dict | None


def _secret(purpose: str) -> str:
    return salted_hmac(_KEY_SALT, purpose, algorithm="sha256").hexdigest()


def issue(*, user: User, sale: FlashSale) -> IssuedChallenge:
    """A fresh challenge for `user` to join `sale`, or none when the sale's difficulty is 0."""
    return new_challenge(difficulty=sale.join_difficulty, sale_id=sale.pk, user_id=user.pk)


def new_challenge(*, difficulty: int, sale_id: int, user_id: int) -> IssuedChallenge:
    """A challenge worth one join of user `user_id` to sale `sale_id` (bench/join_challenge.py times them)."""
    if difficulty == 0:
        return IssuedChallenge(sale_id=sale_id, difficulty=0, expires_at=None, challenge=None)
    expires_at = timezone.now().replace(microsecond=0) + timedelta(seconds=settings.JOIN_CHALLENGE_SECONDS)
    challenge = altcha.create_challenge(
        ALGORITHM,
        PBKDF2_ITERATIONS,
        # The solver counts from 0 up to this counter: on average `difficulty` tries, never fewer than half.
        counter=difficulty // 2 + secrets.randbelow(difficulty + 1),
        expires_at=expires_at,
        data={"saleId": sale_id, "userId": user_id},
        hmac_secret=_secret("challenge"),
        hmac_key_secret=_secret("derived-key"),
    )
    return IssuedChallenge(sale_id=sale_id, difficulty=difficulty, expires_at=expires_at, challenge=challenge.to_dict())


def redeem(*, user: User, sale: FlashSale, challenge: Any, solution: Any) -> None:
    """Accept `solution` of `challenge` for `user`'s join of `sale` once, or raise ChallengeFailed."""
    if challenge is None or solution is None:
        raise _failed(sale, Reason.MISSING)
    try:
        payload = altcha.Payload(altcha.Challenge.from_dict(challenge), altcha.Solution.from_dict(solution))
        result = altcha.verify_solution(payload, _secret("challenge"), hmac_key_secret=_secret("derived-key"))
        parameters = payload.challenge.parameters
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        raise _failed(sale, Reason.INVALID) from None
    if result.expired:
        raise _failed(sale, Reason.EXPIRED)
    if not result.verified:
        raise _failed(sale, Reason.INVALID)
    if parameters.data != {"saleId": sale.pk, "userId": user.pk}:
        raise _failed(sale, Reason.NOT_YOURS)
    if not isinstance(parameters.expires_at, int):
        raise _failed(sale, Reason.INVALID)  # signed, so never: every challenge issued here expires
    _use_once(sale, nonce=parameters.nonce, expires_at=parameters.expires_at)


def _use_once(sale: FlashSale, *, nonce: str, expires_at: int) -> None:
    key = f"join-challenge-used:{nonce}"
    seconds_left = max(1, int(expires_at - datetime.now(UTC).timestamp()) + 1)
    if cache.add(key, 1, timeout=seconds_left):
        return
    if cache.get(key) is not None:
        raise _failed(sale, Reason.USED)
    # The cache could not record it (Redis down): see the module's docstring for why this is safe.
    logger.warning("join challenge accepted without its single-use record: the cache did not answer")


def _failed(sale: FlashSale, reason: str) -> ChallengeFailed:
    return ChallengeFailed(details={"saleId": sale.pk, "reason": reason})
