"""The per-status counters the database keeps (``DeliveryCount``, triggers of migrations
0015 and 0023): they follow every insert, status change and delete, whoever writes it, and the
report's "all time" counters read them instead of counting the whole history."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from emailsettings import report
from emailsettings.failures import Accepted
from emailsettings.models import Channel, Delivery, DeliveryCount, DeliveryStatus, stored_counts
from emailsettings.outbox import lifecycle
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


def counted(practitioner) -> dict[tuple[str, str], int]:
    rows = (
        Delivery.objects.filter(practitioner=practitioner)
        .order_by()
        .values_list("channel", "status")
        .annotate(n=Count("id"))
    )
    return {(channel, status): n for channel, status, n in rows}


def stored(practitioner) -> dict[tuple[str, str], int]:
    return {
        (row.channel, row.status): row.n
        for row in DeliveryCount.objects.filter(practitioner=practitioner)
        if row.n
    }


def queue(practitioner, count: int) -> list[Delivery]:
    return queue_invoice_emails(
        [
            InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=f"p{n}@x.test"))
            for n in range(count)
        ]
    )


def test_counters_follow_inserts_updates_and_deletes(practitioner, other_practitioner):
    rows = queue(practitioner, 5)
    queue(other_practitioner, 2)
    assert stored(practitioner) == {(Channel.SMART_MAIL, DeliveryStatus.QUEUED): 5}

    send_batch(delivery_ids=[row.pk for row in rows[:3]])
    Delivery.objects.filter(pk=rows[3].pk).update(status=DeliveryStatus.FAILED)
    Delivery.objects.filter(pk=rows[4].pk).update(channel=Channel.SMTP)
    Delivery.objects.filter(pk=rows[0].pk).delete()

    assert (
        stored(practitioner)
        == counted(practitioner)
        == {
            (Channel.SMART_MAIL, DeliveryStatus.SENT): 2,
            (Channel.SMART_MAIL, DeliveryStatus.FAILED): 1,
            (Channel.SMTP, DeliveryStatus.QUEUED): 1,
        }
    )
    assert stored(other_practitioner) == counted(other_practitioner)


def test_all_time_counters_read_the_stored_counts(practitioner):
    rows = queue(practitioner, 4)
    send_batch(delivery_ids=[rows[0].pk])
    filters = report.ReportFilters(period=report.Period.ALL)

    with CaptureQueriesContext(connection) as captured:
        counts = report.status_counts(practitioner=practitioner, filters=filters)

    assert counts[DeliveryStatus.SENT] == 1 and counts[DeliveryStatus.QUEUED] == 3
    assert sum(counts.values()) == 4
    # The stored counters, less the superseded failures found from their successors.
    query, sending, successors = captured.captured_queries
    assert "emailsettings_deliverycount" in query["sql"]
    assert '"emailsettings_delivery"' not in query["sql"]
    assert "sending" in sending["sql"]
    assert '"resend_of_id" IS NOT NULL' in successors["sql"]

    # A channel filter still reads the counters; a search counts rows.
    smtp_only = report.ReportFilters(period=report.Period.ALL, channel=Channel.SMTP)
    assert sum(report.status_counts(practitioner=practitioner, filters=smtp_only).values()) == 0
    searched = report.ReportFilters(period=report.Period.ALL, q="nessuno")
    assert sum(report.status_counts(practitioner=practitioner, filters=searched).values()) == 0


def test_a_claim_changes_no_counter_and_the_readers_still_see_it_sending(practitioner):
    rows = queue(practitioner, 3)

    claimed = lifecycle.claim(rows[0].pk)

    assert claimed is not None and claimed.status == DeliveryStatus.SENDING
    # The triggers keep a row being sent under "queued": the claim wrote no counter.
    assert stored(practitioner) == {(Channel.SMART_MAIL, DeliveryStatus.QUEUED): 3}
    assert stored_counts(practitioner_id=practitioner.pk) == {
        (Channel.SMART_MAIL, DeliveryStatus.QUEUED): 2,
        (Channel.SMART_MAIL, DeliveryStatus.SENDING): 1,
    }
    counts = report.status_counts(
        practitioner=practitioner, filters=report.ReportFilters(period=report.Period.ALL)
    )
    assert counts[DeliveryStatus.QUEUED] == 2 and counts[DeliveryStatus.SENDING] == 1

    lifecycle.record(claimed, Accepted(esp_message_id="x"))

    assert (
        stored(practitioner)
        == counted(practitioner)
        == {
            (Channel.SMART_MAIL, DeliveryStatus.QUEUED): 2,
            (Channel.SMART_MAIL, DeliveryStatus.SENT): 1,
        }
    )
