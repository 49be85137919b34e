from django.core.management.base import BaseCommand, CommandError

from sales.audit import run_audit


class Command(BaseCommand):
    help = (
        "Check the sales invariants: original - current == sum of purchased quantities per sale, "
        "no negative stock, no user above the per-user cap, no purchase outside its sale's window, "
        "idempotency keys pointing at their purchases. Exits 1 and lists every violation when one is found."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-units-per-user",
            type=int,
            default=None,
            help="the per-user cap to check against (default: MAX_UNITS_PER_USER)",
        )

    def handle(self, *args, max_units_per_user=None, **options):
        report = run_audit(max_units_per_user=max_units_per_user)
        self.stdout.write(
            f"audited {report.sales} sales, {report.purchases} purchases, {report.idempotency_keys} idempotency keys"
        )
        if report.ok:
            self.stdout.write(self.style.SUCCESS("OK: no violations"))
            return
        for violation in report.violations:
            self.stdout.write(f"VIOLATION: {violation}")
        raise CommandError(f"{len(report.violations)} violation(s) found", returncode=1)
