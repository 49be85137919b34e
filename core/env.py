"""The environment reader of flashsale/settings.py: django-environ's `Env`, stricter where a
deployment's typo must not pass quietly.

- A boolean or integer that does not parse is ImproperlyConfigured naming the variable (django-environ
  reads any unknown word as False: RATELIMIT_ENABLE=flase would switch rate limiting off).
- An empty boolean or integer means "not set" (a blank line in an env file keeps the default).
- A value is never a reference to another variable: django-environ reads `$NAME` as NAME's value,
  and a generated SECRET_KEY may start with "$".
- A list is comma-separated with blanks around items and empty items dropped ("a.com, b.com").
"""

import builtins
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Env(environ.Env):
    def _raw(self, var: builtins.str) -> builtins.str | None:
        # Straight from the environment, bypassing get_value's `$NAME` proxying.
        value = self.ENVIRON.get(var)
        return None if value is None else builtins.str(value)

    def str(self, var: builtins.str, default: Any = "", multiline: builtins.bool = False) -> builtins.str:
        raw = self._raw(var)
        return default if raw is None else raw

    def bool(self, var: builtins.str, default: Any = environ.Env.NOTSET) -> builtins.bool:
        raw = self._raw(var)
        if raw is None or raw == "":
            return self._default(var, default)
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ImproperlyConfigured(f"{var} must be true or false, not {raw!r}")

    def int(self, var: builtins.str, default: Any = environ.Env.NOTSET) -> builtins.int:
        raw = self._raw(var)
        if raw is None or raw == "":
            return self._default(var, default)
        try:
            return self.parse_value(raw, builtins.int)
        except ValueError:
            raise ImproperlyConfigured(f"{var} must be an integer, not {raw!r}") from None

    def list(
        self, var: builtins.str, cast: Any = None, default: Any = environ.Env.NOTSET
    ) -> builtins.list[builtins.str]:
        raw = self._raw(var)
        if raw is None:
            return self._default(var, default)
        return [item.strip() for item in raw.split(",") if item.strip()]

    def _default(self, var: builtins.str, default: Any) -> Any:
        if default is self.NOTSET:
            raise ImproperlyConfigured(f"Set the {var} environment variable")
        return default


env = Env()
