"""Smart Mail on the wire: anymail's Postmark backend against a local stand-in of Postmark's
send API (``devtools/espserver.py``, a real HTTP/1.1 keep-alive server). A batch keeps up to
``EMAILSETTINGS_SMART_MAIL_CONCURRENCY`` requests in flight on its backend's one keep-alive
session (so at most that many connections, each reused); each batch opens its own and closes
it. Only the requests run in other threads: claims and outcomes stay on the batch's own
database connection, each outcome recorded once."""

from __future__ import annotations

import threading

import pytest
from django.db.backends.signals import connection_created

from devtools.espserver import EspStandIn
from emailsettings.failures import ErrorClass
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EmailSettings,
    EventKind,
)
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def smart_mail(settings, practitioner):
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMART_MAIL}
    )


@pytest.fixture
def slow_esp(settings):
    """The stand-in answering in 0.2 s, as a real ESP that takes its time."""
    with EspStandIn(delay=0.2) as esp:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "POSTMARK_SERVER_TOKEN": "test-server-token",
            "POSTMARK_API_URL": esp.url,
        }
        yield esp


def queue(practitioner, count: int, offset: int = 0) -> list[int]:
    invoices = [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"p{offset + n}@example.test")
        )
        for n in range(count)
    ]
    return [row.pk for row in queue_invoice_emails(invoices)]


def test_a_batch_keeps_several_requests_in_flight_on_a_few_reused_connections(
    settings, slow_esp, smart_mail, practitioner
):
    settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = 3
    ids = queue(practitioner, 9)

    send_batch(delivery_ids=ids)

    rows = Delivery.objects.filter(pk__in=ids)
    assert {row.status for row in rows} == {DeliveryStatus.SENT}
    assert len({row.esp_message_id for row in rows}) == 9
    assert slow_esp.messages == 9
    # Three at once, never more, on at most three connections of one keep-alive pool.
    assert slow_esp.peak == 3
    assert slow_esp.connections <= 3


def test_one_at_a_time_a_batch_uses_one_connection(
    settings, postmark_standin, smart_mail, practitioner
):
    settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = 1
    ids = queue(practitioner, 6)

    send_batch(delivery_ids=ids)

    rows = Delivery.objects.filter(pk__in=ids)
    assert {row.status for row in rows} == {DeliveryStatus.SENT}
    assert all(row.esp_message_id for row in rows)
    assert postmark_standin.messages == 6
    assert postmark_standin.connections == 1
    assert postmark_standin.peak == 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_each_batch_opens_its_own_connections_and_closes_them(
    concurrency, settings, slow_esp, smart_mail, practitioner
):
    settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = concurrency
    first, second = queue(practitioner, 3), queue(practitioner, 3, offset=3)

    send_batch(delivery_ids=first)
    after_first = slow_esp.connections
    send_batch(delivery_ids=second)

    assert slow_esp.messages == 6
    assert 1 <= after_first <= concurrency
    # The second batch found no connection of the first to reuse.
    assert after_first < slow_esp.connections <= 2 * concurrency


def test_a_refused_recipient_mid_batch_fails_alone_and_every_outcome_is_recorded_once(
    settings, slow_esp, smart_mail, practitioner
):
    settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = 3
    ids = queue(practitioner, 7)
    refused = Delivery.objects.get(pk=ids[3])
    slow_esp.refuse(refused.recipient)

    result = send_batch(delivery_ids=ids)

    refused.refresh_from_db()
    assert refused.status == DeliveryStatus.FAILED
    assert refused.last_error_class == ErrorClass.ESP_REJECTED
    others = Delivery.objects.filter(pk__in=ids).exclude(pk=refused.pk)
    assert {row.status for row in others} == {DeliveryStatus.SENT}
    assert set(result.outcomes) == set(ids)
    assert {row.attempts for row in Delivery.objects.filter(pk__in=ids)} == {1}
    attempts = DeliveryEvent.objects.filter(delivery_id__in=ids, kind=EventKind.ATTEMPT)
    assert sorted(attempts.values_list("delivery_id", flat=True)) == sorted(ids)


def test_the_requests_threads_never_open_a_database_connection(
    settings, slow_esp, smart_mail, practitioner
):
    settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = 4
    ids = queue(practitioner, 8)
    opened_in: list[str] = []

    def opened(sender, connection, **kwargs):
        opened_in.append(threading.current_thread().name)

    connection_created.connect(opened)
    try:
        send_batch(delivery_ids=ids)
    finally:
        connection_created.disconnect(opened)

    assert slow_esp.peak == 4
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        DeliveryStatus.SENT
    }
    assert not [name for name in opened_in if name != threading.main_thread().name]
