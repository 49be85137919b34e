from django.conf import settings
from django.db import models
from django.db.models import Q


class IdempotencyKey(models.Model):
    """One client-chosen key of one user, and the result of the request first made with it.

    While the first request runs the row is a lock (`lock_token` set, `status_code` null); the
    request that owns the lock completes it with its status and body. A successful request
    completes it in the transaction that does its work (a purchase: the one that inserts it), so
    either both exist or neither.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of the endpoint and the canonical JSON body: a different request under the same key
    # is refused instead of being answered with another request's result.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    # Set while a request holds the key; a lock older than IDEMPOTENCY_LOCK_SECONDS belongs to a
    # request that died (its purchase, if any, rolled back with it) and may be taken over.
    lock_token = models.UUIDField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The rendered JSON body, as text so a replay is byte-for-byte the first answer (jsonb would
    # reorder the keys).
    response_body = models.TextField(blank=True, default="")
    # The id of the row the request created (`success(..., created_id=)`), opaque here: the app that
    # owns the row checks it (sales' auditsales), so this app knows no other.
    created_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user"),
            models.CheckConstraint(
                condition=Q(status_code__isnull=True) | Q(lock_token__isnull=True),
                name="idempotency_key_locked_or_completed",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self):
        return f"{self.key} of user {self.user_id}"
