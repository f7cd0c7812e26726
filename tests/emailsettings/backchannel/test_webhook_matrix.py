"""Every anymail sample payload through the real webhook URL, into the project's tracking.

The payloads are django-anymail's own test-suite samples (tests/support/webhook_samples.py), posted
to ``/anymail/<esp>/tracking/`` with the project's webhook security, so what is pinned here
is the whole path: anymail's view → the ``tracking`` signal → ``emailsettings.receivers`` →
``emailsettings.backchannel.webhooks``. Per kind: the status a ``sent`` Smart Mail row moves
to, its error class, whether the address is suppressed, and exactly one webhook timeline
event. Then what must change nothing: a wrong secret, another tenant's ids, a personal-SMTP
row, a recipient that is not the row's, a replayed event; and an event that arrives while
the row is still ``sending``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from django.core import mail
from django.test import Client

from emailsettings.backchannel import webhooks as tracking
from emailsettings.failures import Accepted
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    SuppressedAddress,
    WebhookEvent,
    WebhookState,
)
from emailsettings.outbox import lifecycle
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.tasks import send_deliveries_task
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory
from tests.support.webhook_samples import ESPS, SAMPLES, available, build, post

pytestmark = [
    pytest.mark.django_db,
    # anymail's SendGrid view warns on every request that SendGrid support was dropped.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]

SECRET = "esp:segreto"
SIGNING_KEY = "chiave-firma-mailgun"
WHEN = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
TRACKING_LOGGER = "emailsettings.backchannel.webhooks"

CASES = [(esp, kind) for esp in ESPS for kind in available(esp)]


def esp_message_id(esp: str, n: int = 1) -> str:
    """A message id in the shape ``esp``'s send API returns (Mailgun's are bracketed)."""
    return {
        "postmark": f"0a5b1c9e-4d1f-4c55-9a0e-{n:012x}",
        "mailgun": f"<20261127100000.{n}.A1B2C3D4E5F60718@mg.psicogest.test>",
        "sendgrid": f"6f2a0b7e-3f4e-4a3c-9a56-{n:012x}",
        "amazon_ses": f"0100019a6b7c8d9e-1f2a3b4c-5d6e-4f70-8192-{n:012x}-000000",
        "brevo": f"<202611271000.{n:011d}@smtp-relay.mailin.fr>",
    }[esp]


@dataclass(frozen=True)
class Expect:
    """What one event does to a ``sent`` Smart Mail row."""

    status: str
    error_class: str
    #: the SuppressedAddress reason, or None: the address is not suppressed
    suppressed: str | None


EXPECT = {
    "delivered": Expect(DeliveryStatus.DELIVERED, "", None),
    "hard_bounce": Expect(DeliveryStatus.BOUNCED, "bounced", "bounced"),
    "complaint": Expect(DeliveryStatus.COMPLAINED, "complained", "complained"),
    "soft_bounce": Expect(DeliveryStatus.SENT, "", None),
    "rejected": Expect(DeliveryStatus.FAILED, "esp_rejected", None),
    "failed": Expect(DeliveryStatus.FAILED, "esp_failed", None),
}


@pytest.fixture(autouse=True)
def webhook_security(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }


@pytest.fixture
def anymail_backend(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    mail.outbox = []
    return settings


def sent_row(practitioner=None, *, esp: str, n: int = 1, **fields: Any) -> Delivery:
    """A Smart Mail row the ESP accepted, with an ESP-shaped message id."""
    extra: dict[str, Any] = {}
    if practitioner is not None:
        extra["invoice"] = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    fields.setdefault("status", DeliveryStatus.SENT)
    fields.setdefault("esp_message_id", esp_message_id(esp, n))
    return DeliveryFactory(**extra, **fields)


def event_request(esp: str, kind: str, delivery: Delivery | None = None, **overrides: Any):
    """The sample for ``(esp, kind)`` about ``delivery``, authenticated (and signed)."""
    arguments: dict[str, Any] = {
        "timestamp": WHEN,
        "basic_auth": SECRET,
        "mailgun_signing_key": SIGNING_KEY if esp == "mailgun" else None,
    }
    if delivery is not None:
        arguments.update(
            message_id=delivery.esp_message_id,
            recipient=delivery.recipient,
            delivery_id=str(delivery.pk),
        )
    arguments.update(overrides)
    return build(esp, kind, **arguments)


def distinct(esp: str, kind: str, n: int) -> dict[str, Any]:
    """Overrides that make the n-th post a different event (some samples share event ids)."""
    overrides: dict[str, Any] = {"timestamp": WHEN + timedelta(minutes=n)}
    if SAMPLES[esp, kind].event_id is not None:
        overrides["event_id"] = str(900_000 + n)  # numeric: Postmark's ID is a number
    return overrides


def snapshot(delivery: Delivery) -> tuple[Any, ...]:
    row = Delivery.objects.get(pk=delivery.pk)
    events = list(row.events.values_list("kind", "status", "text"))
    return (
        row.status,
        row.last_error_class,
        row.last_error_text,
        row.esp_message_id,
        row.updated_at,
        events,
    )


def webhook_events(delivery: Delivery):
    return DeliveryEvent.objects.filter(delivery=delivery, kind=EventKind.WEBHOOK)


def mismatch_warnings(caplog) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == TRACKING_LOGGER
        and record.levelno == logging.WARNING
        and "mismatch" in record.getMessage()
    ]


# --- what each kind does ------------------------------------------------------------------


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_each_sample_moves_the_sent_row_as_its_kind_says(client, esp, kind):
    delivery = sent_row(esp=esp)
    expect = EXPECT[kind]

    response = post(client, event_request(esp, kind, delivery))

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == expect.status
    assert delivery.last_error_class == expect.error_class
    [event] = webhook_events(delivery)
    assert event.status == expect.status
    assert event.text
    suppressed = SuppressedAddress.objects.filter(
        practitioner=delivery.practitioner, address=delivery.recipient.lower()
    )
    if expect.suppressed is None:
        assert not suppressed.exists()
        assert SuppressedAddress.objects.count() == 0
    else:
        assert [s.reason for s in suppressed] == [expect.suppressed]
    stored = WebhookEvent.objects.get()
    assert stored.state == WebhookState.APPLIED
    assert stored.delivery_id == delivery.pk
    assert stored.soft is (kind == "soft_bounce")


@pytest.mark.parametrize("esp", ESPS)
def test_distinct_events_for_one_message_are_all_applied_and_worse_news_wins(client, esp):
    delivery = sent_row(esp=esp)

    for n, kind in enumerate(("delivered", "hard_bounce", "delivered")):
        response = post(client, event_request(esp, kind, delivery, **distinct(esp, kind, n)))
        assert response.status_code == 200

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED  # a late "delivered" hides nothing
    assert list(webhook_events(delivery).values_list("status", flat=True)) == [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.BOUNCED,
    ]
    assert SuppressedAddress.objects.filter(practitioner=delivery.practitioner).count() == 1


@pytest.mark.parametrize("esp", ESPS)
def test_event_without_metadata_is_matched_by_the_message_id_alone(client, esp):
    delivery = sent_row(esp=esp)

    post(client, event_request(esp, "hard_bounce", delivery, delivery_id=None))

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert SuppressedAddress.objects.filter(practitioner=delivery.practitioner).exists()


@pytest.mark.parametrize("esp", ESPS)
def test_recipient_is_compared_without_regard_to_case(client, esp):
    delivery = sent_row(esp=esp)

    post(client, event_request(esp, "hard_bounce", delivery, recipient=delivery.recipient.upper()))

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    [suppressed] = SuppressedAddress.objects.all()
    assert suppressed.address == delivery.recipient.lower()


# --- webhook security ---------------------------------------------------------------------


@pytest.mark.parametrize("basic_auth", ["esp:sbagliato", None])
@pytest.mark.parametrize("esp", ESPS)
def test_wrong_or_missing_secret_is_refused_and_changes_nothing(client, esp, basic_auth):
    delivery = sent_row(esp=esp)
    before = snapshot(delivery)

    response = post(client, event_request(esp, "hard_bounce", delivery, basic_auth=basic_auth))

    assert response.status_code in (400, 401, 403)
    assert snapshot(delivery) == before
    assert SuppressedAddress.objects.count() == 0
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("signing_key", ["chiave-sbagliata", None])
def test_mailgun_event_without_a_valid_signature_changes_nothing(client, signing_key):
    delivery = sent_row(esp="mailgun")
    before = snapshot(delivery)

    response = post(
        client, event_request("mailgun", "hard_bounce", delivery, mailgun_signing_key=signing_key)
    )

    assert response.status_code == 400
    assert snapshot(delivery) == before
    assert SuppressedAddress.objects.count() == 0
    assert WebhookEvent.objects.count() == 0


# --- other tenants, other channels, other recipients ------------------------------------------


@pytest.mark.parametrize("recipient_of", ["a", "b"])
@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_tenant_a_message_id_with_tenant_b_delivery_id_changes_neither(
    client, caplog, practitioner, other_practitioner, esp, kind, recipient_of
):
    row_a = sent_row(practitioner, esp=esp, n=1)
    row_b = sent_row(other_practitioner, esp=esp, n=2)
    before_a, before_b = snapshot(row_a), snapshot(row_b)
    recipient = (row_a if recipient_of == "a" else row_b).recipient
    caplog.set_level(logging.INFO, logger=TRACKING_LOGGER)

    response = post(
        client,
        event_request(
            esp,
            kind,
            message_id=row_a.esp_message_id,
            recipient=recipient,
            delivery_id=str(row_b.pk),
        ),
    )

    assert response.status_code == 200
    assert snapshot(row_a) == before_a
    assert snapshot(row_b) == before_b
    assert SuppressedAddress.objects.count() == 0
    stored = WebhookEvent.objects.get()
    assert stored.state == WebhookState.IGNORED
    assert stored.delivery_id is None
    assert mismatch_warnings(caplog)


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_tenant_b_delivery_id_with_an_unknown_message_id_changes_nothing(
    client, practitioner, other_practitioner, esp, kind
):
    row_a = sent_row(practitioner, esp=esp, n=1)
    row_b = sent_row(other_practitioner, esp=esp, n=2)
    before_a, before_b = snapshot(row_a), snapshot(row_b)

    response = post(
        client,
        event_request(
            esp,
            kind,
            message_id=esp_message_id(esp, 3),
            recipient=row_b.recipient,
            delivery_id=str(row_b.pk),
        ),
    )

    assert response.status_code == 200
    assert snapshot(row_a) == before_a
    assert snapshot(row_b) == before_b
    assert SuppressedAddress.objects.count() == 0
    # It waits for a send with that message id; B's own send never picks it up.
    stored = WebhookEvent.objects.get()
    assert stored.state == WebhookState.PENDING
    assert stored.delivery_id is None
    assert tracking.apply_pending(Delivery.objects.get(pk=row_b.pk)) == 0
    assert snapshot(row_b) == before_b


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_personal_smtp_row_is_never_touched_by_esp_events(client, esp, kind):
    delivery = sent_row(esp=esp, channel=Channel.SMTP)
    before = snapshot(delivery)

    response = post(client, event_request(esp, kind, delivery))

    assert response.status_code == 200
    assert snapshot(delivery) == before
    assert SuppressedAddress.objects.count() == 0
    assert WebhookEvent.objects.get().delivery_id is None


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_event_for_another_recipient_is_ignored(client, caplog, esp, kind):
    delivery = sent_row(esp=esp)
    before = snapshot(delivery)
    caplog.set_level(logging.INFO, logger=TRACKING_LOGGER)

    response = post(
        client, event_request(esp, kind, delivery, recipient="qualcun.altro@example.test")
    )

    assert response.status_code == 200
    assert snapshot(delivery) == before
    assert SuppressedAddress.objects.count() == 0
    assert WebhookEvent.objects.get().state == WebhookState.IGNORED
    assert mismatch_warnings(caplog)


# --- replays ------------------------------------------------------------------------------


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_replayed_event_is_applied_once(client, esp, kind):
    delivery = sent_row(esp=esp)
    request = event_request(esp, kind, delivery)

    first = post(client, request)
    after_first = snapshot(delivery)
    second = post(client, request)

    assert (first.status_code, second.status_code) == (200, 200)
    assert snapshot(delivery) == after_first
    assert webhook_events(delivery).count() == 1
    assert WebhookEvent.objects.count() == 1
    expect = EXPECT[kind]
    assert SuppressedAddress.objects.count() == (0 if expect.suppressed is None else 1)
    assert Delivery.objects.get(pk=delivery.pk).status == expect.status


# --- events that arrive while the row is still sending -------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_bounce_during_sending_waits_and_is_applied_when_the_send_is_recorded(
    client, practitioner, esp
):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    queued = queue_invoice_email(invoice)
    delivery = lifecycle.claim(queued.pk)
    assert delivery is not None and delivery.status == DeliveryStatus.SENDING
    assert delivery.esp_message_id == ""
    message_id = esp_message_id(esp, 7)

    response = post(
        client,
        event_request(
            esp,
            "hard_bounce",
            message_id=message_id,
            recipient=delivery.recipient,
            delivery_id=str(delivery.pk),
        ),
    )

    assert response.status_code == 200
    assert WebhookEvent.objects.get().state == WebhookState.PENDING
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SENDING
    assert not SuppressedAddress.objects.exists()

    # As the worker does once the ESP accepted the message.
    assert lifecycle.record(delivery, Accepted(esp_message_id=message_id)) == DeliveryStatus.SENT
    assert tracking.apply_pending(delivery) == 1

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert delivery.last_error_class == "bounced"
    assert [s.reason for s in SuppressedAddress.objects.filter(practitioner=practitioner)] == [
        "bounced"
    ]
    assert webhook_events(delivery).count() == 1
    stored = WebhookEvent.objects.get()
    assert (stored.state, stored.delivery_id) == (WebhookState.APPLIED, delivery.pk)
    # Applied once: the worker calling it again finds nothing waiting.
    assert tracking.apply_pending(delivery) == 0


def test_an_event_left_waiting_by_a_worker_that_died_is_applied_by_the_sweeper(
    client, practitioner
):
    """The worker applies waiting events when its batch ends; one that died after recording
    the send leaves them pending, and the sweeper's run applies them instead of dropping
    them later."""
    from emailsettings.tasks import sweep_deliveries_task

    esp = "postmark"
    delivery = lifecycle.claim(
        queue_invoice_email(InvoiceFactory(patient=PatientFactory(practitioner=practitioner))).pk
    )
    assert delivery is not None
    message_id = esp_message_id(esp, 9)
    post(
        client,
        event_request(
            esp,
            "hard_bounce",
            message_id=message_id,
            recipient=delivery.recipient,
            delivery_id=str(delivery.pk),
        ),
    )
    # Recorded, then the worker died before the end of its batch.
    lifecycle.record(delivery, Accepted(esp_message_id=message_id))
    assert WebhookEvent.objects.get().state == WebhookState.PENDING

    sweep_deliveries_task()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert WebhookEvent.objects.get().state == WebhookState.APPLIED


class EspThatPostsAWebhookMidSend(AnymailTestBackend):
    """anymail's test backend with ESP-shaped message ids, whose ESP posts the webhook for
    the message before the send call returns (so the row is still ``sending``)."""

    esp = "postmark"
    kind = "hard_bounce"
    seen: list[tuple[str, str, int]] = []

    def get_esp_message_id(self, message):
        return esp_message_id(type(self).esp, 9)

    def post_to_esp(self, payload, message):
        response = super().post_to_esp(payload, message)
        cls = type(self)
        row = Delivery.objects.get(pk=message.metadata["delivery_id"])
        request = event_request(
            cls.esp,
            cls.kind,
            message_id=esp_message_id(cls.esp, 9),
            recipient=row.recipient,
            delivery_id=str(row.pk),
        )
        cls.seen.append((row.status, row.esp_message_id, post(Client(), request).status_code))
        return response


@pytest.mark.parametrize("esp", ESPS)
def test_bounce_posted_while_the_worker_sends_ends_bounced_and_suppressed(
    settings, practitioner, esp
):
    settings.EMAIL_BACKEND = f"{__name__}.EspThatPostsAWebhookMidSend"
    # This ESP posts its webhook from inside the request, through the test's own database
    # connection (a transaction no other thread sees): the request stays in the batch's
    # thread.
    settings.EMAILSETTINGS_SMART_MAIL_CONCURRENCY = 1
    EspThatPostsAWebhookMidSend.esp = esp
    EspThatPostsAWebhookMidSend.kind = "hard_bounce"
    EspThatPostsAWebhookMidSend.seen = []
    mail.outbox = []
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    delivery = queue_invoice_email(invoice)

    send_deliveries_task(delivery_ids=[delivery.pk])

    assert EspThatPostsAWebhookMidSend.seen == [(DeliveryStatus.SENDING, "", 200)]
    delivery.refresh_from_db()
    assert delivery.esp_message_id == esp_message_id(esp, 9)
    assert delivery.status == DeliveryStatus.BOUNCED
    assert delivery.last_error_class == "bounced"
    assert SuppressedAddress.objects.filter(
        practitioner=practitioner, address=delivery.recipient.lower(), reason="bounced"
    ).exists()
    assert list(delivery.events.values_list("kind", "status")) == [
        (EventKind.QUEUED, DeliveryStatus.QUEUED),
        (EventKind.ATTEMPT, DeliveryStatus.SENT),
        (EventKind.WEBHOOK, DeliveryStatus.BOUNCED),
    ]
    assert WebhookEvent.objects.get().state == WebhookState.APPLIED
