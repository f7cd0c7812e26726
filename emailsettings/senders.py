"""The two ways a delivery leaves: Smart Mail (the platform's ESP through Django's email
backend) and the practitioner's own mailbox over SMTP.

A sender never touches the database itself: it sends one message and returns an
:class:`Outcome` (what the server said, and what the row becomes). The caller
(:mod:`emailsettings.delivery`) claims rows, records phases and outcomes. ``SmtpSender``
keeps one connection open for a whole batch of one practitioner's deliveries and paces
itself with a token bucket per mailbox shared through Redis.

To add a channel: a class with ``send(delivery, message, *, on_data_sent) -> Outcome`` and
``close()``, chosen in ``delivery._sender_for``.
"""

from __future__ import annotations

import logging
import re
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from . import conf
from .models import DeliveryStatus, Phase

if TYPE_CHECKING:
    from .models import Delivery, SmtpAccount

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one attempt ended with; ``status`` is the row's next status."""

    status: str
    phase: str = ""
    code: int | None = None
    enhanced: str = ""
    text: str = ""
    error_class: str = ""
    esp_message_id: str = ""
    # The failure concerns the mailbox or the session, not this message: the rest of the
    # batch shares it (held when the mailbox is broken, deferred when unreachable).
    mailbox_broken: bool = False
    session_failed: bool = False

    @property
    def accepted(self) -> bool:
        return self.status == DeliveryStatus.SENT


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _enhanced_code(text: str) -> str:
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


def _reply_text(reply: Any) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return re.sub(r"\s+", " ", str(reply or "")).strip()[:1000]


# --- Smart Mail ----------------------------------------------------------------------------


class SmartMailSender:
    """Sends through the platform's configured Django email backend (an anymail ESP in
    production, ``.eml`` files in the embedded default), paced by the practitioner's
    ``bucket`` when given (:func:`emailsettings.limits.smart_mail_bucket`)."""

    def __init__(self, *, bucket: TokenBucket | None = None) -> None:
        self.connection = get_connection(settings.EMAIL_BACKEND)
        self.opened = False
        self.bucket = bucket

    def pace(self) -> float:
        """Seconds to wait before the next message may go out (0.0: go now)."""
        return self.bucket.wait_time() if self.bucket is not None else 0.0

    def send(
        self,
        delivery: Delivery,
        message: EmailMultiAlternatives,
        *,
        on_data_sent: Callable[[], None],
    ) -> Outcome:
        from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused

        # Only the delivery id travels to the ESP: no patient data in metadata or tags.
        message.metadata = {"delivery_id": str(delivery.pk)}  # type: ignore[attr-defined]
        message.tags = ["invoice"]  # type: ignore[attr-defined]
        message.track_opens = False  # type: ignore[attr-defined]
        message.track_clicks = False  # type: ignore[attr-defined]
        message.connection = self.connection
        try:
            if not self.opened:
                self.connection.open()
                self.opened = True
            on_data_sent()
            sent = self.connection.send_messages([message])
        except AnymailRecipientsRefused as err:
            return Outcome(
                status=DeliveryStatus.FAILED,
                phase=Phase.DATA_SENT,
                text=_reply_text(err.args[0] if err.args else "recipient refused"),
                error_class="recipient_refused",
            )
        except AnymailAPIError as err:
            code = err.status_code
            text = f"{err.esp_name or 'ESP'} API {code or '-'}: " + _reply_text(
                err.args[0] if err.args else ""
            )
            if code is None or code == 429 or code >= 500:
                return Outcome(
                    status=DeliveryStatus.DEFERRED,
                    phase=Phase.DATA,
                    code=code,
                    text=text[:500],
                    error_class="temporary",
                )
            return Outcome(
                status=DeliveryStatus.FAILED,
                phase=Phase.DATA,
                code=code,
                text=text[:500],
                error_class="message_rejected",
            )
        except (AnymailError, OSError) as err:
            return Outcome(
                status=DeliveryStatus.DEFERRED,
                phase=Phase.DATA,
                text=_reply_text(type(err).__name__),
                error_class="temporary",
            )
        status = getattr(message, "anymail_status", None)
        esp_id = ""
        if status is not None:
            if status.status and status.status <= {"rejected", "invalid"}:
                return Outcome(
                    status=DeliveryStatus.FAILED,
                    phase=Phase.DATA_SENT,
                    text="rejected by the platform sender",
                    error_class="recipient_refused",
                )
            esp_id = "" if status.message_id is None else str(status.message_id)
        if not sent:
            return Outcome(status=DeliveryStatus.DEFERRED, phase=Phase.DATA, text="not sent")
        return Outcome(status=DeliveryStatus.SENT, phase=Phase.DONE, esp_message_id=esp_id[:255])

    def close(self) -> None:
        if self.opened:
            try:
                self.connection.close()
            finally:
                self.opened = False


# --- pacing --------------------------------------------------------------------------------

