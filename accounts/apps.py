from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'accounts'

    def ready(self):
        # Connects the signals that drop cached tokens on logout and user changes, and revoke
        # tokens when a password changes.
        from accounts import authentication, signals  # noqa: F401
