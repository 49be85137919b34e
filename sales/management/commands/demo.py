from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from sales import services
from sales.models import FlashSale

DEMO_PASSWORD = "flash-sale-demo"
DEMO_STAFF = ("staff@example.com", "Demo Staff")
DEMO_BUYERS = [("ada@example.com", "Ada"), ("grace@example.com", "Grace"), ("linus@example.com", "Linus")]
DEMO_SALE_NAME = "Demo sneakers"


class Command(BaseCommand):
    help = (
        "Create demo accounts and, unless a sale is pending or live, a sale starting in a minute. "
        "Idempotent. Refuses to run when DEBUG is off unless --force (it creates known passwords)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="run even when DEBUG is off")
        parser.add_argument(
            "--only-if-debug", action="store_true", help="when DEBUG is off, do nothing and succeed (scripts/serve)"
        )
        parser.add_argument("--starts-in", type=int, default=60, help="seconds until the demo sale starts")
        parser.add_argument("--duration", type=int, default=30 * 60, help="seconds the demo sale stays open")
        parser.add_argument("--stock", type=int, default=100)

    def handle(self, *args, force, only_if_debug, starts_in, duration, stock, **options):
        if not settings.DEBUG and only_if_debug and not force:
            self.stdout.write("demo: DEBUG is off, no demo data created.")
            return
        if not settings.DEBUG and not force:
            raise CommandError("DEBUG is off: demo accounts have published passwords. Use --force to run anyway.")
        with transaction.atomic():
            for email, name, is_staff in [(*DEMO_STAFF, True), *((e, n, False) for e, n in DEMO_BUYERS)]:
                self._ensure_user(email, name, is_staff)
            now = timezone.now()
            # A pending or live sale already gives a newcomer something to watch: leave it alone.
            sale = (
                FlashSale.objects.active(now).order_by("end_time").first()
                or FlashSale.objects.pending(now).order_by("start_time").first()
            )
            created = sale is None
            if created:
                start = now + timedelta(seconds=starts_in)
                sale = services.create_sale(
                    name=DEMO_SALE_NAME,
                    start_time=start,
                    end_time=start + timedelta(seconds=duration),
                    original_stock=stock,
                )
        verb = "Created" if created else "Kept"
        self.stdout.write(f"{verb} sale {sale.pk} {sale.name!r}: {sale.status}, starts {sale.start_time:%H:%M:%S} UTC.")
        self.stdout.write(f"Sign in on the live page with any of these (password {DEMO_PASSWORD!r}):")
        for email, name in DEMO_BUYERS:
            self.stdout.write(f"  buyer  {email}  ({name})")
        self.stdout.write(f"  staff  {DEMO_STAFF[0]}  (admin at /admin/)")

    def _ensure_user(self, email: str, name: str, is_staff: bool) -> None:
        user = User.objects.filter(email=email).first()
        if user is None:
            User.objects.create_user(email=email, name=name, password=DEMO_PASSWORD, is_staff=is_staff)
