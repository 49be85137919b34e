"""A user's password change signs them out of the API everywhere.

Django signs other admin sessions out by itself (the session stores a hash of the password); API
tokens know nothing of the password, so they are deleted here, on every path that saves a new
password: the admin's password form, `set_password` + `save()` in code or the shell,
`changepassword`, and the admin's "disable password-based authentication". Deleting the tokens
drops their cached entries too (accounts.authentication's delete receiver).

Not covered: a hash written straight to the column (`QuerySet.update`, SQL), which no signal sees.
"""

from django.contrib.auth.hashers import is_password_usable
from django.db.models.signals import post_init, post_save
from django.dispatch import receiver

from accounts import services
from accounts.models import User


@receiver(post_init, sender=User, dispatch_uid="accounts.remember_loaded_password")
def _remember_loaded_password(sender, instance, **kwargs):
    # __dict__, not the attribute: the token cache builds users with the password deferred, and
    # reading it would cost a query per authenticated request.
    instance._loaded_password = instance.__dict__.get("password")


@receiver(post_save, sender=User, dispatch_uid="accounts.revoke_tokens_on_password_change")
def _revoke_tokens_on_password_change(sender, instance, created, update_fields=None, **kwargs):
    if created or (update_fields is not None and "password" not in update_fields):
        return
    # set_password() keeps the raw password in _password until save() returns. check_password()
    # re-hashing with a newer hasher clears it before saving: that login is no password change.
    password_set = instance._password is not None
    current = instance.__dict__.get("password")
    made_unusable = current is not None and not is_password_usable(current) and current != instance._loaded_password
    if password_set or made_unusable:
        services.revoke_tokens(user_id=instance.pk)
    instance._loaded_password = current
