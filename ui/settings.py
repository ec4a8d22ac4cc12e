"""Who may use the dashboard, and what it links to: the profile's ``ui:`` section and
the SYSTEMPROMPT_UI_* environment variables (which win)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from jobs_core.errors import ConfigError
from jobs_core.profile import Profile

USER_ENV = "SYSTEMPROMPT_UI_USER"
PASSWORD_ENV = "SYSTEMPROMPT_UI_PASSWORD"
READONLY_USER_ENV = "SYSTEMPROMPT_UI_READONLY_USER"
READONLY_PASSWORD_ENV = "SYSTEMPROMPT_UI_READONLY_PASSWORD"
FLOWER_URL_ENV = "SYSTEMPROMPT_FLOWER_URL"


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    can_act: bool  # False: a read-only user, who sees everything and changes nothing


@dataclass(frozen=True)
class UiSettings:
    accounts: tuple[Account, ...]
    flower_url: str | None

    def find(self, name: str) -> Account | None:
        for account in self.accounts:
            if account.name == name:
                return account
        return None


def _pair(
    user: str | None, password: str | None, user_key: tuple[str, str], password_key: tuple[str, str]
) -> tuple[str, str] | None:
    """``(user, password)``, None when neither is set; half a pair is an error."""
    if not user and not password:
        return None
    if not user or not password:
        env_var, profile_key = user_key if not user else password_key
        raise ConfigError(
            f"the dashboard account has no {'user' if not user else 'password'}: "
            f"set {env_var} (or {profile_key} in the profile)"
        )
    return user, password


def load_settings(profile: Profile, env: Mapping[str, str] | None = None) -> UiSettings:
    """The dashboard's accounts; a :class:`ConfigError` when there is none to log in with."""
    environ = os.environ if env is None else env
    ui = profile.ui

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    admin = _pair(
        environ.get(USER_ENV) or ui.user,
        environ.get(PASSWORD_ENV) or secret(ui.password),
        (USER_ENV, "ui.user"),
        (PASSWORD_ENV, "ui.password"),
    )
    viewer = _pair(
        environ.get(READONLY_USER_ENV) or ui.readonly_user,
        environ.get(READONLY_PASSWORD_ENV) or secret(ui.readonly_password),
        (READONLY_USER_ENV, "ui.readonly_user"),
        (READONLY_PASSWORD_ENV, "ui.readonly_password"),
    )
    accounts = []
    if admin:
        accounts.append(Account(admin[0], admin[1], can_act=True))
    if viewer:
        if admin and viewer[0] == admin[0]:
            raise ConfigError(
                f"the dashboard's read-only user and user are both {viewer[0]!r}: use two names"
            )
        accounts.append(Account(viewer[0], viewer[1], can_act=False))
    if not accounts:
        raise ConfigError(
            "the dashboard needs credentials and has none: set "
            f"{USER_ENV} and {PASSWORD_ENV} (or ui.user and ui.password in the profile); "
            "it never serves pages without authentication"
        )
    flower = environ.get(FLOWER_URL_ENV) or ui.flower_url
    return UiSettings(tuple(accounts), flower.rstrip("/") if flower else None)
