"""The worker's side of the outbox: claim → send → record, for one batch of deliveries.

:func:`send_batch` (the ``emailsettings.send_deliveries`` task) groups the rows by
practitioner, claims each with a conditional ``UPDATE`` (one winner, a lease), sends outside
any database transaction through the practitioner's senders (one SMTP session for the
batch, the mailbox's pace) and records the outcome through the lifecycle. What the mailbox
is told (broken, unreachable, working) goes to :mod:`emailsettings.mailbox.state`, and the
outbox follows it (:func:`~emailsettings.outbox.actions.follow_mailbox_health`).
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from emailsettings import conf, limits
from emailsettings.covermail.languages import mail_language
from emailsettings.covermail.message import build_message, invoice_pdf
from emailsettings.covermail.protection import (
    encrypt_pdf,
    notice_text,
    pdf_password,
    second_factor_kind,
)
from emailsettings.covermail.rendering import cover_mail_templates_for, render_cover_mail
from emailsettings.exceptions import LeaseLost
from emailsettings.failures import Accepted, ErrorClass, Failure
from emailsettings.mailbox import state as mailbox_state
from emailsettings.mailbox.state import Health
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EventKind,
    MailboxStatus,
    Phase,
    SmtpAccount,
)
from emailsettings.outbox import lifecycle, publish, reminders, reputationhold, securelink
from emailsettings.outbox.actions import follow_mailbox_health, hold_pending
from emailsettings.outbox.blips import BLIP_ERRORS, through_blips
from emailsettings.outbox.dispatch import Dispatcher, is_lent
from emailsettings.outbox.inflight import InFlight, Outcome
from emailsettings.outbox.senders import (
    PhaseCallback,
    Prepared,
    Sender,
    SmartMailSender,
    SmtpSender,
)
from psicogest.models import InvoiceDelivery

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What one batch did (for the benchmark and the logs)."""

    outcomes: dict[int, str] = field(default_factory=dict)
    sessions_opened: int = 0
    handed_over: list[int] = field(default_factory=list)
    # Waiting for a worker slot of their practitioner (see dispatch.Dispatcher).
    parked: list[int] = field(default_factory=list)
    # Smart Mail rows accepted by the ESP: webhook events that arrived while they were being
    # sent wait for them (the task applies them after the batch).
    smart_mail_sent: list[Delivery] = field(default_factory=list)


class _Senders:
    """The senders of one practitioner's batch, opened lazily per channel."""

    def __init__(self, practitioner_id: int) -> None:
        self.practitioner_id = practitioner_id
        self._smart: SmartMailSender | None = None
        self._smtp: SmtpSender | None = None
        self.account: SmtpAccount | None = None
        self.account_missing = False

    def smart_mail(self) -> SmartMailSender:
        if self._smart is None:
            bucket = limits.smart_mail_bucket(practitioner_id=self.practitioner_id)
            self._smart = SmartMailSender(bucket=bucket)
        return self._smart

    def smtp(self) -> SmtpSender | None:
        if self._smtp is None and not self.account_missing:
            account = SmtpAccount.objects.filter(practitioner_id=self.practitioner_id).first()
            if account is None:
                self.account_missing = True
                return None
            self.account = account
            self._smtp = SmtpSender(account=account)
        return self._smtp

    @property
    def sessions_opened(self) -> int:
        return self._smtp.sessions_opened if self._smtp is not None else 0

    def close(self) -> None:
        for sender in (self._smart, self._smtp):
            if sender is not None:
                try:
                    sender.close()
                except (OSError, ValueError) as err:  # closing never changes an outcome
                    logger.info("Closing a sender failed: %s", type(err).__name__)


