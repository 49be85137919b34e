from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sales import services
from sales.exceptions import SalesError


class Command(BaseCommand):
    help = "Create a flash sale and print its id."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--stock", type=int, default=200, help="units on sale (default 200)")
        parser.add_argument("--starts-in", type=int, default=0, help="seconds from now until it starts")
        parser.add_argument("--duration", type=int, default=3600, help="seconds it stays open")

    def handle(self, *args, name, stock, starts_in, duration, **options):
        start = timezone.now() + timedelta(seconds=starts_in)
        try:
            sale = services.create_sale(
                name=name, start_time=start, end_time=start + timedelta(seconds=duration), original_stock=stock
            )
        except SalesError as error:
            raise CommandError(f"{error.message} {error.details}") from None
        self.stdout.write(str(sale.pk))
