"""The practitioner's own mailbox checks: "Verifica connessione" and "Invia una mail di
prova". Their outcome is written to the mailbox's health row (:mod:`emailsettings.mailbox.state`),
and a change of health holds or releases the mailbox's queued invoices.

Both run in a Celery worker (``emailsettings.tasks``): :func:`start_check` is what a view
calls (rate limit, progress marker, enqueue on commit); :func:`verify_mailbox` and
:func:`send_test_mail` are what the task calls. The outcome is stored on the
:class:`~emailsettings.models.SmtpAccount` (status, ``last_verified_at`` /
``last_error_at``, ``last_error``); the live phase of a running check is kept in the cache,
where the page polls it (:func:`check_progress`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from emailsettings.covermail.identity import smtp_display_name
from emailsettings.covermail.message import build_text_message, message_bytes
from emailsettings.exceptions import DeliveryError, RateLimited
from emailsettings.failures import ErrorClass, Failure
from emailsettings.limits import within_fixed_window
from emailsettings.mailbox.smtp import close_quietly, connection_for
from emailsettings.mailbox.state import set_health
from emailsettings.mailbox.transaction import probe_envelope, send_message
from emailsettings.models import SmtpAccount
from emailsettings.outbox.actions import follow_mailbox_health
from emailsettings.outbox.publish import publish_task

logger = logging.getLogger(__name__)

VERIFY = "verify"
TEST_MAIL = "test"
CHECK_KINDS = (VERIFY, TEST_MAIL)
# The tasks that run them, by their registered names (emailsettings.tasks).
CHECK_TASKS = {VERIFY: "emailsettings.verify_mailbox", TEST_MAIL: "emailsettings.send_test_mail"}

# "5 per 10 minutes per practitioner", verify and test mail together.
RATE_LIMIT_COUNT = 5
RATE_LIMIT_WINDOW = 600
# Explicit per-command timeout of a check (connect and each SMTP command).
CHECK_TIMEOUT = 15.0
# How long a progress marker lives: longer than any check can take.
PROGRESS_TTL = 600


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check; ``failure`` is None when it succeeded."""

    kind: str
    ok: bool
    at: datetime
    failure: Failure | None = None


# --- starting a check (web side) ------------------------------------------------------------


def _rate_key(practitioner_id: int) -> str:
    return f"emailsettings:mailbox-checks:{practitioner_id}"


def _progress_key(account_id: int) -> str:
    return f"emailsettings:mailbox-check-progress:{account_id}"


def _consume_rate_limit(practitioner_id: int) -> None:
    if not within_fixed_window(
        _rate_key(practitioner_id), limit=RATE_LIMIT_COUNT, window=RATE_LIMIT_WINDOW
    ):
        raise RateLimited(
            _(
                "Hai già fatto %(count)s verifiche o mail di prova negli ultimi 10 minuti: "
                "per non far bloccare la tua casella dal provider, aspetta qualche minuto "
                "prima di riprovare."
            )
            % {"count": RATE_LIMIT_COUNT},
            retry_after=RATE_LIMIT_WINDOW,
        )


def start_check(*, account: SmtpAccount, kind: str) -> dict[str, Any]:
    """Rate-limit, mark the check as queued and enqueue its task once the transaction
    commits. Returns the progress marker. Raises :class:`RateLimited`."""
    if kind not in CHECK_KINDS:
        raise ValueError(f"Unknown check {kind!r}")
    _consume_rate_limit(account.practitioner_id)
    progress = {
        "kind": kind,
        "state": "queued",
        "phase": "",
        "started_at": timezone.now().isoformat(),
    }
    cache.set(_progress_key(account.pk), progress, timeout=PROGRESS_TTL)
    task_name = CHECK_TASKS[kind]
    account_id = account.pk

    def enqueue() -> None:
        if not publish_task(task_name, [account_id]):
            # Broker down: say so on the page instead of waiting forever.
            progress["state"] = "unavailable"
            cache.set(_progress_key(account_id), progress, timeout=PROGRESS_TTL)

    transaction.on_commit(enqueue)
    return progress


def check_progress(*, account: SmtpAccount) -> dict[str, Any] | None:
    """The marker of the latest check started from the page, or None."""
    value = cache.get(_progress_key(account.pk))
    return value if isinstance(value, dict) else None


def _mark_progress(account_id: int, kind: str, **changes: Any) -> None:
    key = _progress_key(account_id)
    progress = cache.get(key)
    if not isinstance(progress, dict) or progress.get("kind") != kind:
        progress = {"kind": kind, "started_at": timezone.now().isoformat()}
    progress.update(changes)
    cache.set(key, progress, timeout=PROGRESS_TTL)