def send_batch(
    *, delivery_ids: Sequence[int], time_budget: float | None = None, slot: str = ""
) -> BatchResult:
    """Send the given deliveries (normally one practitioner's, one channel's); rows that are
    not waiting to be sent (already claimed, sent, held…) are skipped. ``slot``: the worker
    slot :mod:`.dispatch` reserved for this batch when it was published."""

    result = BatchResult()
    budget = conf.batch_time_budget_seconds() if time_budget is None else time_budget
    deadline = time.monotonic() + budget
    rows = list(
        Delivery.objects.filter(pk__in=list(delivery_ids))
        .order_by("id")
        .values_list("pk", "practitioner_id", "channel")
    )
    groups: OrderedDict[int, list[tuple[int, str]]] = OrderedDict()
    for pk, practitioner_id, channel in rows:
        groups.setdefault(practitioner_id, []).append((pk, channel))
    dispatcher = Dispatcher()
    # A slot lives as long as a lease and is renewed at each row: a dead worker's slot
    # frees itself as soon as its rows may be retried.
    slot_ttl = conf.lease_seconds() + 5
    for practitioner_id, items in groups.items():
        token = slot or uuid.uuid4().hex
        if not dispatcher.acquire(practitioner_id, token, ttl=slot_ttl):
            # The practitioner's batches already hold their worker slots: this one waits
            # in its backlog instead of taking another slot from everybody else.
            batches = dispatcher.enqueue(practitioner_id, [pk for pk, _channel in items])
            publish.publish_batches(dispatcher, practitioner_id, batches)
            result.parked.extend(pk for pk, _channel in items)
            continue
        try:
            _send_group(
                practitioner_id,
                items,
                deadline=deadline,
                result=result,
                keep_slot=_every(
                    slot_ttl / 10,
                    functools.partial(dispatcher.refresh, practitioner_id, token, ttl=slot_ttl),
                ),
                give_way=_lent_slot_wanted(dispatcher, practitioner_id, token),
            )
        finally:
            # Rows handed over (the time budget ran out) join the backlog first: being the
            # oldest ids, they are the next batch.
            mine = {pk for pk, _channel in items}
            handed_over = [pk for pk in result.handed_over if pk in mine]
            batches = dispatcher.enqueue(practitioner_id, handed_over) if handed_over else []
            batches.extend(dispatcher.release(practitioner_id, token))
            publish.publish_batches(dispatcher, practitioner_id, batches)
    return result


def _lent_slot_wanted(
    dispatcher: Dispatcher, practitioner_id: int, token: str
) -> Callable[[], bool]:
    """For a batch on a lent slot (:func:`dispatch.is_lent`): whether someone else's batch
    now waits, asked at most every half second; never for a batch on the practitioner's
    own slot."""
    if not is_lent(token):
        return lambda: False
    last = [-float("inf")]

    def wanted() -> bool:
        now = time.monotonic()
        if now - last[0] < 0.5:
            return False
        last[0] = now
        return dispatcher.others_waiting(practitioner_id)

    return wanted


def _every(seconds: float, call: Callable[[], None]) -> Callable[[], None]:
    """``call``, done at most once every ``seconds`` (the first time at once): a slot's
    expiry moved on at each row cost a Redis round trip a message."""
    last = [-float("inf")]

    def throttled() -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            call()

    return throttled


