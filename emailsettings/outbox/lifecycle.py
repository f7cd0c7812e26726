"""The life of a delivery row: its status groups, and the one place that changes a status.

Every status change — by the worker, the sweeper, the practitioner's actions, ESP webhooks
and the mailbox — goes through this module: :func:`transition` (a conditional ``UPDATE``
and its timeline event in one transaction), :func:`claim` (``queued`` → ``sending``, one
winner), :func:`record` (the worker's outcome) and :func:`create` (new rows and their
first event). :func:`next_status` decides what a :class:`~emailsettings.failures.Failure`
makes of a row; :func:`backoff_seconds` how long a retry waits.

To add a status: a member of ``DeliveryStatus``, its place in the groups below, its
meaning and tone in ``emailsettings/report.py``.
"""

from __future__ import annotations

import datetime
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_noop

from emailsettings import conf
from emailsettings.failures import (
    MAILBOX_CLASSES,
    NO_FAILURE_COLUMNS,
    Accepted,
    ErrorClass,
    Failure,
)
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    Phase,
    RecipientRole,
    SuppressedAddress,
)
from emailsettings.outbox import statements, telemetry
from psicogest.models import Invoice

logger = logging.getLogger(__name__)

S = DeliveryStatus
# On its way: the report refreshes these rows by themselves.
IN_FLIGHT = (S.QUEUED, S.SENDING, S.DEFERRED)
# A second request for the same invoice returns the pending delivery (double click).
PENDING = (*IN_FLIGHT, S.HELD, S.SCHEDULED)
# Nothing more will happen by itself; the message bodies may be purged.
FINISHED = (
    S.SENT,
    S.DELIVERED,
    S.FAILED,
    S.BOUNCED,
    S.COMPLAINED,
    S.SUPPRESSED,
    S.UNKNOWN,
    S.CANCELLED,
)
# Waiting for its time: "Annulla" and "Invia ora" until it leaves.
CANCELLABLE = (S.SCHEDULED,)
RESENDABLE = FINISHED
# "Riprova ora": a wait that can be cut short.
RETRY_NOW = (S.DEFERRED, S.HELD)
# "Invia con Smart Mail": personal-SMTP rows stopped by the mailbox (see can_fall_back).
FALLBACK = (S.HELD, S.DEFERRED, S.FAILED)


def waiting(now: datetime.datetime) -> Q:
    """Rows a worker may claim: ``queued``, or ``deferred`` and due."""
    return Q(status=S.QUEUED) | Q(status=S.DEFERRED, next_attempt_at__lte=now)


def can_fall_back(delivery: Delivery) -> bool:
    """Whether "Invia con Smart Mail" makes sense: a personal-SMTP row held by the mailbox,
    or waiting/failed because of the mailbox — never one the recipient refused."""
    if delivery.channel != Channel.SMTP or delivery.status not in FALLBACK:
        return False
    return delivery.status == S.HELD or delivery.last_error_class in MAILBOX_CLASSES


# --- event texts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventText:
    """A timeline sentence with values: stored in Italian (the source language), with its
    source and values in ``text_params`` so the timeline shows it in the reader's language
    (``DeliveryEvent.display_text``). Sentences without values are passed as plain
    ``gettext_noop`` strings and translated the same way."""

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)
    plural: str = ""

    def columns(self) -> dict[str, Any]:
        count = int(self.params.get("count", 1))
        source = self.plural if self.plural and count != 1 else self.msgid
        params: dict[str, Any] = {"_msgid": self.msgid, **self.params}
        if self.plural:
            params["_plural"] = self.plural
        return {"text": source % self.params, "text_params": params}


def _text_columns(text: str | EventText) -> dict[str, Any]:
    if isinstance(text, EventText):
        return text.columns()
    return {"text": str(text), "text_params": {}}


# --- creating rows ---------------------------------------------------------------------------


def create(entries: Sequence[tuple[Delivery, bool, bool]]) -> list[Delivery]:
    """Insert new rows, each ``(delivery, held, suppressed)``, with their first event; the
    status follows: ``suppressed`` (never sent), ``scheduled`` (its ``scheduled_for`` is
    still to come), ``held`` (the mailbox needs fixing) or ``queued``. Call inside the
    queueing transaction."""
    now = timezone.now()
    rows = []
    for delivery, held, suppressed in entries:
        if suppressed:
            delivery.status = S.SUPPRESSED
            delivery.last_error_class = ErrorClass.SUPPRESSED
        elif delivery.scheduled_for is not None and delivery.scheduled_for > now:
            # A broken mailbox is found again when the row leaves, and holds it then.
            delivery.status = S.SCHEDULED
        elif held:
            delivery.status = S.HELD
        else:
            delivery.status = S.QUEUED
        rows.append(delivery)
    Delivery.objects.bulk_create(rows)
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(
            delivery=delivery,
            created_at=now,
            kind=EventKind.QUEUED,
            status=delivery.status,
            text=_first_event_text(delivery.status),
        )
        for delivery in rows
    )
    return rows


