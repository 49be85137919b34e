from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        # Connects the signals that drop cached tokens on logout and user changes, and revoke
        # tokens when a password changes; counts wrong passwords.
        from accounts import authentication, login_limits, signals  # noqa: F401