def _send_group(
    practitioner_id: int,
    items: list[tuple[int, str]],
    *,
    deadline: float,
    result: BatchResult,
    keep_slot: Callable[[], None] = lambda: None,
    give_way: Callable[[], bool] = lambda: False,
) -> None:
    senders = _Senders(practitioner_id)
    # One query for the batch's rows: each claim is then one UPDATE (lifecycle.claim).
    snapshots = Delivery.objects.select_related("invoice", "practitioner", "patient").in_bulk(
        [pk for pk, _channel in items]
    )
    # Once the mailbox is broken or unreachable, the batch's other SMTP rows share that fate
    # without another connection attempt: held or deferred.
    smtp_blocked = False
    # The Smart Mail rows this batch may send under the daily quota (claimed for the whole
    # batch at its first Smart Mail row) and those it claimed; its recorded sends go to
    # ``result.smart_mail_sent``.
    smart_allowed: set[int] | None = None
    smart_reserved: list[int] = []
    smart_claimed: set[int] = set()
    # Smart Mail requests of this batch running at once (see outbox.inflight).
    in_flight = InFlight(limit=conf.smart_mail_concurrency())
    try:
        for index, (pk, channel) in enumerate(items):
            keep_slot()
            remaining = [item[0] for item in items[index:]]
            if time.monotonic() > deadline or (index and give_way()):
                # Out of time, or on a lent slot someone else now waits for: the rows left
                # go back to the backlog, first in line for the practitioner's next batch.
                result.handed_over.extend(remaining)
                return
            sender: Sender | None
            concurrent = False
            if channel == Channel.SMTP:
                if smtp_blocked:
                    continue
                sender = senders.smtp()
                account = senders.account
                if account is not None and account.status == MailboxStatus.BROKEN:
                    hold_pending(practitioner_id=practitioner_id)
                    smtp_blocked = True
                    continue
                if sender is not None and not _wait_for_token(sender, deadline):
                    result.handed_over.extend(remaining)
                    return
                open_session = sender is not None and sender.session_open
                phase = Phase.MAIL if open_session else Phase.CONNECT
            else:
                sender = senders.smart_mail()
                if smart_allowed is None and reputationhold.hold_if_suspended(
                    practitioner_id=practitioner_id
                ):
                    smart_allowed = set()  # suspended: the batch's Smart Mail rows are held
                if smart_allowed is None:
                    smart_allowed, smart_reserved = _claim_smart_mail_quota(
                        practitioner_id,
                        [item[0] for item in items[index:] if item[1] == Channel.SMART_MAIL],
                        snapshots,
                        deadline=deadline,
                        result=result,
                    )
                if pk not in smart_allowed:
                    continue
                if not _wait_for_token(sender, deadline):
                    result.handed_over.extend(remaining)
                    return
                phase = Phase.CONNECT
                # With the session open the claim records "data_sent" itself: the send
                # may then run in another thread, which writes nothing.
                concurrent = in_flight.enabled and sender.open()
            claimed = _claim_prepared(pk, snapshots.get(pk), sender, phase=phase)
            if claimed is None:
                continue
            delivery, prepared = claimed
            if delivery.reminder_level and (
                reason := through_blips(
                    functools.partial(reminders.stop_reason_at_send, delivery),
                    what="a reminder check",
                )
            ):
                # A payment reminder whose invoice was paid (paused, …) since it was queued.
                through_blips(
                    functools.partial(reminders.cancel_at_send, delivery, reason=reason),
                    what="a reminder check",
                )
                result.outcomes[pk] = DeliveryStatus.CANCELLED
                continue
            if channel == Channel.SMART_MAIL:
                smart_claimed.add(pk)
                if not concurrent:
                    _record(delivery, _attempt(delivery, sender, prepared), result)
                    continue
                if not _fence(delivery):
                    result.outcomes[pk] = "changed_hands"
                    continue
                in_flight.submit(
                    delivery,
                    functools.partial(_attempt, delivery, sender, prepared, on_phase=_fenced),
                )
                for sent, outcome in in_flight.finished():
                    _record(sent, outcome, result)
                continue
            outcome = _attempt(delivery, sender, prepared)
            if not _record(delivery, outcome, result) or outcome is None:
                continue
            account = senders.account
            if account is None:
                continue
            if isinstance(outcome, Accepted):
                health = mailbox_state.record_send_success(account=account)
                follow_mailbox_health(practitioner_id=practitioner_id, health=health)
            elif outcome.is_configuration_error:
                health = mailbox_state.record_send_failure(account=account, failure=outcome)
                follow_mailbox_health(practitioner_id=practitioner_id, health=health)
                smtp_blocked = True
            elif outcome.is_unreachable or outcome.ends_session:
                health = None
                if outcome.is_unreachable:
                    health = mailbox_state.record_unreachable(account=account, failure=outcome)
                    follow_mailbox_health(practitioner_id=practitioner_id, health=health)
                if health is not Health.BROKEN:
                    lifecycle.defer_rows(
                        [other for other, ch in items[index + 1 :] if ch == Channel.SMTP],
                        outcome,
                        text=lifecycle.EventText(
                            gettext_noop(
                                "Server non raggiungibile per questo gruppo di invii: %(reply)s"
                            ),
                            {"reply": outcome.reply},
                        ),
                    )
                smtp_blocked = True
    finally:
        try:
            for sent, outcome in in_flight.drain():
                _record(sent, outcome, result)
        finally:
            in_flight.close()
            result.sessions_opened += senders.sessions_opened
            senders.close()
            limits.release_smart_mail_quota(
                [pk for pk in smart_reserved if pk not in smart_claimed]
            )