def _first_event_text(status: str) -> str:
    # Stored in Italian whatever the request's language; translated when shown.
    if status == S.SUPPRESSED:
        return gettext_noop(
            "Non inviata: l'indirizzo è sospeso dopo un rimbalzo o una segnalazione. "
            "Riattivalo per inviare di nuovo."
        )
    if status == S.HELD:
        return gettext_noop("Trattenuta: la casella SMTP personale va corretta prima dell'invio.")
    if status == S.SCHEDULED:
        return gettext_noop("Programmata: partirà all'orario scelto.")
    return gettext_noop("Messa in coda.")


# --- changing a status -----------------------------------------------------------------------


def transition(
    rows: QuerySet[Delivery],
    *,
    to: str,
    text: str | EventText,
    kind: str = EventKind.ACTION,
    failure: Failure | None = None,
    phase: str = "",
    changes: dict[str, Any] | None = None,
    now: datetime.datetime | None = None,
) -> list[int]:
    """Move the rows of ``rows`` (a filtered queryset: its conditions are the allowed
    current states) to ``to``, with one timeline event each, in one transaction. Rows a
    worker holds locked are skipped. Returns the ids that moved."""
    now = now or timezone.now()
    fields: dict[str, Any] = {"status": to, "updated_at": now}
    if failure is not None:
        fields.update(failure.columns())
    fields.update(changes or {})
    with transaction.atomic():
        ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if not ids:
            return []
        moved = rows.filter(pk__in=ids).update(**fields)
        if moved != len(ids):
            # Without row locks (SQLite) another writer may have won some rows.
            ids = list(
                Delivery.objects.filter(pk__in=ids, status=to, updated_at=now).values_list(
                    "pk", flat=True
                )
            )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=pk,
                created_at=now,
                kind=kind,
                status=to,
                phase=(phase or (failure.phase if failure else ""))[:20],
                reply_code=failure.code if failure else None,
                enhanced_code=failure.enhanced[:20] if failure else "",
                **_text_columns(text),
            )
            for pk in ids
        )
    return ids


def note(delivery: Delivery, *, text: str | EventText, kind: str) -> DeliveryEvent:
    """A timeline event that changes nothing of the row (a secure link downloaded or
    revoked): the status it records is the row's current one."""
    return DeliveryEvent.objects.create(
        delivery_id=delivery.pk,
        created_at=timezone.now(),
        kind=kind,
        status=delivery.status,
        **_text_columns(text),
    )


def claim(
    pk: int,
    *,
    phase: str = Phase.CONNECT,
    snapshot: Delivery | None = None,
    phase_if_reloaded: str | None = None,
) -> Delivery | None:
    """``queued`` (or due ``deferred``) → ``sending`` with a lease at ``phase``, counting
    the attempt; ``None`` if another worker has it or it is no longer waiting. No event:
    the attempt's event is written with its outcome (:func:`record`).

    ``snapshot``: the row as the batch loaded it (with its invoice and practitioner). When
    the row has not changed since (same ``updated_at`` and ``attempts``) the claim is one
    ``UPDATE`` and the snapshot is returned, brought up to date; otherwise the row is
    claimed (at ``phase_if_reloaded`` when given: what the caller prepared from the
    snapshot is stale) and loaded again."""
    now = timezone.now()
    lease = _lease()
    changes: dict[str, Any] = {
        "status": S.SENDING,
        "phase": phase,
        # The database's clock, as the sweeper's comparison: the workers' clocks may differ.
        "lease_expires_at": Now() + lease,
        "next_attempt_at": None,
        "updated_at": now,
    }
    rows = Delivery.objects.filter(pk=pk).filter(waiting(now))
    if snapshot is not None:
        unchanged = rows.filter(updated_at=snapshot.updated_at, attempts=snapshot.attempts)
        if unchanged.update(attempts=F("attempts") + 1, **changes):
            for name, value in changes.items():
                setattr(snapshot, name, value)
            snapshot.lease_expires_at = now + lease  # about: the database's is the one
            snapshot.attempts += 1
            return snapshot
        if phase_if_reloaded is not None:
            changes["phase"] = phase_if_reloaded
    if not rows.update(attempts=F("attempts") + 1, **changes):
        return None
    return Delivery.objects.select_related("invoice", "practitioner").get(pk=pk)


