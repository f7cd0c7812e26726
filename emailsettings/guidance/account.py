"""Advice about the practitioner's own mailbox as it is configured: the port it really uses,
its last error (the card of "Configurazione SMTP personale" and the check results)."""

from __future__ import annotations

import dataclasses

from django.utils.translation import gettext as _

from emailsettings.failures import UNREACHABLE_CLASSES
from emailsettings.guidance import advice
from emailsettings.guidance.base import Advice
from emailsettings.models import Security, SmtpAccount

# The security modes as the pages show them: no port in the label (the port is its own field).
SECURITY_LABELS: dict[str, str] = {
    Security.STARTTLS.value: "STARTTLS",
    Security.SSL.value: "SSL/TLS",
}


def security_label(value: str) -> str:
    return SECURITY_LABELS.get(value, value)


STANDARD_PORTS = (465, 587, 2525)


def _port_step(account: SmtpAccount) -> str:
    if account.port in STANDARD_PORTS:
        return _(
            "Controlla che il tuo provider indichi la porta %(port)s con %(security)s: di "
            "solito è 587 con STARTTLS o 465 con SSL/TLS."
        ) % {"port": account.port, "security": security_label(account.security)}
    return _(
        "La porta %(port)s non è una porta per la posta in uscita: usa la 587 (STARTTLS) o "
        "la 465 (SSL/TLS)."
    ) % {"port": account.port}


def mailbox_advice(
    account: SmtpAccount,
    *,
    error_class: str,
    code: int | None,
    enhanced: str | None,
    reply: str,
) -> Advice:
    """``guidance.advice`` for the practitioner's mailbox, about the port it really uses:
    the advice that port 25 is often blocked is only for port 25, any other port is named."""
    tip = advice(
        error_class=error_class,
        preset_key=account.preset,
        code=code,
        enhanced=enhanced,
        reply=reply,
        port=25 if account.port == 25 else None,
    )
    if error_class in UNREACHABLE_CLASSES and account.port != 25:
        tip = dataclasses.replace(tip, steps=(*tip.steps, _port_step(account)))
    return tip


def last_error_advice(account: SmtpAccount | None) -> Advice | None:
    if account is None or not account.last_error:
        return None
    error = account.last_error
    return mailbox_advice(
        account,
        error_class=str(error.get("error_class") or "unknown"),
        code=error.get("code"),
        enhanced=error.get("enhanced") or None,
        reply=str(error.get("reply") or ""),
    )