def _record(delivery: Delivery, outcome: Outcome, result: BatchResult) -> bool:
    """Store one attempt's outcome (in the batch's thread); ``False`` when there was none to
    store (the row changed hands before its data left)."""
    if outcome is None:
        result.outcomes[delivery.pk] = "changed_hands"
        return False
    # The outcome lands even through a database blip: a message the server accepted must
    # not become "unknown" (and a "Reinvia" a duplicate) because of one.
    recorded = through_blips(
        functools.partial(lifecycle.record, delivery, outcome), what="an outcome"
    )
    result.outcomes[delivery.pk] = recorded or outcome_name(outcome)
    if (
        delivery.channel == Channel.SMART_MAIL
        and isinstance(outcome, Accepted)
        and outcome.esp_message_id
    ):
        result.smart_mail_sent.append(delivery)
    return True


def _fence(delivery: Delivery) -> bool:
    """Before a send leaves for another thread: the row is still this attempt's, at
    ``data_sent`` (the claim recorded it unless the row was loaded again)."""
    return bool(
        through_blips(
            functools.partial(lifecycle.mark_phase, delivery, Phase.DATA_SENT), what="a phase"
        )
    )


def _fenced(phase: str) -> None:
    """The phase callback of a send in another thread: :func:`_fence` has been passed in the
    batch's thread, and nothing here may touch the database."""


def outcome_name(outcome: Accepted | Failure) -> str:
    return DeliveryStatus.SENT if isinstance(outcome, Accepted) else outcome.error_class


def _claim_smart_mail_quota(
    practitioner_id: int,
    pks: list[int],
    snapshots: dict[int, Delivery],
    *,
    deadline: float,
    result: BatchResult,
) -> tuple[set[int], list[int]]:
    """The daily quota for the batch's Smart Mail rows, claimed at once before any token is
    spent: the rows that fit are reserved (:func:`limits.reserve_smart_mail_quota`), the
    rest become ``deferred`` until the quota frees up. Returns the rows the batch may send
    and those it reserved. Rows that are not waiting (already claimed, sent, deferred and not
    due) are left out: their claim would fail anyway."""
    now = timezone.now()
    waiting = [
        pk for pk in pks if (row := snapshots.get(pk)) is not None and _may_be_claimed(row, now)
    ]
    if not waiting:
        return set(), []
    limit, _warmup = limits.smart_mail_limit(practitioner=snapshots[waiting[0]].practitioner)
    if limit is None:
        return set(waiting), []
    # The reservation outlives the batch's time budget by a lease: rows still unsent then
    # are handed over (and given back); a dead worker's reservations lapse by themselves.
    until = now + datetime.timedelta(
        seconds=max(0.0, deadline - time.monotonic()) + conf.lease_seconds()
    )
    granted, quota = limits.reserve_smart_mail_quota(
        practitioner_id=practitioner_id, delivery_ids=waiting, until=until, now=now
    )
    over = waiting[len(granted) :]
    if over:
        for pk in _defer_for_quota(over, quota):
            result.outcomes[pk] = DeliveryStatus.DEFERRED
    return set(granted), granted


