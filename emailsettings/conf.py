"""Module settings, read at call time (never at import) so tests can override them."""

from __future__ import annotations

from django.conf import settings


def encryption_keys() -> list[str]:
    return [key for key in getattr(settings, "EMAILSETTINGS_ENCRYPTION_KEYS", []) if key]


def allow_private_smtp_hosts() -> bool:
    return bool(getattr(settings, "EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS", False))


def smtp_extra_ca_file() -> str:
    return str(getattr(settings, "EMAILSETTINGS_SMTP_EXTRA_CA_FILE", "") or "")


def local_test_server() -> dict | None:
    return getattr(settings, "EMAILSETTINGS_LOCAL_TEST_SERVER", None)


def platform_name() -> str:
    return str(getattr(settings, "EMAILSETTINGS_PLATFORM_NAME", "PsicoGest"))


def platform_from() -> str:
    return str(getattr(settings, "EMAILSETTINGS_PLATFORM_FROM", "fatture@mail.psicogest.test"))
