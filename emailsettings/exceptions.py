"""Errors of the email module, one small hierarchy (in the manner of ``anymail.exceptions``).

- :class:`DeliveryError` and its subclasses carry ``failure``, an
  :class:`emailsettings.failures.Failure` (phase, reply code, enhanced code, error class and
  the server's reply with secrets removed). Which subclass is raised tells the caller what to
  do: retry later (:class:`TemporaryDeliveryError`), give up on this message
  (:class:`PermanentDeliveryError`), stop using the mailbox until the practitioner fixes it
  (:class:`MailboxConfigurationError`), or never re-send silently because the message may
  already have gone out (:class:`UnknownOutcomeError`).
- :class:`DestinationRefused` is a ``ValidationError``: a form can show it as it is.
- :class:`ActionNotAllowed` and :class:`RateLimited` are for user actions refused by policy.
- :class:`DecryptionError`: a stored secret no configured key decrypts.
- :class:`ImapError`: the mailbox could not be read (a short reason, no secrets).
- The SMTP session's own refusals (:class:`SecurityMismatch`, :class:`AuthUnavailable`,
  :class:`AddressUnsupported`, :class:`StarttlsMissing`) are ``smtplib`` exceptions, so the
  classifier (:mod:`emailsettings.mailbox.classify`) reads them like the library's.

Raise them with ``raise … from err`` so the original cause stays in the traceback.
"""

from __future__ import annotations

import smtplib
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from emailsettings.failures import Failure


class EmailSettingsError(Exception):
    """Base class of every error raised on purpose by the email module."""


class DeliveryError(EmailSettingsError):
    """Talking to a mail server failed; ``failure`` says where and how."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"{failure.phase}: {failure.error_class} {failure.reply}".strip())

    @staticmethod
    def for_failure(failure: Failure) -> DeliveryError:
        """The exception matching a classified failure (see the module docstring)."""
        if failure.after_data:
            return UnknownOutcomeError(failure)
        if failure.is_configuration_error:
            return MailboxConfigurationError(failure)
        if failure.is_temporary:
            return TemporaryDeliveryError(failure)
        return PermanentDeliveryError(failure)


class TemporaryDeliveryError(DeliveryError):
    """4xx replies, timeouts, dropped connections: retry later with backoff."""


class PermanentDeliveryError(DeliveryError):
    """5xx replies for this message (recipient unknown, content refused): do not retry."""


class MailboxConfigurationError(PermanentDeliveryError):
    """The practitioner's mailbox settings are wrong (credentials, sender, TLS, host): hold
    its queue and tell the practitioner what to change."""


class UnknownOutcomeError(DeliveryError):
    """The message data was sent but no reply came: it may have been accepted. Never
    re-send it without the practitioner's explicit choice."""


class LeaseLost(EmailSettingsError):
    """The row this attempt claimed was handed to another worker meanwhile (its lease ran
    out: a paused process, a slow server): this attempt must not send its message."""


class DestinationRefused(EmailSettingsError, ValidationError):
    """The SMTP host or port is not allowed (non-public address, blocked port), or the host
    name does not resolve (``code="host_not_found"``)."""


class ActionNotAllowed(EmailSettingsError, ValueError):
    """A report action (resend, retry, reactivate) is not allowed in the row's state."""


class AddressUnchanged(ActionNotAllowed):
    """The address a permanent recipient failure refused would be used again as it was: it
    is corrected first (or reactivated, when suspended), never retried blindly."""


class RateLimited(EmailSettingsError):
    """Too many attempts of a user action; ``message`` is Italian text for the page."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)


class OAuthFlowError(EmailSettingsError):
    """ "Accedi con Google / Microsoft" did not complete (refused, expired, tampered, the
    provider unreachable); ``str(exc)`` is Italian text for the page, never a token."""


class InvalidRecipient(EmailSettingsError, ValueError):
    """The invoice cannot be emailed to its patient (no address, or not a valid one);
    ``str(exc)`` is Italian text for the page."""


class DecryptionError(ValueError):
    """No configured key decrypts the token (the key that encrypted it was dropped, the
    stored value is corrupted, or it belongs to another owner or purpose). The message never
    contains the token or the secret."""


class ImapError(Exception):
    """The mailbox could not be read; ``str()`` is a short reason without secrets."""


class SecurityMismatch(smtplib.SMTPException):
    """STARTTLS was chosen on a port that speaks implicit TLS: the server waits for a TLS
    handshake while the client waits for its greeting."""


class AuthUnavailable(smtplib.SMTPNotSupportedError):
    """The server offers no AUTH mechanism the product uses (wrong server or port)."""


class AddressUnsupported(smtplib.SMTPException):
    """An address with a non-ASCII local part, and the server does not offer SMTPUTF8."""

    # Which command the address was for ("mail": the sender, "rcpt": a recipient).
    phase = "rcpt"


class StarttlsMissing(smtplib.SMTPNotSupportedError):
    """The server does not offer STARTTLS although the mailbox is set to use it."""
