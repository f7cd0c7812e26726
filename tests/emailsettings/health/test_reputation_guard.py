"""The reputation guard end to end: anymail's own webhook payloads, posted to the real
endpoint, push one practitioner across each threshold — a banner and one email, then their
Smart Mail deliveries held (not failed) at claim time, sent in one click through their own
mailbox (a real SMTP server), and the operator's audited lift — while another
practitioner's invoices keep leaving."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from emailsettings import receivers
from emailsettings.failures import ErrorClass
from emailsettings.health.reputation import check_reputation, lift_suspension
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    MailboxStatus,
    Reputation,
    ReputationLift,
    ReputationState,
)
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory
from tests.support.webhook_samples import build, post

pytestmark = pytest.mark.django_db

SECRET = "esp:segreto"


@pytest.fixture(autouse=True)
def setup(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.EMAILSETTINGS_NOTICE_FROM = "avvisi@psicogest.test"
    settings.EMAILSETTINGS_NOTICE_ESP_EXTRA = {"MessageStream": "avvisi"}
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    mail.outbox = []


def sent_rows(practitioner, count: int, *, start: int = 0) -> list[Delivery]:
    """``count`` Smart Mail messages the ESP accepted yesterday, each to its own patient."""
    sent_at = timezone.now() - datetime.timedelta(days=1)
    return [
        DeliveryFactory(
            invoice=InvoiceFactory(patient=PatientFactory(practitioner=practitioner)),
            status=DeliveryStatus.SENT,
            esp_message_id=f"0a5b1c9e-4d1f-4c55-9a0e-{practitioner.pk:04x}{start + n:08x}",
            sent_at=sent_at,
        )
        for n in range(count)
    ]


def bounce(client, delivery: Delivery, n: int) -> None:
    """Postmark's own hard-bounce sample, about ``delivery``, through /anymail/postmark/."""
    request = build(
        "postmark",
        "hard_bounce",
        message_id=delivery.esp_message_id,
        recipient=delivery.recipient,
        delivery_id=str(delivery.pk),
        timestamp=timezone.now() - datetime.timedelta(hours=2, minutes=n),
        basic_auth=SECRET,
        event_id=str(700_000 + n),
    )
    response = post(client, request)
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED


def notices_to(practitioner) -> list:
    return [m for m in mail.outbox if m.to == [practitioner.email]]


def queued_for(practitioner) -> Delivery:
    return queue_invoice_email(InvoiceFactory(patient=PatientFactory(practitioner=practitioner)))


def test_at_risk_then_suspended_then_sent_through_own_mailbox_then_lifted(
    client, practitioner, other_practitioner, smtp_server, smtp_account_factory, admin_client
):
    rows = sent_rows(practitioner, 41)
    sent_rows(other_practitioner, 40)

    # One bounced address is below the minimum number of events: nothing changes.
    bounce(client, rows[0], 0)
    assert check_reputation() == []
    bounce(client, rows[1], 1)
    bounce(client, rows[2], 2)

    # --- a rischio: one email with the numbers, a banner -------------------------------
    [change] = check_reputation()
    assert (change.practitioner_id, change.after) == (practitioner.pk, ReputationState.AT_RISK)
    [notice] = notices_to(practitioner)
    assert "3 indirizzi su 41 rimbalzati negli ultimi 7 giorni" in notice.body
    assert "Elenco invii email" in notice.body  # what to do
    assert notice.from_email == "avvisi@psicogest.test"
    assert notice.anymail_test_params["MessageStream"] == "avvisi"  # esp_extra, merged
    assert check_reputation() == []
    assert len(notices_to(practitioner)) == 1  # one email, not one per check
    assert notices_to(other_practitioner) == []

    client.force_login(practitioner)
    page = client.get(reverse("emailsettings:reputation")).content.decode()
    assert 'id="reputation-banner"' in page
    assert "3 indirizzi su 41 rimbalzati negli ultimi 7 giorni" in page
    client.force_login(other_practitioner)
    assert (
        'id="reputation-banner"'
        not in client.get(reverse("emailsettings:deliveries")).content.decode()
    )

    # --- sospeso: queued Smart Mail rows held, not failed; the other practitioner sends ----
    waiting = queued_for(practitioner)
    bounce(client, rows[3], 3)
    [change] = check_reputation()
    assert change.after == ReputationState.SUSPENDED
    waiting.refresh_from_db()
    assert (waiting.status, waiting.last_error_class) == (
        DeliveryStatus.HELD,
        ErrorClass.REPUTATION_HOLD,
    )
    assert len(notices_to(practitioner)) == 2
    assert "Smart Mail è sospeso" in notices_to(practitioner)[1].subject

    # Queued after the suspension: held when the worker claims it; the other's leaves.
    late = queued_for(practitioner)
    others = queued_for(other_practitioner)
    mail.outbox = []
    result = send_batch(delivery_ids=[late.pk, others.pk])
    late.refresh_from_db()
    others.refresh_from_db()
    assert late.status == DeliveryStatus.HELD
    assert late.last_error_class == ErrorClass.REPUTATION_HOLD
    assert others.status == DeliveryStatus.SENT
    assert result.outcomes == {others.pk: DeliveryStatus.SENT}
    assert [m.to for m in mail.outbox] == [[others.recipient]]

    client.force_login(practitioner)
    page = client.get(reverse("emailsettings:reputation")).content.decode()
    assert "sospeso" in page and "2 fatture con Smart Mail sono trattenute" in page
    assert "data-send-held" not in page  # no working mailbox yet

    # --- one click: through the practitioner's own working mailbox ----------------------
    smtp_account_factory(smtp_server, status=MailboxStatus.OK)
    page = client.get(reverse("emailsettings:reputation")).content.decode()
    assert "data-send-held" in page
    response = client.post(reverse("emailsettings:reputation_send_held"))
    assert response.status_code == 302
    held = list(Delivery.objects.filter(pk__in=[waiting.pk, late.pk]))
    assert {(d.status, d.channel) for d in held} == {(DeliveryStatus.QUEUED, Channel.SMTP)}
    send_batch(delivery_ids=[waiting.pk, late.pk])
    assert {d.status for d in Delivery.objects.filter(pk__in=[waiting.pk, late.pk])} == {
        DeliveryStatus.SENT
    }
    assert sorted(rcpt for m in smtp_server.messages for rcpt in m.rcpt_tos) == sorted(
        [waiting.recipient, late.recipient]
    )
    assert all(m.to != [waiting.recipient] for m in mail.outbox)  # not through Smart Mail

    # --- the operator lifts the suspension in the admin, with a note (audited) -----------
    held_again = queued_for(practitioner)
    Delivery.objects.filter(pk=held_again.pk).update(channel=Channel.SMART_MAIL)
    send_batch(delivery_ids=[held_again.pk])
    assert Delivery.objects.get(pk=held_again.pk).status == DeliveryStatus.HELD

    add_url = reverse("admin:emailsettings_reputationlift_add")
    refused = admin_client.post(add_url, {"practitioner": other_practitioner.pk, "note": "x"})
    assert refused.status_code == 200 and not ReputationLift.objects.exists()
    response = admin_client.post(
        add_url,
        {"practitioner": practitioner.pk, "note": "Indirizzi corretti con la dottoressa"},
    )
    assert response.status_code == 302
    lift = ReputationLift.objects.get()
    assert lift.note == "Indirizzi corretti con la dottoressa"
    assert lift.lifted_by is not None and lift.lifted_by.is_superuser
    assert lift.numbers["bounced"] == 4 and lift.numbers["recipients"] == 41
    assert LogEntry.objects.filter(object_id=str(lift.pk)).exists()
    assert Reputation.objects.get(practitioner=practitioner).state == ReputationState.REGULAR
    assert Delivery.objects.get(pk=held_again.pk).status == DeliveryStatus.QUEUED
    # The old bounces no longer count: the next check leaves the practitioner regular.
    assert check_reputation() == []
    send_batch(delivery_ids=[held_again.pk])
    assert Delivery.objects.get(pk=held_again.pk).status == DeliveryStatus.SENT