def _lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=conf.lease_seconds())


def release_scheduled(*, now: datetime.datetime, limit: int = 5000) -> list[int]:
    """Scheduled rows whose time has come go to the queue (one event each); returns their
    ids for publishing."""
    due = list(
        Delivery.objects.filter(status=S.SCHEDULED, scheduled_for__lte=now)
        .order_by("scheduled_for")
        .values_list("pk", flat=True)[:limit]
    )
    if not due:
        return []
    return transition(
        Delivery.objects.filter(pk__in=due, status=S.SCHEDULED, scheduled_for__lte=now),
        to=S.QUEUED,
        text=gettext_noop("È arrivato l'orario programmato: messa in coda."),
        changes={"queued_at": now},
        now=now,
    )


def wake_due(ids: Sequence[int], *, now: datetime.datetime) -> int:
    """Due retries back to ``queued`` for publishing; no event (the retry's attempt has
    its own)."""
    return Delivery.objects.filter(
        pk__in=list(ids), status=S.DEFERRED, next_attempt_at__lte=now
    ).update(status=S.QUEUED, queued_at=now, updated_at=now)


def mark_phase(delivery: Delivery, phase: str) -> bool:
    """Record how far the attempt got (so a dead worker's row is judged by it) and renew its
    lease; whether the attempt still owns the row. The attempt count is the fencing token:
    another worker's claim counts a new attempt, and this conditional update then changes
    nothing."""
    if delivery.phase == phase:
        return True
    owned = Delivery.objects.filter(
        pk=delivery.pk, status=S.SENDING, attempts=delivery.attempts
    ).update(phase=phase, lease_expires_at=Now() + _lease())
    delivery.phase = phase
    return bool(owned)


def backoff_seconds(attempts: int, *, retry_after: float | None = None) -> float:
    """Exponential backoff with ±20 % jitter: base, 2×base, 4×base… capped; never shorter
    than the server's own ``retry_after``."""
    base = conf.retry_base_seconds()
    delay = min(conf.retry_max_delay_seconds(), base * (2 ** max(0, attempts - 1)))
    delay *= random.uniform(0.8, 1.2)
    return max(delay, retry_after or 0.0)


def next_status(delivery: Delivery, failure: Failure) -> tuple[str, Failure]:
    """The status a failed attempt leaves the row in, and the failure as recorded: maybe
    sent (``unknown``), the mailbox must be fixed (``held``), retry (``deferred``), or given
    up (``failed``, with ``expired`` once retries ran out)."""
    if failure.after_data:
        return S.UNKNOWN, failure
    if failure.is_configuration_error:
        return S.HELD, failure
    if failure.is_temporary:
        if (
            failure.error_class == ErrorClass.INTERNAL_ERROR
            and delivery.attempts >= conf.max_internal_errors()
        ):
            return S.FAILED, failure
        return S.DEFERRED, failure
    return S.FAILED, failure


def _retry_at(delivery: Delivery, failure: Failure, now: datetime.datetime) -> datetime.datetime:
    delay = backoff_seconds(delivery.attempts, retry_after=failure.retry_after)
    return now + datetime.timedelta(seconds=delay)


def _expired(delivery: Delivery, next_at: datetime.datetime) -> bool:
    # Time spent waiting for the Smart Mail daily quota does not count toward the max age.
    started = max(delivery.created_at, delivery.quota_wait_until or delivery.created_at)
    return (next_at - started).total_seconds() > conf.retry_max_age_seconds()


