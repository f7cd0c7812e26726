"""What the operator's ``/metrics`` shows, in the Prometheus text format: the outbox's
health read at scrape time from the database (ages, stored counters, mailboxes, reputation
states) and from Redis (the Celery queues, the workers' counters of
:mod:`emailsettings.outbox.telemetry`).

Only counts, ages and labels from fixed sets (channel, status, error class, queue, state):
never an address, a name, a practitioner's id or a secret. Every family here is described
in docs/operations.md ("Metrics"); a test checks both lists match.

To add a metric: a family in :meth:`OutboxCollector.collect` (a prefix ``psicogest_``, a
unit in the name), and its row in the doc.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Max, Min
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    MailboxStatus,
    Reputation,
    ReputationState,
    SmtpAccount,
    stored_counts,
)
from emailsettings.outbox import telemetry
from psicogest.models import Practitioner, WorkerHeartbeat

logger = logging.getLogger(__name__)

# The Celery queues the workers consume (psicogest/celery.py): invoices, and mailboxes.
CELERY_QUEUES = ("celery", "mailbox")


# kombu's Redis transport keeps one list per priority step: "celery", "celery\x06\x163", …
# (the backlog batches go at priority 3, outbox/publish.py).
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


def _queue_length(client: Any, queue: str) -> int:
    names = [queue, *(f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    return sum(int(n) for n in pipe.execute())


def _age(now: datetime.datetime, then: datetime.datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class OutboxCollector(Collector):
    """Collected at each scrape (a few grouped, indexed queries)."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield self._oldest(now)
        yield self._deliveries()
        yield from self._attempts()
        yield from self._queues()
        yield self._heartbeat(now)
        yield from self._mailboxes(now)
        yield self._reputation()

    def _oldest(self, now: datetime.datetime) -> Metric:
        family = GaugeMetricFamily(
            "psicogest_outbox_oldest_age_seconds",
            "Age of the oldest delivery waiting per channel: queued (since queued) and "
            "due_retry (a retry whose time has come, since it came); 0 when none waits.",
            labels=["channel", "wait"],
        )
        queued = dict(
            Delivery.objects.filter(status=DeliveryStatus.QUEUED)
            .values("channel")
            .annotate(oldest=Min("queued_at"))
            .values_list("channel", "oldest")
        )
        due = dict(
            Delivery.objects.filter(status=DeliveryStatus.DEFERRED, next_attempt_at__lte=now)
            .values("channel")
            .annotate(oldest=Min("next_attempt_at"))
            .values_list("channel", "oldest")
        )
        for channel in Channel.values:
            family.add_metric([channel, "queued"], _age(now, queued.get(channel)))
            family.add_metric([channel, "due_retry"], _age(now, due.get(channel)))
        return family

    def _deliveries(self) -> Metric:
        family = GaugeMetricFamily(
            "psicogest_deliveries",
            "Deliveries by channel and status (the stored counters, all practitioners).",
            labels=["channel", "status"],
        )
        counts = stored_counts()
        for channel in Channel.values:
            for status in DeliveryStatus.values:
                family.add_metric([channel, status], float(counts.get((channel, status), 0)))
        return family

    def _attempts(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "psicogest_delivery_attempts",
            "Send attempts recorded by the workers, by channel, the status they left the "
            "delivery in, and error class (empty when sent).",
            labels=["channel", "status", "error_class"],
        )
        answer = SummaryMetricFamily(
            "psicogest_esp_answer_seconds",
            "Time the ESP's send API took to answer a Smart Mail message.",
        )
        try:
            counted = telemetry.attempts()
            seconds, messages = telemetry.esp_answer()
        except Exception as err:  # Redis down: /readyz says so; the rest still shows
            logger.warning("Metrics: outbox counters unavailable: %s", type(err).__name__)
            counted, seconds, messages = {}, 0.0, 0
        for (channel, status, error_class), value in sorted(counted.items()):
            attempts.add_metric([channel, status, error_class], float(value))
        answer.add_metric([], count_value=messages, sum_value=seconds)
        yield attempts
        yield answer

    def _queues(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "psicogest_celery_queue_length",
            "Tasks waiting in each Celery queue of the broker (Redis).",
            labels=["queue"],
        )
        up = GaugeMetricFamily(
            "psicogest_broker_up", "1 when the broker (Redis) answered this scrape."
        )
        client: Any = None
        try:
            client = telemetry.client()
            lengths = (
                {queue: _queue_length(client, queue) for queue in CELERY_QUEUES} if client else {}
            )
            up.add_metric([], 1.0 if client is not None else 0.0)
        except Exception as err:
            logger.warning("Metrics: broker unavailable: %s", type(err).__name__)
            lengths = {}
            up.add_metric([], 0.0)
        for queue in CELERY_QUEUES:
            family.add_metric([queue], float(lengths.get(queue, 0)))
        yield family
        yield up

    def _heartbeat(self, now: datetime.datetime) -> Metric:
        family = GaugeMetricFamily(
            "psicogest_worker_heartbeat_age_seconds",
            "Seconds since a Celery worker last ran the heartbeat task (beat, every minute); "
            "-1 when none ever did.",
        )
        seen = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
        family.add_metric([], _age(now, seen) if seen is not None else -1.0)
        return family

    def _mailboxes(self, now: datetime.datetime) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "psicogest_mailboxes",
            "Practitioners' own mailboxes by health (broken: the daily check or a send "
            "failed on the login or the configuration).",
            labels=["status"],
        )
        counts = dict(
            SmtpAccount.objects.values("status").annotate(n=Count("id")).values_list("status", "n")
        )
        for status in MailboxStatus.values:
            family.add_metric([status], float(counts.get(status, 0)))
        yield family
        lag = GaugeMetricFamily(
            "psicogest_mailbox_reader_lag_seconds",
            "How late the bounce reader is: seconds since the most overdue opted-in mailbox "
            "was due for a read (0 when none is overdue).",
        )
        overdue = SmtpAccount.objects.filter(
            imap_enabled=True, imap_next_read_at__lte=now
        ).aggregate(oldest=Min("imap_next_read_at"))["oldest"]
        lag.add_metric([], _age(now, overdue))
        yield lag

    def _reputation(self) -> Metric:
        family = GaugeMetricFamily(
            "psicogest_practitioners_by_reputation",
            "Practitioners by Smart Mail reputation state (regular, at_risk, suspended).",
            labels=["state"],
        )
        counts = dict(
            Reputation.objects.exclude(state=ReputationState.REGULAR)
            .values("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        flagged = sum(counts.values())
        counts[ReputationState.REGULAR] = Practitioner.objects.count() - flagged
        for state in ReputationState.values:
            family.add_metric([state], float(counts.get(state, 0)))
        return family
