"""The two ways a delivery leaves: Smart Mail (the platform's ESP through its Django email
backend) and the practitioner's own mailbox over SMTP.

A sender reports facts and never touches the database: each ``send`` returns
:class:`Accepted` (what the server said) or a :class:`~emailsettings.failures.Failure`;
the lifecycle decides the row's status. ``SmtpSender`` keeps one connection open for a
whole batch of one practitioner's deliveries and paces itself with the mailbox's token
bucket (:class:`emailsettings.limits.TokenBucket`).

To add a channel: a class that satisfies :class:`Sender`, chosen in ``worker._Senders``.
"""

from __future__ import annotations

import functools
import logging
import re
import smtplib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
)
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.module_loading import import_string
from urllib3.exceptions import NewConnectionError

from emailsettings import conf
from emailsettings.covermail.message import message_bytes
from emailsettings.exceptions import DeliveryError, LeaseLost
from emailsettings.failures import Accepted, ErrorClass, Failure
from emailsettings.limits import TokenBucket
from emailsettings.mailbox import smtp
from emailsettings.mailbox import transaction as smtpsend
from emailsettings.mailbox.classify import enhanced_code
from emailsettings.mailbox.presets import get_preset
from emailsettings.models import Phase
from emailsettings.outbox import sentcopy, telemetry
from emailsettings.outbox.blips import BLIP_ERRORS, through_blips
from psicogest.files import is_disk_error

if TYPE_CHECKING:
    from emailsettings.models import Delivery, SmtpAccount

logger = logging.getLogger(__name__)

PhaseCallback = Callable[[str], None]


#: A message ready for a sender's ``send``: what its ``prepare`` made of it.
Prepared = EmailMultiAlternatives | bytes


class Sender(Protocol):
    def pace(self) -> float:
        """Seconds to wait before the next message may go out (0.0: go now)."""

    def prepare(self, message: EmailMultiAlternatives) -> Prepared:
        """The message as ``send`` takes it, made before the row is claimed (building it is
        most of a message's work, and nothing of it reaches the server)."""

    def start_phase(self) -> str:
        """The phase the next ``send`` reaches before any of it leaves this process: the row
        is claimed at that phase, with no separate write for it. "data_sent" when the next
        message goes out in the first write (an open session that pipelines, an open ESP
        connection)."""

    def send(
        self, delivery: Delivery, message: Prepared, *, on_phase: PhaseCallback
    ) -> Accepted | Failure:
        """Send one prepared message; ``on_phase`` is told each phase reached,
        "data_sent" just before the message can reach the server."""

    def close(self) -> None: ...


def _reply_text(reply: Any) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return re.sub(r"\s+", " ", str(reply or "")).strip()[:1000]


# --- Smart Mail ----------------------------------------------------------------------------


def _request_may_have_arrived(err: BaseException) -> bool:
    """For an ESP API error without a status code: ``False`` only when the connection was
    never made (so the ESP cannot have the message); a read timeout or a dropped answer
    means it may have gone out."""
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(err, requests.exceptions.ConnectionError):
        seen: BaseException | None = err
        for _depth in range(6):
            if seen is None:
                break
            reason = getattr(seen, "reason", None)
            if isinstance(seen, NewConnectionError) or isinstance(reason, NewConnectionError):
                return False
            nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
            seen = nested or seen.__cause__ or seen.__context__
    return True


