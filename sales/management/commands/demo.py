import secrets
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from sales import services
from sales.models import FlashSale

# The buyers' password is published (README): demo buyers can only buy demo stock. The staff
# account runs the admin, so its password is random, printed once when it is set.
DEMO_PASSWORD = "flash-sale-demo"
DEMO_STAFF = ("staff@example.com", "Demo Staff")
DEMO_BUYERS = [("ada@example.com", "Ada"), ("grace@example.com", "Grace"), ("linus@example.com", "Linus")]
DEMO_SALE_NAME = "Demo sneakers"


class Command(BaseCommand):
    help = (
        "Create demo accounts and, unless a sale is pending or live, a sale starting in a minute. "
        "Idempotent. The staff password is random and printed once. Never runs when DEBUG is off "
        "(the buyers' password is published)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--only-if-debug", action="store_true", help="when DEBUG is off, do nothing and succeed (scripts/serve)"
        )
        parser.add_argument("--starts-in", type=int, default=60, help="seconds until the demo sale starts")
        parser.add_argument("--duration", type=int, default=30 * 60, help="seconds the demo sale stays open")
        parser.add_argument("--stock", type=int, default=100)

    def handle(self, *args, only_if_debug, starts_in, duration, stock, **options):
        if not settings.DEBUG:
            if only_if_debug:
                self.stdout.write("demo: DEBUG is off, no demo data created.")
                return
            raise CommandError("DEBUG is off: the demo creates accounts with a published password, so it never runs.")
        with transaction.atomic():
            for email, name in DEMO_BUYERS:
                self._ensure_buyer(email, name)
            staff_password = self._ensure_staff()
            now = timezone.now()
            # A pending or live sale already gives a newcomer something to watch: leave it alone.
            sale = (
                FlashSale.objects.active(now).order_by("end_time").first()
                or FlashSale.objects.pending(now).order_by("start_time").first()
            )
            created = sale is None
            if sale is None:
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
        if staff_password:
            self.stdout.write(f"Admin at /admin/: {DEMO_STAFF[0]}, password {staff_password} (shown only now).")
        else:
            self.stdout.write(f"Admin at /admin/: {DEMO_STAFF[0]}, with the password printed when it was created.")

    def _ensure_buyer(self, email: str, name: str) -> None:
        if not User.objects.filter(email=email).exists():
            User.objects.create_user(email=email, name=name, password=DEMO_PASSWORD)

    def _ensure_staff(self) -> str | None:
        """A new random password when the staff account is created, or still has the password
        earlier demos published; None when it keeps its own."""
        email, name = DEMO_STAFF
        user = User.objects.filter(email=email).first()
        if user is not None and not user.check_password(DEMO_PASSWORD):
            return None
        password = secrets.token_urlsafe(12)
        if user is None:
            User.objects.create_user(email=email, name=name, password=password, is_staff=True)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        return password
