"""System checks for the email module's configuration."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from emailsettings import conf
from emailsettings.mailbox.oauth import ENDPOINT_NAMES, PROVIDERS
from psicogest.celery import app as celery_app


@register()
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every key in EMAILSETTINGS_ENCRYPTION_KEYS must be a valid Fernet key."""
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
    if conf.local_test_oauth_server() is not None:
        errors.append(
            Error(
                "EMAILSETTINGS_LOCAL_OAUTH_SERVER is set in production.",
                hint='The "provider di prova" is for development only.',
                id="emailsettings.E013",
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


@register()
def check_oauth_providers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """ "Accedi con Google / Microsoft": each provider needs both halves of its app, and a
    configured one the public redirect base URL (HTTPS in production)."""
    from django.conf import settings

    production = getattr(settings, "DJANGO_ENV", "development") == "production"
    found: list[CheckMessage] = []
    configured = []
    for provider in PROVIDERS:
        prefix = provider.key.upper()
        client_id, client_secret = conf.oauth_client(provider.key)
        if client_id and client_secret:
            configured.append(provider)
        elif client_id or client_secret:
            missing = f"{prefix}_OAUTH_CLIENT_SECRET" if client_id else f"{prefix}_OAUTH_CLIENT_ID"
            found.append(
                Warning(
                    f'{missing} is empty: "{provider.button}" is not offered.',
                    hint=f"Set both {prefix}_OAUTH_CLIENT_ID and {prefix}_OAUTH_CLIENT_SECRET "
                    "from the app registered for PsicoGest (README, OAuth section).",
                    id="emailsettings.W010",
                )
            )
        if production and client_id:
            for name in ENDPOINT_NAMES:
                url = provider.endpoint(name)
                if name != "issuer" and url and not url.startswith("https://"):
                    found.append(
                        Error(
                            f"The {provider.key} OAuth {name} is not HTTPS: {url}",
                            hint="Remove the override from EMAILSETTINGS_OAUTH_ENDPOINTS.",
                            id="emailsettings.E011",
                        )
                    )
    base = conf.oauth_redirect_base_url()
    if configured and not base:
        found.append(
            Warning(
                "EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL is empty: the providers cannot send "
                "the practitioner back.",
                hint="Set it to the public origin, e.g. https://app.psicogest.it; register "
                "<origin>/email/impostazioni/smtp/accedi-ritorno/ as the redirect URI.",
                id="emailsettings.W012",
            )
        )
    elif configured and production and not base.startswith("https://"):
        found.append(
            Error(
                "EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL is not HTTPS in production.",
                hint="Google and Microsoft accept only HTTPS redirect URIs outside localhost.",
                id="emailsettings.E012",
            )
        )
    return found


# Above the send task's hard time limit: a worker still inside its time can never lose its
# row to the sweeper (the fence stops a late send anyway, but then the attempt is wasted).
LEASE_MARGIN_SECONDS = 30


@register()
def check_lease_outlives_the_task(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    limit = float(celery_app.conf.task_time_limit or 0)
    if limit and conf.lease_seconds() < limit + LEASE_MARGIN_SECONDS:
        return [
            Error(
                f"EMAILSETTINGS_LEASE_SECONDS ({conf.lease_seconds():g}) is shorter than the "
                f"send task's time limit ({limit:g} s) plus {LEASE_MARGIN_SECONDS} s.",
                hint="A row would be handed to another worker while its first one still "
                "works on it: raise EMAILSETTINGS_LEASE_SECONDS.",
                id="emailsettings.E014",
            )
        ]
    return []