_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'ts', now)
  redis.call('EXPIRE', KEYS[1], 3600)
  return '0'
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring((1 - tokens) / rate)
"""

_local_buckets: dict[str, tuple[float, float]] = {}
_local_lock = threading.Lock()


class TokenBucket:
    """``rate_per_minute`` messages a minute for one mailbox (or one practitioner's Smart
    Mail), across every worker process.

    The state lives in Redis (one hash per mailbox); without Redis (embedded default, or
    Redis unreachable) each process paces itself alone, which is still within the limit
    for a single worker.
    """

    def __init__(self, *, key: str, rate_per_minute: float) -> None:
        self.key = f"emailsettings:bucket:{key}"
        self.rate = max(rate_per_minute, 0.001) / 60.0
        # A short burst is allowed; the long-run pace is the preset's.
        self.capacity = max(1.0, min(rate_per_minute / 6.0, 20.0))
        self._script: Any = None
        url = conf.redis_url()
        if url:
            try:
                import redis

                client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                self._script = client.register_script(_BUCKET_SCRIPT)
            except Exception:  # pacing must never stop a send
                logger.warning("Token bucket: Redis unavailable, pacing locally")

    def wait_time(self) -> float:
        """Take one token if there is one (0.0), else the seconds until there will be."""
        now = time.time()
        if self._script is not None:
            try:
                return float(self._script(keys=[self.key], args=[self.rate, self.capacity, now]))
            except Exception:
                logger.warning("Token bucket: Redis unavailable, pacing locally")
                self._script = None
        with _local_lock:
            tokens, ts = _local_buckets.get(self.key, (self.capacity, now))
            tokens = min(self.capacity, tokens + max(0.0, now - ts) * self.rate)
            if tokens >= 1:
                _local_buckets[self.key] = (tokens - 1, now)
                return 0.0
            _local_buckets[self.key] = (tokens, now)
            return (1 - tokens) / self.rate


# --- personal SMTP -------------------------------------------------------------------------


class SmtpSender:
    """One SMTP session for a batch of one practitioner's deliveries.

    The connection (guarded: TLS verified, authenticated, destination checked) comes from
    :func:`emailsettings.smtp.connection_for`; it is opened on the first message and reused
    until the batch ends or the server drops it. MAIL, RCPT and DATA are issued one by one so
    that the moment the message data goes out — after which a lost reply means "maybe sent"
    — is known exactly and recorded before it happens.
    """

    def __init__(self, *, account: SmtpAccount) -> None:
        self.account = account
        self.preset_key = account.preset
        self.connection: smtplib.SMTP | None = None
        self.phase: str = Phase.NONE
        self.sessions_opened = 0
        rate = conf.smtp_rate_limit_per_minute()
        if rate <= 0:
            from .presets import get_preset

            preset = get_preset(account.preset)
            rate = float(preset.rate_limit_per_minute) if preset else 20.0
        self.bucket = TokenBucket(key=f"smtp:{account.pk}", rate_per_minute=rate)

    def _on_phase(self, phase: str) -> None:
        self.phase = phase

    def _open(self) -> smtplib.SMTP:
        from . import smtp

        self.phase = Phase.CONNECT
        self.connection = smtp.connection_for(
            self.account, timeout=conf.smtp_send_timeout_seconds(), on_phase=self._on_phase
        )
        self.sessions_opened += 1
        return self.connection

    def pace(self) -> float:
        """Seconds to wait before the next message may go out (0.0: go now)."""
        return self.bucket.wait_time()

    def send(
        self,
        delivery: Delivery,
        message: EmailMultiAlternatives,
        *,
        on_data_sent: Callable[[], None],
    ) -> Outcome:
        from . import smtp
        from .exceptions import DeliveryError, DestinationRefused
        from .messages import message_bytes

        data = message_bytes(message)

        def on_phase(phase: str) -> None:
            self.phase = phase
            if phase == Phase.DATA:
                # Recorded before the DATA command: from here on a lost reply means the
                # server may have accepted the message, so it must never be re-sent silently.
                on_data_sent()

        for attempt in (1, 2):
            reused = self.connection is not None
            try:
                connection = self.connection or self._open()
                reply = smtp.send_message(
                    connection,
                    message=data,
                    from_addr=self.account.email,
                    to_addrs=[delivery.recipient],
                    on_phase=on_phase,
                    preset_key=self.preset_key,
                )
            except DestinationRefused as err:
                self._drop()
                return Outcome(
                    status=DeliveryStatus.HELD,
                    phase=Phase.CONNECT,
                    text=_reply_text("; ".join(err.messages)),
                    error_class="destination_refused",
                    mailbox_broken=True,
                    session_failed=True,
                )
            except DeliveryError as err:
                failure = err.failure
                if attempt == 1 and reused and failure.phase == Phase.MAIL and failure.code is None:
                    # The server closed the idle connection between two messages.
                    self._drop()
                    continue
                return self._outcome(failure)
            return Outcome(
                status=DeliveryStatus.SENT,
                phase=Phase.DONE,
                code=reply.code,
                enhanced=_enhanced_code(reply.reply),
                text=_reply_text(reply.reply),
            )
        raise AssertionError("unreachable")

    def _outcome(self, failure: Any) -> Outcome:
        session_phase = failure.phase in (Phase.CONNECT, Phase.TLS, Phase.AUTH, "")
        if session_phase or failure.code is None:
            # No reply, or a failure before the session was ready: the connection is unusable.
            self._drop()
        outcome = Outcome(
            status=DeliveryStatus.FAILED,
            phase=failure.phase,
            code=failure.code,
            enhanced=failure.enhanced or "",
            text=_reply_text(failure.reply),
            error_class=str(failure.error_class or ""),
        )
        if failure.after_data:
            outcome.status = DeliveryStatus.UNKNOWN
        elif failure.is_configuration_error:
            outcome.status = DeliveryStatus.HELD
            outcome.mailbox_broken = True
            outcome.session_failed = True
        elif failure.is_temporary:
            outcome.status = DeliveryStatus.DEFERRED
            outcome.session_failed = session_phase
        return outcome

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
