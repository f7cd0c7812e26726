"""The sweeper (beat, every 30 s): what the workers and the broker left behind.

- A lease that expired belongs to a dead worker. Before the message data was sent the row
  is retried with the same Message-ID — at most ``EMAILSETTINGS_MAX_CRASHES`` times, then it
  is ``failed`` as a poison row (with an operator log line); after the data was sent it is
  ``unknown``, never re-sent without the practitioner's choice.
- Scheduled rows whose time has come are released to the queue and published.
- Due ``deferred`` rows go back to ``queued`` and are published.
- Rows ``queued`` for too long were probably never published (broker down): published again;
  all of them at once when Redis lost its data or beat was away (the backlogs' marker).
- :func:`purge_bodies` drops old message bodies; the delivery records stay.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from emailsettings import conf
from emailsettings.failures import ErrorClass, Failure
from emailsettings.models import Delivery, DeliveryStatus, EventKind, Phase
from emailsettings.outbox import lifecycle, publish
from emailsettings.outbox.dispatch import Dispatcher

logger = logging.getLogger(__name__)


@dataclass
class SweepResult:
    requeued_after_crash: int = 0
    unknown: int = 0
    poisoned: int = 0
    due: int = 0
    stale: int = 0
    released: int = 0


def sweep(*, limit: int = 5000) -> SweepResult:
    """Settle expired leases, wake due retries, re-publish forgotten rows."""
    result = SweepResult()
    now = timezone.now()
    to_publish: list[int] = []

    expired = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_expires_at__lt=Now())
        .order_by("lease_expires_at")
        .values_list("pk", "phase", "attempts", "crashes")[:limit]
    )
    for pk, phase, attempts, crashes in expired:
        rows = Delivery.objects.filter(
            pk=pk, status=DeliveryStatus.SENDING, attempts=attempts, lease_expires_at__lt=Now()
        )
        changes = {"lease_expires_at": None, "queued_at": now, "crashes": F("crashes") + 1}
        if phase == Phase.DATA_SENT:
            moved = lifecycle.transition(
                rows,
                to=DeliveryStatus.UNKNOWN,
                kind=EventKind.ATTEMPT,
                phase=phase,
                failure=Failure(
                    phase=phase,
                    error_class=ErrorClass.UNKNOWN,
                    reply=_("Invio interrotto dopo la consegna del messaggio al server."),
                    after_data=True,
                ),
                text=gettext_noop(
                    "L'invio si è interrotto dopo che il messaggio era stato consegnato al "
                    "server: potrebbe essere arrivato. Non viene reinviato automaticamente."
                ),
                changes=changes,
                now=now,
            )
            result.unknown += len(moved)
        elif crashes + 1 >= conf.max_crashes():
            moved = lifecycle.transition(
                rows,
                to=DeliveryStatus.FAILED,
                kind=EventKind.ATTEMPT,
                phase=phase,
                failure=Failure(
                    phase=phase,
                    error_class=ErrorClass.WORKER_CRASHED,
                    reply=ngettext(
                        "Invio interrotto %(count)d volta prima del messaggio.",
                        "Invio interrotto %(count)d volte prima del messaggio.",
                        crashes + 1,
                    )
                    % {"count": crashes + 1},
                ),
                text=lifecycle.EventText(
                    gettext_noop(
                        "L'invio si è interrotto %(count)d volta prima che il messaggio "
                        "partisse: non viene più ritentato. Il messaggio non è partito."
                    ),
                    {"count": crashes + 1},
                    plural=gettext_noop(
                        "L'invio si è interrotto %(count)d volte prima che il messaggio "
                        "partisse: non viene più ritentato. Il messaggio non è partito."
                    ),
                ),
                changes=changes,
                now=now,
            )
            if moved:
                logger.error(
                    "Delivery %s failed as a poison row: its worker died %s times (phase %s)",
                    pk,
                    crashes + 1,
                    phase or "-",
                )
            result.poisoned += len(moved)
        else:
            moved = lifecycle.transition(
                rows,
                to=DeliveryStatus.QUEUED,
                kind=EventKind.ATTEMPT,
                phase=phase,
                text=gettext_noop("L'invio si è interrotto prima del messaggio: verrà ritentato."),
                changes=changes,
                now=now,
            )
            result.requeued_after_crash += len(moved)
            to_publish.extend(moved)

    released = lifecycle.release_scheduled(now=now, limit=limit)
    result.released = len(released)
    to_publish.extend(released)

    due = list(
        Delivery.objects.filter(status=DeliveryStatus.DEFERRED, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if due:
        result.due = lifecycle.wake_due(due, now=now)
        to_publish.extend(due)

    cutoff = now - datetime.timedelta(seconds=conf.stale_queued_seconds())
    if not Dispatcher().backlogs_intact():
        # Redis came back empty (or beat was away): whatever waited in a backlog or in the
        # broker is gone, so every queued row is published again now, not minutes later (a
        # row whose task did survive is claimed once: the other task finds it taken).
        cutoff = now
    stale = list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, queued_at__lt=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale:
        # Bumping queued_at re-publishes each forgotten row at most once per period.
        result.stale = Delivery.objects.filter(
            pk__in=stale, status=DeliveryStatus.QUEUED, queued_at__lt=cutoff
        ).update(queued_at=now)
        to_publish.extend(stale)

    if to_publish:
        publish.publish_ids(to_publish)
    return result


def purge_bodies() -> int:
    """Drop the message bodies of finished deliveries older than the retention period; the
    delivery record stays."""
    cutoff = timezone.now() - datetime.timedelta(days=conf.body_retention_days())
    return Delivery.objects.filter(
        status__in=lifecycle.FINISHED, created_at__lt=cutoff, body_purged_at__isnull=True
    ).update(body_text="", body_html="", body_purged_at=timezone.now())