def _defer_for_quota(pks: Sequence[int], quota: limits.Quota) -> list[int]:
    """The Smart Mail daily quota is used up: the row waits, unsent, until it frees up.

    Not an attempt (no ESP is contacted) and never a failure: the row stays ``deferred``
    however long the quota lasts, and ``quota_wait_until`` restarts the retry max-age clock
    so a temporary error right after a long wait still gets the full retry window."""
    now = timezone.now()
    resets_at = quota.resets_at or now
    text = limits.quota_wait_text(quota)
    return lifecycle.transition(
        Delivery.objects.filter(pk__in=list(pks)).filter(lifecycle.waiting(now)),
        to=DeliveryStatus.DEFERRED,
        text=text,
        kind=EventKind.ATTEMPT,
        failure=Failure(phase="", error_class=ErrorClass.QUOTA_WAIT, reply=text),
        changes={
            "next_attempt_at": resets_at,
            "quota_wait_until": resets_at,
            "lease_expires_at": None,
        },
        now=now,
    )


def _wait_for_token(sender: Sender, deadline: float) -> bool:
    """Wait for the mailbox's rate limit; ``False`` if that would pass the batch's deadline."""
    while True:
        wait = sender.pace()
        if wait <= 0:
            return True
        if time.monotonic() + wait > deadline:
            return False
        time.sleep(min(wait, 5.0))


def _claim_prepared(
    pk: int, snapshot: Delivery | None, sender: Sender | None, *, phase: str
) -> tuple[Delivery, Prepared | Failure | None] | None:
    """Claim the row with its message already built from the batch's snapshot: when the
    snapshot is still current the claim also records the phase the send starts at
    (:meth:`Sender.start_phase`), so a pipelined message costs no separate phase write.
    A row that changed since the snapshot is claimed at ``phase`` and built again. Returns
    the claimed row and its prepared message (a :class:`Failure` when building it failed,
    ``None`` without a sender), or ``None`` when the row is not this worker's to send."""
    prepared = None
    if snapshot is not None and _may_be_claimed(snapshot):
        prepared = _prepare(snapshot, sender, phase=phase)
    ready = prepared is not None and not isinstance(prepared, Failure)
    delivery = lifecycle.claim(
        pk,
        phase=sender.start_phase() if ready and sender is not None else phase,
        snapshot=snapshot,
        phase_if_reloaded=phase,
    )
    if delivery is None:
        return None
    if delivery is not snapshot:
        # The row is claimed now: a database blip while building its message is waited out
        # rather than leaving it claimed until its lease runs out.
        prepared = through_blips(
            functools.partial(_prepare, delivery, sender, phase=phase), what="a message"
        )
    return delivery, prepared


def _may_be_claimed(snapshot: Delivery, now: datetime.datetime | None = None) -> bool:
    """Whether the snapshot is waiting to be sent, as the claim will check (queued, or a
    deferred row whose time has come): no message is built for a row the claim refuses."""
    if snapshot.status == DeliveryStatus.QUEUED:
        return True
    return (
        snapshot.status == DeliveryStatus.DEFERRED
        and snapshot.next_attempt_at is not None
        and snapshot.next_attempt_at <= (now or timezone.now())
    )


def _prepare(delivery: Delivery, sender: Sender | None, *, phase: str) -> Prepared | Failure | None:
    """The message of ``delivery`` as ``sender`` sends it; a :class:`Failure` (recorded
    like a send's) when it cannot be built. Nothing leaves the process here."""
    if sender is None:
        return None
    try:
        if delivery.body_purged_at is not None or not (delivery.body_text or delivery.body_html):
            _rerender(delivery)
        protected = _protected_parts(delivery)
        if isinstance(protected, Failure):
            return protected
        pdf, notice = protected
        return sender.prepare(build_message(delivery, pdf=pdf, notice=notice))
    except SoftTimeLimitExceeded:
        return Failure(
            phase=phase,
            error_class=ErrorClass.TIMEOUT,
            reply=_("Tempo massimo dell'invio superato: il server risponde troppo lentamente."),
        )
    except BLIP_ERRORS:  # the database, not the message: waited out by the caller
        raise
    except Exception as err:  # recorded after the claim: a bug must not leave the row waiting
        logger.exception("Unexpected error building delivery %s", delivery.pk)
        return Failure(phase=phase, error_class=ErrorClass.INTERNAL_ERROR, reply=type(err).__name__)


