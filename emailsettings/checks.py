"""System checks for the email module's configuration."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register


@register()
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every key in EMAILSETTINGS_ENCRYPTION_KEYS must be a valid Fernet key."""
    from . import conf

    errors: list[Error] = []
    keys = conf.encryption_keys()
    if not keys:
        errors.append(
            Error(
                "EMAILSETTINGS_ENCRYPTION_KEYS is empty.",
                hint="Set it to one or more Fernet keys, newest first, comma-separated.",
                id="emailsettings.E001",
            )
        )
    from cryptography.fernet import Fernet

    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"EMAILSETTINGS_ENCRYPTION_KEYS item {index + 1} is not a valid Fernet key.",
                    hint="Generate one with: python -c 'from cryptography.fernet import "
                    "Fernet; print(Fernet.generate_key().decode())'",
                    id="emailsettings.E002",
                )
            )
    return errors
