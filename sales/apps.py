from django.apps import AppConfig
from django.db import connection


class SalesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sales"

    def ready(self):
        from sales import purchase

        # Once per process: the database does not change under a running process, so the rule
        # does not ask which one it talks to on every purchase.
        purchase.choose_backend(connection.vendor)
