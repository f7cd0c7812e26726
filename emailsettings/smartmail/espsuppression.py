"""Clearing an address from the ESP's own suppression list when the practitioner reactivates
it: the ESP stops mailing an address that hard-bounced on its side too, so reactivating it
only in PsicoGest would leave the next invoice dropped by the ESP.

Only hard bounces are cleared: an address that complained stays suppressed at the ESP (the
recipient asked not to be mailed; Postmark does not even allow it). Each ESP with an API for
it is one frozen entry of :data:`ESP_APIS`; an ESP without one (or one not supported here)
gives :attr:`Outcome.NOT_SUPPORTED` and the page says so. The calls use the API key anymail
already has (``ANYMAIL``), a short timeout, and never log the key or the address.

To add an ESP: an entry with its anymail backend module, its label and a ``remove`` that
issues the API call (raise :class:`requests.RequestException` on failure); then a case in
``tests/emailsettings/smartmail/test_espsuppression.py`` against the local stand-in.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from emailsettings import conf

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
# Postmark's default transactional stream: invoices carry no stream of their own.
POSTMARK_STREAM = "outbound"


class Outcome(enum.Enum):
    CLEARED = "cleared"
    NOT_SUPPORTED = "not_supported"
    FAILED = "failed"
    # No ESP behind Smart Mail (development's .eml files): nothing to clear.
    NO_ESP = "no_esp"


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def _check(response: requests.Response, *, missing_ok: bool = True) -> None:
    # 404: the ESP holds no suppression for the address — already what was wanted.
    if missing_ok and response.status_code == 404:
        return
    response.raise_for_status()


def _postmark(address: str, anymail: dict[str, Any]) -> None:
    base = anymail.get("POSTMARK_API_URL") or "https://api.postmarkapp.com/"
    response = requests.post(
        _url(base, f"message-streams/{POSTMARK_STREAM}/suppressions/delete"),
        json={"Suppressions": [{"EmailAddress": address}]},
        headers={
            "Accept": "application/json",
            "X-Postmark-Server-Token": str(anymail.get("POSTMARK_SERVER_TOKEN", "")),
        },
        timeout=TIMEOUT_SECONDS,
    )
    _check(response, missing_ok=False)
    for result in response.json().get("Suppressions", []):
        if str(result.get("Status", "")).lower() == "failed":
            raise requests.HTTPError("Postmark refused the reactivation")


def _sendgrid(address: str, anymail: dict[str, Any]) -> None:
    base = anymail.get("SENDGRID_API_URL") or "https://api.sendgrid.com/v3/"
    response = requests.delete(
        _url(base, f"suppression/bounces/{quote(address, safe='@')}"),
        headers={"Authorization": f"Bearer {anymail.get('SENDGRID_API_KEY', '')}"},
        timeout=TIMEOUT_SECONDS,
    )
    _check(response)


def _mailgun(address: str, anymail: dict[str, Any]) -> None:
    base = anymail.get("MAILGUN_API_URL") or "https://api.mailgun.net/v3"
    domain = anymail.get("MAILGUN_SENDER_DOMAIN") or conf.platform_from().rpartition("@")[2]
    response = requests.delete(
        _url(base, f"{quote(domain)}/bounces/{quote(address, safe='@')}"),
        auth=("api", str(anymail.get("MAILGUN_API_KEY", ""))),
        timeout=TIMEOUT_SECONDS,
    )
    _check(response)


def _brevo(address: str, anymail: dict[str, Any]) -> None:
    base = anymail.get("BREVO_API_URL") or "https://api.brevo.com/v3/"
    response = requests.delete(
        _url(base, f"smtp/blockedContacts/{quote(address, safe='@')}"),
        headers={"api-key": str(anymail.get("BREVO_API_KEY", "")), "Accept": "application/json"},
        timeout=TIMEOUT_SECONDS,
    )
    _check(response)


@dataclass(frozen=True)
class EspApi:
    """An ESP Smart Mail may send through, and how its suppression of an address is lifted
    (``None``: not from here)."""

    backend_module: str
    label: str
    remove: Callable[[str, dict[str, Any]], None] | None


ESP_APIS: tuple[EspApi, ...] = (
    EspApi("anymail.backends.postmark", "Postmark", _postmark),
    EspApi("anymail.backends.sendgrid", "SendGrid", _sendgrid),
    EspApi("anymail.backends.mailgun", "Mailgun", _mailgun),
    EspApi("anymail.backends.brevo", "Brevo", _brevo),
    EspApi("anymail.backends.sendinblue", "Brevo", _brevo),
    EspApi("anymail.backends.amazon_ses", "Amazon SES", None),
)


def current_esp() -> EspApi | None:
    """The ESP behind Smart Mail, from ``EMAIL_BACKEND``; None without an anymail ESP."""
    backend = conf.email_backend()
    for api in ESP_APIS:
        if backend.startswith(api.backend_module + "."):
            return api
    if backend.startswith("anymail.backends.") and not backend.startswith("anymail.backends.test."):
        return EspApi(backend.split(".")[2], backend.split(".")[2], None)
    return None


@dataclass(frozen=True)
class Cleared:
    outcome: Outcome
    esp_label: str = ""


def clear_bounce(*, address: str) -> Cleared:
    """Lift the ESP's suppression of ``address`` after a hard bounce."""
    api = current_esp()
    if api is None:
        return Cleared(Outcome.NO_ESP)
    if api.remove is None:
        return Cleared(Outcome.NOT_SUPPORTED, api.label)
    try:
        api.remove(address.strip().lower(), conf.anymail_settings())
    except (requests.RequestException, ValueError) as err:
        logger.warning("Clearing a suppression at %s failed: %s", api.label, type(err).__name__)
        return Cleared(Outcome.FAILED, api.label)
    return Cleared(Outcome.CLEARED, api.label)