def record(delivery: Delivery, result: Accepted | Failure) -> str:
    """Store the outcome of the attempt the worker claimed, with its event; returns the row's
    new status, or "" when the row changed hands meanwhile (its lease ran out)."""
    now = timezone.now()
    fields: dict[str, Any] = {"lease_expires_at": None, "updated_at": now}
    if isinstance(result, Accepted):
        status: str = S.SENT
        fields.update(NO_FAILURE_COLUMNS, phase=Phase.DONE, sent_at=now)
        if result.esp_message_id:
            fields["esp_message_id"] = result.esp_message_id[:255]
        event = {"reply_code": result.code, "enhanced_code": result.enhanced[:20]}
        text: str | EventText = result.reply or gettext_noop("Accettata dal server.")
        event_phase: str = Phase.DONE
    else:
        status, failure = next_status(delivery, result)
        reply = result.reply or str(dict(ErrorClass.choices).get(failure.error_class, ""))
        text = reply
        if status == S.DEFERRED:
            next_at = _retry_at(delivery, failure, now)
            if _expired(delivery, next_at):
                status, failure = S.FAILED, failure.with_class(ErrorClass.EXPIRED)
                text = EventText(gettext_noop("Tentativi esauriti: %(reply)s"), {"reply": reply})
            else:
                fields["next_attempt_at"] = next_at
                text = EventText(
                    gettext_noop("%(reply)s — nuovo tentativo tra %(seconds)d secondi."),
                    {"reply": reply, "seconds": round((next_at - now).total_seconds())},
                )
        fields.update(failure.columns(), phase=failure.phase or delivery.phase)
        event = {"reply_code": failure.code, "enhanced_code": failure.enhanced[:20]}
        event_phase = failure.phase
    fields["status"] = status
    follow = []
    if status == S.SENT and delivery.role != RecipientRole.COPY:
        follow.append((Invoice.objects.filter(pk=delivery.invoice_id), {"last_emailed_at": now}))
    # The row, its event and the invoice: one statement on PostgreSQL (outbox.statements).
    recorded = statements.update_then(
        Delivery.objects.filter(
            pk=delivery.pk, attempts=delivery.attempts, status__in=(S.SENDING, S.UNKNOWN)
        ),
        fields,
        insert=DeliveryEvent(
            delivery_id=delivery.pk,
            created_at=now,
            kind=EventKind.ATTEMPT,
            status=status,
            phase=(event_phase or "")[:20],
            **_text_columns(text),
            **event,
        ),
        follow=follow,
    )
    if not recorded:
        logger.warning("Delivery %s changed hands; outcome %s not recorded", delivery.pk, status)
        return ""
    telemetry.record_attempt(
        channel=delivery.channel, status=status, error_class=fields.get("last_error_class", "")
    )
    for name, value in fields.items():
        setattr(delivery, name, value)
    return status


def defer_rows(ids: Iterable[int], failure: Failure, *, text: str | EventText) -> list[int]:
    """Rows of a batch not yet tried share the session's temporary failure: they wait."""
    now = timezone.now()
    next_at = now + datetime.timedelta(seconds=backoff_seconds(1, retry_after=failure.retry_after))
    return transition(
        Delivery.objects.filter(pk__in=list(ids), status=S.QUEUED),
        to=S.DEFERRED,
        text=text,
        kind=EventKind.ATTEMPT,
        failure=failure,
        changes={"next_attempt_at": next_at},
        now=now,
    )


# --- the after-send rule ---------------------------------------------------------------------
# What news that comes back after "inviata" does to a delivery, from every source: the ESP's
# webhooks (Smart Mail), a bounce found in the practitioner's mailbox, a PEC receipt. Each
# reader parses its evidence into a (source, news) pair and calls :func:`apply_news`; this
# table alone decides. A status not listed for a pair means the news does not apply to the
# row (it is not sent yet, or was never sent): nothing is recorded.
#
# The choices, deliberately:
# - news never makes a row look better: after bounced, complained or failed, a "delivered"
#   is only a timeline note; a complaint is the worst news and nothing overrides it;
# - the ESP's own later word overrides its "delivered" (a hard bounce or a complaint after
#   delivery is real: the ESP is authenticated and saw it);
# - a PEC receipt of delivery is the legal proof: a later bounce read in the mailbox, or a
#   later PEC non-delivery notice, is noted on the timeline and changes nothing;
# - an address is suppressed only when the news itself moves the row, or when the ESP
#   reports a hard bounce or a complaint on a row that already shows bad news: the address
#   is what is wrong.


class Source(models.TextChoices):
    WEBHOOK = "webhook", "ESP webhook"
    MAILBOX = "mailbox", "bounce in the mailbox"
    PEC = "pec", "PEC receipt"


class News(models.TextChoices):
    DELIVERED = "delivered", "delivered"
    BOUNCED = "bounced", "hard bounce"
    COMPLAINED = "complained", "complaint"
    FAILED = "failed", "not delivered"
    NOTE = "note", "timeline only"


@dataclass(frozen=True)
class Effect:
    """What one piece of news does to a row in one status."""

    to: str | None = None  # the new status; None: a timeline note, the status stays
    suppress: str = ""  # the SuppressedAddress reason the news gives the address