# --- running a check (worker side) ----------------------------------------------------------


def verify_mailbox(*, account: SmtpAccount, timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """Connect, TLS, EHLO, AUTH, ``MAIL FROM`` the mailbox, ``RCPT TO`` the practitioner's
    own address, RSET, QUIT: no message is sent. The outcome is stored on ``account``."""
    return _run(account=account, kind=VERIFY, timeout=timeout)


def send_test_mail(*, account: SmtpAccount, timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """Send a real short message from the mailbox to the practitioner's own address only."""
    return _run(account=account, kind=TEST_MAIL, timeout=timeout)


def _run(*, account: SmtpAccount, kind: str, timeout: float) -> CheckResult:
    practitioner = account.practitioner
    recipient = practitioner.email

    def on_phase(phase: str) -> None:
        _mark_progress(account.pk, kind, state="running", phase=phase)

    on_phase("connect")
    connection = None
    try:
        connection = connection_for(account, timeout=timeout, on_phase=on_phase)
        if kind == VERIFY:
            probe_envelope(
                connection,
                from_addr=account.email,
                to_addr=recipient,
                on_phase=on_phase,
                preset_key=account.preset,
            )
        else:
            send_message(
                connection,
                message=message_bytes(build_test_message(account=account)),
                from_addr=account.email,
                to_addrs=[recipient],
                on_phase=on_phase,
                preset_key=account.preset,
            )
    except DeliveryError as err:
        result = CheckResult(kind=kind, ok=False, at=timezone.now(), failure=err.failure)
    except Exception as err:  # recorded: the page must never stay "in corso"
        logger.exception("Unexpected error in mailbox check %s for account %s", kind, account.pk)
        failure = Failure(
            phase=str((check_progress(account=account) or {}).get("phase") or "connect"),
            error_class=ErrorClass.INTERNAL_ERROR,
            reply=type(err).__name__,
        )
        result = CheckResult(kind=kind, ok=False, at=timezone.now(), failure=failure)
    else:
        result = CheckResult(kind=kind, ok=True, at=timezone.now())
    finally:
        close_quietly(connection)
    _record(account=account, result=result)
    _mark_progress(account.pk, kind, state="done", phase="")
    logger.info(
        "Mailbox check %s for account %s: %s",
        kind,
        account.pk,
        "ok" if result.ok else result.failure.error_class if result.failure else "failed",
    )
    return result


def record_check_abandoned(*, account: SmtpAccount, kind: str) -> CheckResult:
    """Store a timeout for a check stopped from outside (the task's time limit): many slow
    replies can add up past it even though each command has its own timeout."""
    progress = check_progress(account=account) or {}
    failure = Failure(
        phase=str(progress.get("phase") or "connect"),
        code=None,
        enhanced="",
        error_class=ErrorClass.TIMEOUT,
        reply="Tempo massimo del controllo superato: il server risponde troppo lentamente.",
    )
    result = CheckResult(kind=kind, ok=False, at=timezone.now(), failure=failure)
    _record(account=account, result=result)
    _mark_progress(account.pk, kind, state="done", phase="")
    return result


def _record(*, account: SmtpAccount, result: CheckResult) -> None:
    """Store a check's outcome. Only a configuration error (credentials, sender, TLS, host)
    makes the mailbox "broken"; a timeout or a refused recipient does not."""
    if result.ok:
        health = set_health(account, healthy=True, verified_at=result.at)
    else:
        assert result.failure is not None
        health = set_health(
            account, healthy=not result.failure.is_configuration_error, failure=result.failure
        )
    follow_mailbox_health(practitioner_id=account.practitioner_id, health=health)


def build_test_message(*, account: SmtpAccount) -> EmailMultiAlternatives:
    """The test message: from the mailbox with the same cleaned sender name invoices use
    (``identity.smtp_identity``), to the practitioner."""
    practitioner = account.practitioner
    display_name = smtp_display_name(account, practitioner)
    return build_text_message(
        from_name=display_name,
        from_address=account.email,
        to_address=practitioner.email,
        subject=_("Mail di prova da PsicoGest"),
        text=_(
            "Questa è una mail di prova inviata da PsicoGest con la tua casella %(email)s.\n\n"
            "Se la stai leggendo, la configurazione SMTP funziona: le fatture ai pazienti "
            "partiranno da questa casella, con il nome mittente «%(name)s».\n"
        )
        % {"email": account.email, "name": display_name},
    )
