"""Encryption of stored secrets (the personal mailbox password, its OAuth tokens, a patient's
PDF password).

The keys come from ``EMAILSETTINGS_ENCRYPTION_KEYS``, newest first: the first key encrypts,
every key decrypts (``cryptography``'s MultiFernet). To rotate: put a new key first, run
``python manage.py rotate_email_keys`` (re-encrypts every stored secret with it), then drop
the old key. The keys are cached and rebuilt when the setting changes (tests use
``override_settings``), the way ``django.contrib.auth.hashers`` caches its hashers.

A stored secret is *bound* to its owner and to what it is for: :func:`encrypt_for` /
:func:`decrypt_for` do not use a configured key directly but one derived from it with
HKDF-SHA256 (RFC 5869), the info string naming the purpose and the owner's id
(``psicogest/smtp-password/42``). Fernet has no associated data, so this is how a ciphertext
copied into another practitioner's row (or into another field) stops decrypting there: it
raises :class:`DecryptionError`, like a token whose key was dropped. Each configured key
gives one derived key, in the same order, so rotation works unchanged.

To store a new kind of secret: add a purpose constant below (lowercase letters, digits and
``-``; never reuse or rename one, it is part of the stored data), call the bound functions
with the row's owner id, and teach ``rotate_email_keys`` and a data migration about the
column. :func:`encrypt` / :func:`decrypt` (unbound) stay for callers that have no owner.
"""

from __future__ import annotations

import base64
import functools
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from emailsettings import conf
from emailsettings.exceptions import DecryptionError

SETTING_NAME = "EMAILSETTINGS_ENCRYPTION_KEYS"

# Purposes: part of every derived key, so part of the stored data.
SMTP_PASSWORD = "smtp-password"
OAUTH_REFRESH_TOKEN = "oauth-refresh-token"
OAUTH_ACCESS_TOKEN = "oauth-access-token"
# Bound to the patient (owner id = the patient's id), not the practitioner.
PATIENT_PDF_PASSWORD = "patient-pdf-password"

_INFO_PREFIX = b"psicogest/"
# No "/" in a purpose: the info string must split back into one (purpose, owner) pair.
_PURPOSE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
# Derived MultiFernets kept for the owners seen most recently (a rotation walks them all).
_BOUND_CACHE_SIZE = 1024


@functools.cache
def _master_keys() -> tuple[bytes, ...]:
    keys = conf.encryption_keys()
    if not keys:
        raise ImproperlyConfigured(f"{SETTING_NAME} is empty: no key to encrypt secrets with.")
    raw: list[bytes] = []
    try:
        for key in keys:
            Fernet(key)  # the validation: 32 bytes, url-safe base64; the raw bytes feed HKDF
            raw.append(base64.urlsafe_b64decode(key))
    except (ValueError, TypeError) as err:
        raise ImproperlyConfigured(f"{SETTING_NAME} contains a malformed Fernet key.") from err
    return tuple(raw)


@functools.cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(base64.urlsafe_b64encode(key)) for key in _master_keys()])


@functools.lru_cache(maxsize=_BOUND_CACHE_SIZE)
def _bound_fernet(owner_id: int, purpose: str) -> MultiFernet:
    info = _INFO_PREFIX + f"{purpose}/{owner_id}".encode("ascii")
    return MultiFernet([Fernet(_derive(key, info)) for key in _master_keys()])


def _derive(key: bytes, info: bytes) -> bytes:
    # The master keys are uniformly random, so HKDF needs no salt (RFC 5869, section 3.1).
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)
    return base64.urlsafe_b64encode(derived)


@receiver(setting_changed)
def _reset_cache(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING_NAME:
        _master_keys.cache_clear()
        _fernet.cache_clear()
        _bound_fernet.cache_clear()


def _binding(owner_id: int, purpose: str) -> MultiFernet:
    # bool is an int: refuse it, and None (an unsaved owner), rather than bind to "True".
    if isinstance(owner_id, bool) or not isinstance(owner_id, int):
        raise TypeError(f"owner_id must be an int, not {type(owner_id).__name__}.")
    if owner_id < 1:
        raise ValueError("owner_id must be the primary key of a saved owner.")
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose):
        raise ValueError(
            "purpose must be lowercase letters, digits and '-' (e.g. 'smtp-password')."
        )
    return _bound_fernet(owner_id, purpose)


def _decryption_error(*, bound: bool) -> DecryptionError:
    if bound:
        return DecryptionError(
            f"None of the keys in {SETTING_NAME} decrypts this secret for this owner: was it "
            "copied from another row, or was a key dropped before running "
            "`manage.py rotate_email_keys`?"
        )
    return DecryptionError(
        f"None of the keys in {SETTING_NAME} decrypts this secret: was a key dropped "
        "before running `manage.py rotate_email_keys`?"
    )


def encrypt(text: str) -> str:
    """Encrypt ``text`` with the newest key; returns an ASCII token (not bound to an owner:
    stored secrets use :func:`encrypt_for`)."""
    return _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a token made by :func:`encrypt` with any configured key."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as err:
        raise _decryption_error(bound=False) from err


def rotate(token: str) -> str:
    """Re-encrypt a :func:`encrypt` token with the newest key (it must decrypt with one)."""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as err:
        raise DecryptionError(
            f"None of the keys in {SETTING_NAME} decrypts this secret, so it cannot be rotated."
        ) from err


def encrypt_for(text: str, *, owner_id: int, purpose: str) -> str:
    """Encrypt ``text`` for one owner and purpose with the newest key; returns an ASCII token
    that only :func:`decrypt_for` with the same ``owner_id`` and ``purpose`` decrypts."""
    return _binding(owner_id, purpose).encrypt(text.encode("utf-8")).decode("ascii")


def decrypt_for(token: str, *, owner_id: int, purpose: str) -> str:
    """Decrypt a token made by :func:`encrypt_for` for this ``owner_id`` and ``purpose``, with
    any configured key; :class:`DecryptionError` for any other owner or purpose."""
    fernet = _binding(owner_id, purpose)
    try:
        return fernet.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as err:
        raise _decryption_error(bound=True) from err


def rotate_for(token: str, *, owner_id: int, purpose: str) -> str:
    """Re-encrypt a :func:`encrypt_for` token with the newest key, still bound to the same
    owner and purpose; :class:`DecryptionError` when no key decrypts it for them."""
    fernet = _binding(owner_id, purpose)
    try:
        return fernet.rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as err:
        raise DecryptionError(
            f"None of the keys in {SETTING_NAME} decrypts this secret for this owner, so it "
            "cannot be rotated."
        ) from err


def mask(text: str) -> str:
    """A display form of a secret that reveals nothing but its presence."""
    return "••••" if text else ""
