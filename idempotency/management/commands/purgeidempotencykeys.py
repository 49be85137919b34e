from django.conf import settings
from django.core.management.base import BaseCommand

from idempotency.services import purge_expired


class Command(BaseCommand):
    help = "Delete idempotency keys older than IDEMPOTENCY_KEY_TTL_HOURS (run it from cron, e.g. hourly)."

    def handle(self, *args, **options):
        deleted = purge_expired()
        self.stdout.write(f"deleted {deleted} idempotency keys older than {settings.IDEMPOTENCY_KEY_TTL_HOURS} h")
