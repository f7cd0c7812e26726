"""How a failed SMTP exchange is classified (``smtp-errors.md``): any exception of a session
becomes a :class:`~emailsettings.failures.Failure` — phase, codes, class, the reply with
secrets removed — in :func:`classify`, the one place a reply's wording is read.

To recognise a new provider reply, add a rule to :data:`_REPLY_RULES` (first match wins)
and its advice to :mod:`emailsettings.guidance`.
"""

from __future__ import annotations

import base64
import binascii
import errno
import re
import smtplib
import socket
import ssl
from collections.abc import Iterable

from emailsettings.exceptions import (
    AddressUnsupported,
    AuthUnavailable,
    DestinationRefused,
    SecurityMismatch,
    StarttlsMissing,
)
from emailsettings.failures import ErrorClass, Failure
from emailsettings.mailbox.presets import get_preset

MAX_REPLY_LENGTH = 2000

# The classified failure is the module-wide value of emailsettings.failures.
SmtpFailure = Failure

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_AUTH_LINE = re.compile(r"(?im)^(\s*AUTH\s+[A-Z0-9_-]+)\s+\S+")
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")


def enhanced_code(text: str) -> str:
    """The RFC 3463 enhanced status code in a reply ("5.1.1"), or ""."""
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets (plain or base64) or AUTH initial responses."""
    text = _AUTH_LINE.sub(r"\1 [omesso]", text)
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, "[omesso]")
        encoded = base64.b64encode(secret.encode()).decode()
        text = text.replace(encoded, "[omesso]").replace(encoded.rstrip("="), "[omesso]")

    def blob(match: re.Match[str]) -> str:
        token = match.group(0)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            return token
        # SASL PLAIN is "authzid NUL user NUL password"; XOAUTH2 carries "auth=Bearer".
        if decoded.count(b"\x00") >= 2 or b"auth=Bearer" in decoded:
            return "[omesso]"
        return token

    return _BASE64_TOKEN.sub(blob, text)[:MAX_REPLY_LENGTH]


def _reply_parts(exc: BaseException) -> tuple[int | None, str]:
    """The server's reply code and text carried by ``exc``, or the local error text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        for refused_code, message in exc.recipients.values():
            return int(refused_code), reply_text(message)
        return None, str(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = int(exc.smtp_code) if exc.smtp_code and exc.smtp_code > 0 else None
        return code, reply_text(exc.smtp_error)
    text = str(exc) or exc.__class__.__name__
    return None, text


def reply_text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def is_timeout(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _depth in range(5):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError | socket.timeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# (pattern on the lower-cased reply, phases or None for any, error class)
_REPLY_RULES: tuple[tuple[re.Pattern[str], frozenset[str] | None, str], ...] = tuple(
    (re.compile(pattern), frozenset(phases) if phases else None, error_class)
    for pattern, phases, error_class in (
        # Gmail 534 5.7.9: the account has 2-step verification.
        (
            r"5\.7\.90?\b|application-specific password",
            None,
            ErrorClass.APP_PASSWORD_REQUIRED,
        ),
        # Gmail 534 5.7.14: sign-in from an unknown place blocked as suspicious.
        (
            r"5\.7\.14\b|log ?in (through|via) your web browser|web login required",
            None,
            ErrorClass.SUSPICIOUS_LOGIN,
        ),
        # Microsoft 5.7.139 "SmtpClientAuthentication is disabled for the Tenant": the admin
        # turned SMTP AUTH off, for passwords and OAuth alike.
        (
            r"smtpclientauthentication is disabled|smtp ?auth(entication)? is disabled",
            None,
            ErrorClass.SMTP_AUTH_DISABLED,
        ),
        # Microsoft: basic (password) auth disabled, security defaults.
        (
            r"5\.7\.139\b|5\.7\.30\b|basic authentication is (disabled|not supported)"
            r"|security defaults",
            None,
            ErrorClass.OAUTH_REQUIRED,
        ),
        # Gmail 535 5.7.8: the account password is no longer accepted from apps.
        (
            r"username and password not accepted|5\.7\.80\b",
            None,
            ErrorClass.APP_PASSWORD_REQUIRED,
        ),
        (
            r"must issue a starttls|5\.7\.11\b|encryption required",
            None,
            ErrorClass.STARTTLS_MISSING,
        ),
        # Rate and quota: Gmail 4.7.28 / 5.4.5, Aruba, Legalmail, "too many login attempts".
        (
            r"4\.7\.28\b|5\.4\.5\b|daily user sending limit|sending limit|policy violation"
            r"|too much traffic|too many (login attempts|messages|connections)|rate limit",
            None,
            ErrorClass.RATE_LIMITED,
        ),
        # Microsoft SendAsDenied, sender mismatch (Aruba, PEC), relay refused (Libero).
        (
            r"sendasdenied|5\.2\.252\b|5\.7\.60\b|sender address rejected|not logged in"
            r"|relay (disabled|denied|access denied|not permitted)|relaying denied",
            None,
            ErrorClass.SENDER_REFUSED,
        ),
        # The recipient's domain refused the sender's domain (SPF/DKIM/DMARC).
        (r"5\.7\.26\b|5\.7\.515\b|dmarc", None, ErrorClass.MESSAGE_REJECTED),
        (r"[45]\.2\.2\b|mailbox (is )?full|over quota", None, ErrorClass.MAILBOX_FULL),
        (r"greylist|graylist", None, ErrorClass.GREYLISTED),
    )
)


def classify(exc: BaseException, *, phase: str, preset_key: str | None = None) -> Failure:
    """Classify ``exc`` raised during ``phase`` (connect, tls, auth, mail, rcpt, data,
    data_sent) following ``smtp-errors.md``. The reply is not yet scrubbed of the password:
    :func:`open_connection` and :func:`send_message` do it."""
    after_data = phase == "data_sent"
    code, text = _reply_parts(exc)
    enhanced = enhanced_code(text)
    reply = f"{code} {text}" if code else text

    def failure(error_class: str) -> Failure:
        return Failure(
            phase=phase,
            code=code,
            enhanced=enhanced,
            error_class=str(error_class),
            reply=reply,
            after_data=after_data and error_class == ErrorClass.UNKNOWN,
        )

    if isinstance(exc, DestinationRefused):
        if exc.code == "host_not_found":
            return failure(ErrorClass.HOST_NOT_FOUND)
        if exc.code == "host_lookup_failed":
            return failure(ErrorClass.TEMPORARY)
        return failure(ErrorClass.DESTINATION_REFUSED)
    if code is None:
        return failure(_classify_local(exc, phase=phase))

    lowered = text.lower()
    for pattern, phases, error_class in _REPLY_RULES:
        if (phases is None or phase in phases) and pattern.search(lowered):
            return failure(error_class)

    reply_class = enhanced[0] if enhanced else str(code)[0]
    if phase == "auth":
        if reply_class == "4":
            return failure(ErrorClass.TEMPORARY)
        preset = get_preset(preset_key)
        if code == 535 and preset is not None and preset.app_password_on_535:
            return failure(ErrorClass.APP_PASSWORD_REQUIRED)
        return failure(ErrorClass.AUTH_FAILED)
    if reply_class == "4":
        if phase == "rcpt" and code in (450, 451):
            return failure(ErrorClass.GREYLISTED)
        # 421 4.7.x and other 4.7.x: the provider is throttling this sender.
        if enhanced.startswith("4.7."):
            return failure(ErrorClass.RATE_LIMITED)
        return failure(ErrorClass.TEMPORARY)
    if reply_class == "5":
        if phase == "mail":
            return failure(ErrorClass.SENDER_REFUSED)
        if phase == "rcpt":
            if enhanced.startswith("5.7.") and not enhanced.startswith("5.7.1"):
                return failure(ErrorClass.MESSAGE_REJECTED)
            return failure(ErrorClass.RECIPIENT_REFUSED)
        if phase in ("data", "data_sent"):
            return failure(ErrorClass.MESSAGE_REJECTED)
        if phase == "tls":
            return failure(ErrorClass.TLS_FAILED)
        if phase == "connect":
            return failure(ErrorClass.CONNECTION_FAILED)
    return failure(ErrorClass.UNKNOWN)


def _classify_local(exc: BaseException, *, phase: str) -> str:
    """Errors with no server reply: network, TLS, protocol."""
    if isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(exc, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)
    ):
        return ErrorClass.CERTIFICATE_INVALID
    if isinstance(exc, ssl.CertificateError):
        return ErrorClass.CERTIFICATE_INVALID
    if isinstance(exc, ssl.SSLError):
        return ErrorClass.TLS_FAILED
    if isinstance(exc, SecurityMismatch):
        return ErrorClass.TLS_FAILED
    if isinstance(exc, StarttlsMissing):
        return ErrorClass.STARTTLS_MISSING
    if isinstance(exc, AuthUnavailable):
        return ErrorClass.AUTH_UNAVAILABLE
    if isinstance(exc, AddressUnsupported | UnicodeError):
        return ErrorClass.SENDER_REFUSED if phase == "mail" else ErrorClass.ADDRESS_UNSUPPORTED
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if "starttls" in str(exc).lower():
            return ErrorClass.STARTTLS_MISSING
        return ErrorClass.AUTH_UNAVAILABLE
    if phase == "data_sent":
        return ErrorClass.UNKNOWN
    if is_timeout(exc):
        return ErrorClass.TIMEOUT
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_AGAIN:
            return ErrorClass.TEMPORARY
        return ErrorClass.HOST_NOT_FOUND
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.CONNECTION_FAILED
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionResetError | BrokenPipeError):
        # A TLS handshake the server hangs up on is a security mismatch, not an outage.
        if phase == "tls":
            return ErrorClass.TLS_FAILED
        return ErrorClass.TEMPORARY
    if isinstance(exc, OSError) and exc.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
    ):
        return ErrorClass.CONNECTION_FAILED
    if isinstance(exc, smtplib.SMTPException) and phase == "auth":
        # "No suitable authentication method found."
        return ErrorClass.AUTH_UNAVAILABLE
    if isinstance(exc, OSError):
        return ErrorClass.TEMPORARY
    return ErrorClass.UNKNOWN
