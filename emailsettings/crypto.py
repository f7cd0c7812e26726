"""Encryption of stored secrets (the personal mailbox password).

The keys come from ``EMAILSETTINGS_ENCRYPTION_KEYS``, newest first: the first key encrypts,
every key decrypts (``cryptography``'s MultiFernet). To rotate: put a new key first, run
``python manage.py rotate_email_keys`` (re-encrypts every stored secret with it), then drop
the old key. The MultiFernet is cached and rebuilt when the setting changes (tests use
``override_settings``), the way ``django.contrib.auth.hashers`` caches its hashers.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from . import conf

SETTING_NAME = "EMAILSETTINGS_ENCRYPTION_KEYS"


class DecryptionError(ValueError):
    """No configured key decrypts the token (the key that encrypted it was dropped, or the
    stored value is corrupted). The message never contains the token or the secret."""


@functools.cache
def _fernet() -> MultiFernet:
    keys = conf.encryption_keys()
    if not keys:
        raise ImproperlyConfigured(f"{SETTING_NAME} is empty: no key to encrypt secrets with.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as err:
        raise ImproperlyConfigured(f"{SETTING_NAME} contains a malformed Fernet key.") from err


@receiver(setting_changed)
def _reset_cache(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING_NAME:
        _fernet.cache_clear()


def encrypt(text: str) -> str:
    """Encrypt ``text`` with the newest key; returns an ASCII token."""
    return _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a token made by :func:`encrypt` with any configured key."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as err:
        raise DecryptionError(
            f"None of the keys in {SETTING_NAME} decrypts this secret: was a key dropped "
            "before running `manage.py rotate_email_keys`?"
        ) from err


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the newest key (it must decrypt with one of the keys)."""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as err:
        raise DecryptionError(
            f"None of the keys in {SETTING_NAME} decrypts this secret, so it cannot be rotated."
        ) from err


def mask(text: str) -> str:
    """A display form of a secret that reveals nothing but its presence."""
    return "••••" if text else ""