def test_two_bounces_out_of_three_sends_is_no_suspension(client, practitioner):
    rows = sent_rows(practitioner, 3)
    bounce(client, rows[0], 0)
    bounce(client, rows[1], 1)

    assert check_reputation() == []
    waiting = queued_for(practitioner)
    send_batch(delivery_ids=[waiting.pk])
    assert Delivery.objects.get(pk=waiting.pk).status == DeliveryStatus.SENT
    assert notices_to(practitioner) == []


def test_own_mailbox_invoices_are_never_held(practitioner, smtp_server, smtp_account_factory):
    Reputation.objects.create(practitioner=practitioner, state=ReputationState.SUSPENDED)
    smtp_account_factory(smtp_server, status=MailboxStatus.OK)
    waiting = queued_for(practitioner)
    Delivery.objects.filter(pk=waiting.pk).update(channel=Channel.SMTP)

    send_batch(delivery_ids=[waiting.pk])

    assert Delivery.objects.get(pk=waiting.pk).status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1


def test_a_lift_needs_a_note_and_a_suspension(practitioner):
    with pytest.raises(ValueError):
        lift_suspension(practitioner=practitioner, by=None, note="  ")
    assert lift_suspension(practitioner=practitioner, by=None, note="nota") is False
    assert not ReputationLift.objects.exists()


def test_a_bounce_webhook_asks_for_an_early_check_once_a_minute(
    client, practitioner, monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr(
        receivers, "publish_task", lambda name, args: published.append((name, args))
    )
    cache.delete(f"emailsettings:reputation-check:{practitioner.pk}")
    rows = sent_rows(practitioner, 3)

    with django_capture_on_commit_callbacks(execute=True):
        bounce(client, rows[0], 0)
        bounce(client, rows[1], 1)

    assert published == [("emailsettings.check_practitioner_reputation", [practitioner.pk])]


def test_the_admin_lists_practitioners_by_state_with_rates_and_volume(
    admin_client, practitioner, other_practitioner
):
    Reputation.objects.create(
        practitioner=practitioner,
        state=ReputationState.SUSPENDED,
        window_days=7,
        recipients=41,
        bounced=4,
        reason="bounces",
    )
    Reputation.objects.create(
        practitioner=other_practitioner, state=ReputationState.AT_RISK, recipients=200, bounced=9
    )
    url = reverse("admin:emailsettings_reputation_changelist")

    page = admin_client.get(url, {"state__exact": "suspended"}).content.decode()

    assert str(practitioner) in page and str(other_practitioner) not in page
    assert "9.76" in page and ">41<" in page
    assert str(other_practitioner) in admin_client.get(url).content.decode()