def _protected_parts(delivery: Delivery) -> tuple[bytes, str] | Failure:
    """The attachment (``b""``: none) and the notice paragraph for the delivery's protection,
    made now, in memory: the encrypted PDF and the link's token are never stored."""
    if not delivery.with_invoice:
        return b"", ""  # a payment reminder sent without the invoice
    pdf = invoice_pdf(delivery.invoice)
    mode = delivery.protection
    patient = delivery.patient
    if mode == InvoiceDelivery.ATTACHMENT:
        return pdf, ""
    language = mail_language(
        practitioner=delivery.practitioner, patient=patient, reminder_level=delivery.reminder_level
    )
    if mode == InvoiceDelivery.PROTECTED_PDF:
        password = pdf_password(patient)
        if not password:
            # The card lost its password since the mail was queued: never send it plain.
            return Failure(
                phase=Phase.CONNECT,
                error_class=ErrorClass.INTERNAL_ERROR,
                reply=_("Manca la password del PDF protetto: completa la scheda paziente."),
            )
        encrypted = encrypt_pdf(pdf, password=password)
        return encrypted, notice_text(
            mode=mode, password_source=patient.pdf_password_source, language=language
        )
    if mode == InvoiceDelivery.SECURE_LINK:
        link, token = securelink.link_for(delivery)
        return b"", notice_text(
            mode=mode,
            link_url=securelink.link_url(token),
            expires_at=timezone.localdate(link.expires_at),
            factor=second_factor_kind(patient),
            language=language,
        )
    return pdf, ""


def _attempt(
    delivery: Delivery,
    sender: Sender | None,
    prepared: Prepared | Failure | None,
    *,
    on_phase: PhaseCallback | None = None,
) -> Outcome:
    """One send. An unexpected error of the product is recorded like any failure (a bounded
    number of times), never left ``sending``. ``None``: the row was claimed by another
    worker before this attempt's message data left (nothing sent, nothing to record).
    ``on_phase``: instead of the fence at each phase (a send already fenced)."""
    if sender is None or prepared is None:  # nothing is prepared without a sender
        return Failure(
            phase=Phase.CONNECT,
            error_class=ErrorClass.NO_MAILBOX,
            reply=_("Nessuna casella SMTP personale configurata."),
        )
    if isinstance(prepared, Failure):
        return prepared

    def fence(phase: str) -> None:
        # The fence: before the message data (and any command before it) leaves, the row
        # must still be this attempt's. A database blip is waited out with the session open.
        owned = through_blips(
            functools.partial(lifecycle.mark_phase, delivery, phase), what="a phase"
        )
        if not owned:
            raise LeaseLost(f"Delivery {delivery.pk} was claimed again")

    try:
        return sender.send(delivery, prepared, on_phase=on_phase or fence)
    except LeaseLost:
        logger.warning(
            "Delivery %s was claimed by another worker during this attempt: not sent",
            delivery.pk,
        )
        return None
    except SoftTimeLimitExceeded:
        # The task's time limit: many slow replies added up. A failure of this mailbox,
        # recorded like any other (deferred, then a mailbox problem if it goes on).
        after_data = delivery.phase == Phase.DATA_SENT
        return Failure(
            phase=delivery.phase,
            error_class=ErrorClass.UNKNOWN if after_data else ErrorClass.TIMEOUT,
            reply=_("Tempo massimo dell'invio superato: il server risponde troppo lentamente."),
            after_data=after_data,
        )
    except Exception as err:  # recorded below: a bug must not leave the row "sending"
        logger.exception("Unexpected error sending delivery %s", delivery.pk)
        after_data = delivery.phase == Phase.DATA_SENT
        return Failure(
            phase=delivery.phase,
            error_class=ErrorClass.UNKNOWN if after_data else ErrorClass.INTERNAL_ERROR,
            reply=f"{type(err).__name__}",
            after_data=after_data,
        )


def _rerender(delivery: Delivery) -> None:
    subject_template, body_template = cover_mail_templates_for(delivery.practitioner)
    rendered = render_cover_mail(
        subject_template=subject_template, body_template=body_template, invoice=delivery.invoice
    )
    delivery.body_text, delivery.body_html = rendered.text, rendered.html
