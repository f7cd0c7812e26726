"""System checks for the email module's configuration."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Warning, register


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


@register()
def check_personal_smtp_guard(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """In production the personal-SMTP guard must be on and the local test server off."""
    from django.conf import settings

    from . import conf

    if getattr(settings, "DJANGO_ENV", "development") != "production":
        return []
    errors: list[Error] = []
    if conf.allow_private_smtp_hosts():
        errors.append(
            Error(
                "EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS is on in production.",
                hint="Turn it off: personal SMTP connections to loopback or private "
                "addresses must be refused.",
                id="emailsettings.E003",
            )
        )
    if conf.local_test_server() is not None:
        errors.append(
            Error(
                "EMAILSETTINGS_LOCAL_TEST_SERVER is set in production.",
                hint='The "Server di test locale" preset is for development only.',
                id="emailsettings.E004",
            )
        )
    return errors


@register(deploy=True)
def check_smart_mail_backend(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Smart Mail needs a real ESP in production, and its tracking webhooks a secret."""
    from django.conf import settings

    if getattr(settings, "DJANGO_ENV", "development") != "production":
        return []
    warnings: list[Warning] = []
    backend = str(getattr(settings, "EMAIL_BACKEND", ""))
    if not backend.startswith("anymail."):
        warnings.append(
            Warning(
                f"Smart Mail uses {backend}, not an ESP.",
                hint="Set EMAIL_BACKEND to an anymail backend (e.g. "
                "anymail.backends.postmark.EmailBackend) and its API key.",
                id="emailsettings.W001",
            )
        )
    elif not getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET"):
        warnings.append(
            Warning(
                "ANYMAIL_WEBHOOK_SECRET is not set: tracking webhooks would be unauthenticated.",
                hint="Set it to 'user:password' and configure the same in the ESP's webhook URL.",
                id="emailsettings.W002",
            )
        )
    return warnings