NOTE = Effect()
_bounced = Effect(S.BOUNCED, suppress="bounced")
_complained = Effect(S.COMPLAINED, suppress="complained")
_note_bounced = Effect(suppress="bounced")
_note_complained = Effect(suppress="complained")

#: (source, news) → {current status: effect}
AFTER_SEND_RULE: dict[tuple[str, str], dict[str, Effect]] = {
    (Source.WEBHOOK, News.DELIVERED): {
        S.SENT: Effect(S.DELIVERED),
        S.UNKNOWN: Effect(S.DELIVERED),
        S.DELIVERED: NOTE,
        S.BOUNCED: NOTE,
        S.COMPLAINED: NOTE,
        S.FAILED: NOTE,
    },
    (Source.WEBHOOK, News.BOUNCED): {
        S.SENT: _bounced,
        S.UNKNOWN: _bounced,
        S.DELIVERED: _bounced,
        S.BOUNCED: _note_bounced,
        S.COMPLAINED: NOTE,
        S.FAILED: _note_bounced,
    },
    (Source.WEBHOOK, News.COMPLAINED): {
        S.SENT: _complained,
        S.UNKNOWN: _complained,
        S.DELIVERED: _complained,
        S.BOUNCED: _complained,
        S.COMPLAINED: _note_complained,
        S.FAILED: _complained,
    },
    (Source.WEBHOOK, News.FAILED): {
        S.SENT: Effect(S.FAILED),
        S.UNKNOWN: Effect(S.FAILED),
        S.DELIVERED: NOTE,
        S.BOUNCED: NOTE,
        S.COMPLAINED: NOTE,
        S.FAILED: NOTE,
    },
    (Source.WEBHOOK, News.NOTE): dict.fromkeys(
        (S.SENT, S.UNKNOWN, S.DELIVERED, S.BOUNCED, S.COMPLAINED, S.FAILED), NOTE
    ),
    # A bounce on a row that already shows bad news is the same news again: nothing.
    (Source.MAILBOX, News.BOUNCED): {
        S.SENT: _bounced,
        S.UNKNOWN: _bounced,
        S.DELIVERED: NOTE,
    },
    (Source.MAILBOX, News.NOTE): dict.fromkeys(
        (S.SENT, S.UNKNOWN, S.DELIVERED, S.BOUNCED, S.FAILED), NOTE
    ),
    (Source.PEC, News.DELIVERED): {
        S.SENT: Effect(S.DELIVERED),
        S.UNKNOWN: Effect(S.DELIVERED),
        S.DELIVERED: NOTE,
        S.BOUNCED: NOTE,
        S.FAILED: NOTE,
    },
    (Source.PEC, News.FAILED): {
        S.SENT: Effect(S.FAILED),
        S.UNKNOWN: Effect(S.FAILED),
        S.DELIVERED: NOTE,
        S.BOUNCED: NOTE,
        S.FAILED: NOTE,
    },
    (Source.PEC, News.NOTE): dict.fromkeys(
        (S.SENT, S.UNKNOWN, S.DELIVERED, S.BOUNCED, S.FAILED), NOTE
    ),
}

_EVENT_KIND: dict[str, str] = {
    Source.WEBHOOK: EventKind.WEBHOOK,
    Source.MAILBOX: EventKind.MAILBOX,
    Source.PEC: EventKind.MAILBOX,
}


def apply_news(
    delivery_id: int,
    *,
    source: str,
    news: str,
    text: str | EventText,
    failure: Failure | None = None,
) -> Effect | None:
    """Apply ``news`` from ``source`` to the delivery, as :data:`AFTER_SEND_RULE` says: its
    new status (with ``failure`` when it moves), or a timeline note, and the address's
    suppression. Returns the effect, or None when the news does not apply to the row."""
    with transaction.atomic():
        current = (
            Delivery.objects.select_for_update()
            .only("status", "practitioner_id", "recipient")
            .get(pk=delivery_id)
        )
        effect = AFTER_SEND_RULE[(source, news)].get(current.status)
        if effect is None:
            return None
        transition(
            Delivery.objects.filter(pk=current.pk, status=current.status),
            to=effect.to or current.status,
            text=text,
            kind=_EVENT_KIND[source],
            failure=failure if effect.to else None,
        )
        if effect.suppress:
            SuppressedAddress.objects.get_or_create(
                practitioner_id=current.practitioner_id,
                address=current.recipient.lower(),
                defaults={"reason": effect.suppress},
            )
    return effect
