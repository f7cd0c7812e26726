"""The one value that says what went wrong with a delivery or a mailbox check.

Every source produces a :class:`Failure`: the SMTP session
(:func:`emailsettings.mailbox.classify.classify`),
the Smart Mail sender (an ESP API error), the ESP's tracking webhooks, the worker itself (an
unexpected error, a crash) and, later, the mailbox reader. The lifecycle
(:mod:`emailsettings.outbox.lifecycle`) decides the row's status from it, the guidance
(:mod:`emailsettings.guidance`) turns it into Italian advice, the report shows it. It is
stored in ``Delivery.last_error_*`` and ``SmtpAccount.last_error`` (:meth:`Failure.as_dict`).

To add a kind of failure: a member of :class:`ErrorClass`, its place in the sets below
(configuration of the mailbox, temporary, unreachable), and its advice in ``guidance/``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class ErrorClass(models.TextChoices):
    # The practitioner's mailbox must be fixed (its queue is held until then).
    AUTH_FAILED = "auth_failed", _("Credenziali rifiutate")
    AUTH_UNAVAILABLE = "auth_unavailable", _("Il server non offre l'accesso")
    APP_PASSWORD_REQUIRED = "app_password_required", _("Serve una password per le app")
    OAUTH_REQUIRED = "oauth_required", _("Accesso con password non consentito")
    SUSPICIOUS_LOGIN = "suspicious_login", _("Accesso bloccato come sospetto")
    # OAuth: the grant is gone (revoked, expired, password changed): connect again.
    OAUTH_RECONNECT = "oauth_reconnect", _("Account da ricollegare")
    # Microsoft 5.7.139 "SmtpClientAuthentication is disabled": only the IT admin can fix it.
    SMTP_AUTH_DISABLED = "smtp_auth_disabled", _("Invio SMTP disattivato dall'amministratore")
    TLS_FAILED = "tls_failed", _("Errore di sicurezza (TLS)")
    STARTTLS_MISSING = "starttls_missing", _("Impostazione di sicurezza errata")
    CERTIFICATE_INVALID = "certificate_invalid", _("Certificato del server non valido")
    SENDER_REFUSED = "sender_refused", _("Mittente non consentito")
    # The configured host/port is not allowed (private address, blocked port).
    DESTINATION_REFUSED = "destination_refused", _("Server non trovato o non consentito")
    NO_MAILBOX = "no_mailbox", _("Nessuna casella configurata")
    # The server could not be reached: temporary, a mailbox problem only if it lasts.
    CONNECTION_FAILED = "connection_failed", _("Server non raggiungibile")
    HOST_NOT_FOUND = "host_not_found", _("Server non trovato o non consentito")
    TIMEOUT = "timeout", _("Il server non risponde")
    # This message or its recipient (permanent for that message).
    RECIPIENT_REFUSED = "recipient_refused", _("Destinatario rifiutato")
    ADDRESS_UNSUPPORTED = "address_unsupported", _("Indirizzo non supportato dal server")
    MAILBOX_FULL = "mailbox_full", _("Casella del destinatario piena")
    MESSAGE_REJECTED = "message_rejected", _("Messaggio rifiutato")
    # Smart Mail: the ESP's answer or its tracking events.
    ESP_REJECTED = "esp_rejected", _("Rifiutata dal servizio di invio")
    ESP_FAILED = "esp_failed", _("Errore del servizio di invio")
    BOUNCED = "bounced", _("Rimbalzata")
    SOFT_BOUNCE = "soft_bounce", _("Rimbalzo temporaneo")
    COMPLAINED = "complained", _("Segnalata come spam")
    SUPPRESSED = "suppressed", _("Indirizzo sospeso")
    # Waiting and retrying.
    RATE_LIMITED = "rate_limited", _("Troppi invii")
    QUOTA_WAIT = "quota_wait", _("Limite giornaliero di Smart Mail")
    # The practitioner's Smart Mail is suspended for bounces or complaints (reputation).
    REPUTATION_HOLD = "reputation_hold", _("Smart Mail sospeso per rimbalzi o segnalazioni")
    GREYLISTED = "greylisted", _("Invio rimandato dal destinatario")
    TEMPORARY = "temporary", _("Errore temporaneo")
    EXPIRED = "expired", _("Tentativi esauriti")
    # The worker itself.
    INTERNAL_ERROR = "internal_error", _("Errore interno")
    # The platform's own disk refused the message (full, read-only): nothing left.
    LOCAL_STORAGE = "local_storage", _("Disco del servizio pieno")
    WORKER_CRASHED = "worker_crashed", _("Invio interrotto più volte")
    UNKNOWN = "unknown", _("Errore sconosciuto")


CONFIGURATION_CLASSES = frozenset(
    {
        ErrorClass.AUTH_FAILED,
        ErrorClass.AUTH_UNAVAILABLE,
        ErrorClass.APP_PASSWORD_REQUIRED,
        ErrorClass.OAUTH_REQUIRED,
        ErrorClass.SUSPICIOUS_LOGIN,
        ErrorClass.OAUTH_RECONNECT,
        ErrorClass.SMTP_AUTH_DISABLED,
        ErrorClass.TLS_FAILED,
        ErrorClass.STARTTLS_MISSING,
        ErrorClass.CERTIFICATE_INVALID,
        ErrorClass.SENDER_REFUSED,
        ErrorClass.DESTINATION_REFUSED,
        ErrorClass.NO_MAILBOX,
    }
)
UNREACHABLE_CLASSES = frozenset(
    {ErrorClass.CONNECTION_FAILED, ErrorClass.HOST_NOT_FOUND, ErrorClass.TIMEOUT}
)
TEMPORARY_CLASSES = frozenset(
    {
        *UNREACHABLE_CLASSES,
        ErrorClass.RATE_LIMITED,
        ErrorClass.QUOTA_WAIT,
        ErrorClass.GREYLISTED,
        ErrorClass.TEMPORARY,
        ErrorClass.INTERNAL_ERROR,
        ErrorClass.LOCAL_STORAGE,
    }
)
# Failures that say something about the mailbox, not the message: the ones for which the
# practitioner may choose to send a row with Smart Mail instead.
MAILBOX_CLASSES = CONFIGURATION_CLASSES | UNREACHABLE_CLASSES | {ErrorClass.EXPIRED}
# Phases before the first message of a session: a failure there concerns the whole batch.
SESSION_PHASES = frozenset({"", "connect", "tls", "auth"})


@dataclass(frozen=True)
class Failure:
    """What went wrong: where (``phase``), the server's codes, the class, the reply with
    secrets removed, whether the message data had already been sent (``after_data``: it
    may have been accepted), and how long the server asked to wait (``retry_after``)."""

    phase: str
    error_class: str
    reply: str = ""
    code: int | None = None
    enhanced: str = ""
    after_data: bool = False
    retry_after: float | None = None

    @property
    def reply_class(self) -> str:
        """The reply class, 4 or 5 as text (the enhanced code wins, RFC 3463); "" if none."""
        if self.enhanced:
            return self.enhanced[0]
        if self.code:
            return str(self.code)[0]
        return ""

    @property
    def is_configuration_error(self) -> bool:
        """The mailbox itself must be fixed (credentials, sender, TLS, host): hold its queue."""
        return self.error_class in CONFIGURATION_CLASSES and not self.after_data

    @property
    def is_unreachable(self) -> bool:
        """The server could not be reached (refused, unknown host, no answer)."""
        return self.error_class in UNREACHABLE_CLASSES and not self.after_data

    @property
    def is_temporary(self) -> bool:
        """Worth retrying with backoff: 4xx, timeouts, dropped connections. Never true after
        the data was sent (it may have been accepted)."""
        if self.after_data or self.is_configuration_error:
            return False
        if self.error_class in TEMPORARY_CLASSES:
            return True
        return self.reply_class == "4"

    @property
    def ends_session(self) -> bool:
        """The session never became ready: the batch's other messages share the failure."""
        return self.phase in SESSION_PHASES or self.is_configuration_error

    def with_class(self, error_class: str) -> Failure:
        return replace(self, error_class=str(error_class))

    def as_dict(self) -> dict[str, Any]:
        """The JSON stored in ``SmtpAccount.last_error``."""
        data: dict[str, Any] = {
            "phase": self.phase,
            "code": self.code,
            "enhanced": self.enhanced,
            "error_class": self.error_class,
            "reply": self.reply,
        }
        if self.after_data:
            data["after_data"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        code = data.get("code")
        return cls(
            phase=str(data.get("phase", "")),
            code=int(code) if isinstance(code, int) else None,
            enhanced=str(data.get("enhanced", "")),
            error_class=str(data.get("error_class", ErrorClass.UNKNOWN)),
            reply=str(data.get("reply", "")),
            after_data=bool(data.get("after_data", False)),
        )

    def columns(self) -> dict[str, Any]:
        """The ``Delivery.last_error_*`` columns for this failure."""
        return {
            "last_error_class": self.error_class,
            "last_error_code": self.code,
            "last_error_enhanced": self.enhanced[:20],
            "last_error_text": self.reply,
        }


NO_FAILURE_COLUMNS: dict[str, Any] = {
    "last_error_class": "",
    "last_error_code": None,
    "last_error_enhanced": "",
    "last_error_text": "",
}


@dataclass(frozen=True)
class Accepted:
    """The server (or ESP) took the message."""

    reply: str = ""
    code: int | None = None
    enhanced: str = ""
    esp_message_id: str = ""