def _retry_after(err: Any) -> float | None:
    response = getattr(err, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except (TypeError, ValueError):
        return None


def esp_failure(err: BaseException) -> Failure:
    """The failure an anymail exception stands for (see the module docstring)."""
    text = _reply_text(err.args[0] if err.args else type(err).__name__)
    if isinstance(err, AnymailRecipientsRefused | AnymailInvalidAddress):
        return Failure(phase=Phase.DATA, error_class=ErrorClass.ESP_REJECTED, reply=text)
    if isinstance(err, AnymailAPIError):
        code = err.status_code
        esp = getattr(err, "esp_name", None) or "ESP"
        reply = f"{esp} API {code or '-'}: {text}"[:500]
        if code is None:
            if _request_may_have_arrived(err):
                return Failure(
                    phase=Phase.DATA_SENT,
                    error_class=ErrorClass.UNKNOWN,
                    reply=reply,
                    after_data=True,
                )
            return Failure(
                phase=Phase.CONNECT, error_class=ErrorClass.CONNECTION_FAILED, reply=reply
            )
        if code == 429:
            return Failure(
                phase=Phase.DATA,
                error_class=ErrorClass.RATE_LIMITED,
                code=code,
                reply=reply,
                retry_after=_retry_after(err),
            )
        if code >= 500:
            return Failure(
                phase=Phase.DATA, error_class=ErrorClass.TEMPORARY, code=code, reply=reply
            )
        return Failure(
            phase=Phase.DATA, error_class=ErrorClass.ESP_REJECTED, code=code, reply=reply
        )
    return Failure(phase=Phase.DATA, error_class=ErrorClass.INTERNAL_ERROR, reply=text)


class SmartMailSender:
    """Sends through the platform's configured Django email backend (an anymail ESP in
    production, ``.eml`` files in the embedded default), paced by the practitioner's
    ``bucket`` when given (:func:`emailsettings.limits.smart_mail_bucket`)."""

    def __init__(self, *, bucket: TokenBucket | None = None) -> None:
        self.connection = import_string(settings.EMAIL_BACKEND)()
        self.opened = False
        self.bucket = bucket

    def pace(self) -> float:
        return self.bucket.wait_time() if self.bucket is not None else 0.0

    def open(self) -> bool:
        """Open the backend's session before the first send (anymail's ``requests``
        session: no request is made), so that every claim records ``data_sent`` itself and
        the sends may run in other threads without touching the database. ``False`` when
        it cannot: the first send opens it and reports why."""
        if not self.opened:
            try:
                self.connection.open()
            except Exception:  # noqa: BLE001 (the first send meets it again and records it)
                return False
            self.opened = True
        return True

    def prepare(self, message: EmailMultiAlternatives) -> Prepared:
        return message

    def start_phase(self) -> str:
        return Phase.DATA_SENT if self.opened else Phase.CONNECT

    def send(
        self, delivery: Delivery, message: Prepared, *, on_phase: PhaseCallback
    ) -> Accepted | Failure:
        if isinstance(message, bytes):
            raise TypeError("Smart Mail sends the message object, not its bytes")
        # Only the delivery id travels to the ESP: no patient data in metadata or tags.
        message.metadata = {"delivery_id": str(delivery.pk)}  # type: ignore[attr-defined]
        message.tags = ["invoice"]  # type: ignore[attr-defined]
        message.track_opens = False  # type: ignore[attr-defined]
        message.track_clicks = False  # type: ignore[attr-defined]
        message.connection = self.connection
        try:
            if not self.opened:
                on_phase(Phase.CONNECT)
                self.connection.open()
                self.opened = True
            on_phase(Phase.DATA_SENT)
            started = time.monotonic()
            sent = self.connection.send_messages([message])
            telemetry.record_esp_answer(time.monotonic() - started)
        except AnymailError as err:
            return esp_failure(err)
        except OSError as err:
            if is_disk_error(err):
                # This machine's disk refused the message (the development backend writes
                # files, whole or not at all): nothing left, it is retried.
                return Failure(
                    phase=Phase.DATA_SENT,
                    error_class=ErrorClass.LOCAL_STORAGE,
                    reply=_reply_text(f"{type(err).__name__}: {err.strerror or err}"),
                )
            # The backend could not reach the ESP (an anymail backend raises AnymailError).
            return Failure(
                phase=Phase.CONNECT,
                error_class=ErrorClass.CONNECTION_FAILED,
                reply=_reply_text(f"{type(err).__name__}: {err}"),
            )
        status = getattr(message, "anymail_status", None)
        esp_id = ""
        if status is not None:
            if status.status and status.status <= {"rejected", "invalid"}:
                return Failure(
                    phase=Phase.DATA_SENT,
                    error_class=ErrorClass.ESP_REJECTED,
                    reply="rejected by the platform sender",
                )
            esp_id = "" if status.message_id is None else str(status.message_id)
        if not sent:
            return Failure(
                phase=Phase.DATA, error_class=ErrorClass.TEMPORARY, reply="not sent by the backend"
            )
        return Accepted(esp_message_id=esp_id[:255])

    def close(self) -> None:
        if self.opened:
            try:
                self.connection.close()
            finally:
                self.opened = False


# --- personal SMTP -------------------------------------------------------------------------


class SmtpSender:
    """One SMTP session for a batch of one practitioner's deliveries.

    The connection (guarded: TLS verified, authenticated, destination checked) comes from
    :func:`emailsettings.mailbox.smtp.connection_for`; it is opened on the first message and reused
    until the batch ends or the server drops it. MAIL, RCPT and DATA go in one write when the
    server offers PIPELINING (:func:`~emailsettings.mailbox.transaction.pipelined_envelope`),
    one by one otherwise; the
    message data goes only after the server's 354, so the moment it leaves — after which a
    lost reply means "maybe sent" — is known exactly and recorded before it happens.
    """

    def __init__(self, *, account: SmtpAccount) -> None:
        self.account = account
        self.preset_key = account.preset
        self.connection: smtplib.SMTP | None = None
        self.sessions_opened = 0
        rate = conf.smtp_rate_limit_per_minute()
        if rate <= 0:
            preset = get_preset(account.preset)
            rate = float(preset.rate_limit_per_minute) if preset else 20.0
        self.bucket = TokenBucket(key=f"smtp:{account.pk}", rate_per_minute=rate)

    @property
    def session_open(self) -> bool:
        return self.connection is not None

    def pace(self) -> float:
        return self.bucket.wait_time()

    def prepare(self, message: EmailMultiAlternatives) -> Prepared:
        return message_bytes(message)

    def start_phase(self) -> str:
        if self.connection is None:
            return Phase.CONNECT
        if self.connection.has_extn("pipelining") and conf.smtp_pipelining():
            # MAIL, RCPT and DATA leave in one write (see mailbox.transaction.send_message).
            return Phase.DATA_SENT
        return Phase.MAIL

    def send(
        self, delivery: Delivery, message: Prepared, *, on_phase: PhaseCallback
    ) -> Accepted | Failure:
        data = message if isinstance(message, bytes) else message_bytes(message)

        def phase_reached(phase: str) -> None:
            # "data" is reported before the DATA command: from there a lost reply means the
            # server may have accepted the message, so it must never be re-sent silently.
            on_phase(Phase.DATA_SENT if phase == Phase.DATA else phase)

        for attempt in (1, 2):
            reused = self.connection is not None
            try:
                if self.connection is None:
                    self.connection = smtp.connection_for(
                        self.account,
                        timeout=conf.smtp_send_timeout_seconds(),
                        on_phase=phase_reached,
                    )
                    self.sessions_opened += 1
                reply = smtpsend.send_message(
                    self.connection,
                    message=data,
                    from_addr=self.account.email,
                    to_addrs=[delivery.recipient],
                    on_phase=phase_reached,
                    preset_key=self.preset_key,
                )
            except LeaseLost:
                # The row is another worker's now: leave without DATA (no RSET either; the
                # session may be mid-transaction), the next message opens a new one.
                self._drop()
                raise
            except DeliveryError as err:
                failure = err.failure
                if attempt == 1 and reused and failure.phase == Phase.MAIL and failure.code is None:
                    # The server closed the idle connection between two messages.
                    self._drop()
                    continue
                if failure.ends_session or failure.code is None:
                    # No reply, or a failure before the session was ready: it is unusable.
                    self._drop()
                return failure
            self._keep_sent_copy(delivery, data)
            return Accepted(
                reply=_reply_text(reply.reply),
                code=reply.code,
                enhanced=enhanced_code(reply.reply),
            )
        raise AssertionError("unreachable")

    def _keep_sent_copy(self, delivery: Delivery, data: bytes) -> None:
        """The Sent copy of an accepted message. A nicety: a database that stays away loses
        the copy (logged), never the acceptance (the row must not become "unknown")."""
        try:
            through_blips(
                functools.partial(sentcopy.keep, self.account, delivery.pk, data),
                what="a Sent copy",
            )
        except BLIP_ERRORS as err:
            logger.warning("Sent copy of delivery %s not kept: %s", delivery.pk, type(err).__name__)

    def _drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except OSError:
                pass

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()
