"""The Smart Mail reputation of each practitioner: bounce and complaint rates over rolling
windows, and the state they give (*regolare*, *a rischio*, *sospeso*).

ESPs judge the platform's one account, never a practitioner, so one practitioner's old
patient list could stop every practitioner's invoices. The guard measures each practitioner
the way multi-tenant senders do: per window (``EMAILSETTINGS_REPUTATION_WINDOWS_DAYS``), the
unique recipients of the Smart Mail messages sent in it and how many of those addresses hard
bounced or complained (the statuses the ESP's webhooks set through the after-send rule; soft
bounces never count). A rate counts only once the window holds
``EMAILSETTINGS_REPUTATION_MIN_RECIPIENTS`` recipients and
``EMAILSETTINGS_REPUTATION_MIN_EVENTS`` such addresses; the worst window wins. The
thresholds are settings, below the ESPs' own.

Only the practitioners with a bounce or a complaint in the longest window (or a state to
bring back) are measured, in one grouped query over the partial index
``delivery_reputation``; :func:`refresh` stores the result in
:class:`~emailsettings.models.Reputation` and returns the changes, whose effects (the email,
holding the queue) belong to :mod:`emailsettings.health.reputation`. A suspension is never
lifted here: only the operator lifts it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce, Greatest, Lower
from django.utils import timezone

from emailsettings import conf
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Reputation,
    ReputationState,
)

BOUNCES = "bounces"
COMPLAINTS = "complaints"
_SEVERITY = {ReputationState.REGULAR: 0, ReputationState.AT_RISK: 1, ReputationState.SUSPENDED: 2}


@dataclass(frozen=True)
class Window:
    """What one practitioner's window holds: unique recipients, and the addresses among
    them that hard bounced or complained."""

    days: int
    recipients: int
    bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.recipients if self.recipients else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.recipients if self.recipients else 0.0


@dataclass(frozen=True)
class Verdict:
    """The state the windows give, with the window (and rate) that decided it."""

    state: str
    window: Window
    reason: str = ""


@dataclass(frozen=True)
class Change:
    practitioner_id: int
    before: str
    after: str
    verdict: Verdict


def severity(state: str) -> int:
    return _SEVERITY.get(ReputationState(state), 0)


def measure(
    *, practitioner_ids: Iterable[int] | None = None, now: datetime.datetime | None = None
) -> dict[int, list[Window]]:
    """Every window of every practitioner who sent Smart Mail in the longest one (or of
    ``practitioner_ids``), in one grouped query. A window starts no earlier than the
    practitioner's ``counted_since`` (the operator's last lift)."""
    now = now or timezone.now()
    windows = conf.reputation_windows_days()
    longest = now - datetime.timedelta(days=max(windows))
    rows = Delivery.objects.filter(
        channel=Channel.SMART_MAIL, sent_at__isnull=False, sent_at__gte=longest
    )
    if practitioner_ids is not None:
        rows = rows.filter(practitioner_id__in=list(practitioner_ids))
    address = Lower("recipient")
    bounced = Q(status=DeliveryStatus.BOUNCED)
    complained = Q(status=DeliveryStatus.COMPLAINED)
    aggregates = {}
    for days in windows:
        start = now - datetime.timedelta(days=days)
        since = Greatest(
            Value(start),
            Coalesce(F("practitioner__smart_mail_reputation__counted_since"), Value(start)),
        )
        in_window = Q(sent_at__gte=since)
        aggregates[f"r{days}"] = Count(address, distinct=True, filter=in_window)
        aggregates[f"b{days}"] = Count(address, distinct=True, filter=in_window & bounced)
        aggregates[f"c{days}"] = Count(address, distinct=True, filter=in_window & complained)
    result: dict[int, list[Window]] = {}
    for row in rows.values("practitioner_id").annotate(**aggregates).order_by():
        result[row["practitioner_id"]] = [
            Window(days, row[f"r{days}"], row[f"b{days}"], row[f"c{days}"]) for days in windows
        ]
    return result


def judge(windows: Iterable[Window]) -> Verdict:
    """The worst window wins; a rate counts only with enough recipients and addresses."""
    min_recipients = conf.reputation_min_recipients()
    min_events = conf.reputation_min_events()
    limits = (
        (BOUNCES, "bounced", conf.reputation_bounce_warn(), conf.reputation_bounce_suspend()),
        (
            COMPLAINTS,
            "complained",
            conf.reputation_complaint_warn(),
            conf.reputation_complaint_suspend(),
        ),
    )
    best: Verdict | None = None
    for window in windows:
        if best is None:
            best = Verdict(ReputationState.REGULAR, window)
        if window.recipients < min_recipients:
            continue
        for reason, count_name, warn, suspend in limits:
            count = getattr(window, count_name)
            if count < min_events:
                continue
            rate = count / window.recipients
            if rate >= suspend:
                state = ReputationState.SUSPENDED
            elif rate >= warn:
                state = ReputationState.AT_RISK
            else:
                continue
            candidate = Verdict(state, window, reason)
            if _worse(candidate, best):
                best = candidate
    return best or Verdict(ReputationState.REGULAR, Window(0, 0, 0, 0))


def _worse(candidate: Verdict, current: Verdict) -> bool:
    if severity(candidate.state) != severity(current.state):
        return severity(candidate.state) > severity(current.state)
    if current.state == ReputationState.REGULAR:
        return False

    def rate(verdict: Verdict) -> float:
        if verdict.reason == COMPLAINTS:
            return verdict.window.complaint_rate
        return verdict.window.bounce_rate

    return rate(candidate) > rate(current)


def refresh(
    *, practitioner_ids: Iterable[int] | None = None, now: datetime.datetime | None = None
) -> list[Change]:
    """Measure, judge and store; returns the practitioners whose state changed. A
    suspension stays until the operator lifts it; *a rischio* goes back to *regolare* by
    itself when the rates fall."""
    now = now or timezone.now()
    ids = None if practitioner_ids is None else list(practitioner_ids)
    if ids is None:
        # Only a practitioner with a bounce or a complaint in the longest window can leave
        # *regolare*, and only one who left it can come back: the others are not measured,
        # so the job scales with the practitioners in trouble, not with the platform.
        ids = list(_candidates(now) | _flagged())
    measured = measure(practitioner_ids=ids, now=now)
    existing = {
        row.practitioner_id: row for row in Reputation.objects.filter(practitioner_id__in=ids)
    }
    changes: list[Change] = []
    for practitioner_id in set(measured) | set(existing):
        verdict = judge(measured.get(practitioner_id, []))
        row = existing.get(practitioner_id)
        if row is None and verdict.state == ReputationState.REGULAR:
            continue  # no row means regular: nothing to write for a quiet account
        change = _store(practitioner_id, row, verdict, now)
        if change is not None:
            changes.append(change)
    return changes


def _candidates(now: datetime.datetime) -> set[int]:
    """Practitioners with a hard bounce or a complaint among their Smart Mail sends of the
    longest window (few rows: the ``delivery_due`` index leads with the status)."""
    longest = now - datetime.timedelta(days=max(conf.reputation_windows_days()))
    return set(
        Delivery.objects.filter(
            status__in=(DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED),
            channel=Channel.SMART_MAIL,
            sent_at__gte=longest,
        )
        .values_list("practitioner_id", flat=True)
        .distinct()
    )


def _flagged() -> set[int]:
    return set(
        Reputation.objects.exclude(state=ReputationState.REGULAR).values_list(
            "practitioner_id", flat=True
        )
    )


def _store(
    practitioner_id: int, row: Reputation | None, verdict: Verdict, now: datetime.datetime
) -> Change | None:
    with transaction.atomic():
        row, _created = Reputation.objects.select_for_update().get_or_create(
            practitioner_id=practitioner_id, defaults={"checked_at": now, "changed_at": now}
        )
        before = row.state
        after = verdict.state
        if before == ReputationState.SUSPENDED:
            after = before  # only the operator lifts a suspension
        fields: dict[str, object] = {"checked_at": now}
        if after == verdict.state:
            window = verdict.window
            fields.update(
                window_days=window.days,
                recipients=window.recipients,
                bounced=window.bounced,
                complained=window.complained,
                reason=verdict.reason,
            )
        if after != before:
            fields.update(state=after, changed_at=now)
            if after == ReputationState.SUSPENDED:
                fields["suspended_at"] = now
            if after == ReputationState.REGULAR:
                fields["warned_at"] = None
        Reputation.objects.filter(pk=row.pk).update(**fields)
    if after == before:
        return None
    return Change(practitioner_id, before, after, verdict)


def state_of(*, practitioner_id: int) -> str:
    """The stored state (*regolare* without a row): one indexed read, for the worker."""
    state = (
        Reputation.objects.filter(practitioner_id=practitioner_id)
        .values_list("state", flat=True)
        .first()
    )
    return state or ReputationState.REGULAR


def is_suspended(*, practitioner_id: int) -> bool:
    return state_of(practitioner_id=practitioner_id) == ReputationState.SUSPENDED


def claim_warning(*, practitioner_id: int, now: datetime.datetime | None = None) -> bool:
    """Whether this caller sends the one *a rischio* email (a conditional update: two
    workers never both send it)."""
    return bool(
        Reputation.objects.filter(
            practitioner_id=practitioner_id,
            state=ReputationState.AT_RISK,
            warned_at__isnull=True,
        ).update(warned_at=now or timezone.now())
    )


def lift(*, practitioner_id: int, now: datetime.datetime | None = None) -> dict | None:
    """Lift the suspension (the operator's decision, recorded by the caller): regular
    again, rates counted afresh from now. Returns the suspension's numbers, or None when
    the practitioner was not suspended."""
    now = now or timezone.now()
    with transaction.atomic():
        row = (
            Reputation.objects.select_for_update()
            .filter(practitioner_id=practitioner_id, state=ReputationState.SUSPENDED)
            .first()
        )
        if row is None:
            return None
        numbers = {
            "window_days": row.window_days,
            "recipients": row.recipients,
            "bounced": row.bounced,
            "complained": row.complained,
            "reason": row.reason,
            "suspended_at": row.suspended_at.isoformat() if row.suspended_at else "",
        }
        Reputation.objects.filter(pk=row.pk).update(
            state=ReputationState.REGULAR,
            changed_at=now,
            checked_at=now,
            counted_since=now,
            warned_at=None,
            window_days=0,
            recipients=0,
            bounced=0,
            complained=0,
            reason="",
        )
    return numbers
