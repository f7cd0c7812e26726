"""The delivery services in process: queueing, recipients, identity, the MIME message,
Smart Mail through anymail's test backend, and the report's actions.

The fault scenarios with a real worker process and SMTP servers are in tests/fault/.
"""

from __future__ import annotations

import threading

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from emailsettings.covermail.identity import clean_display_name, smart_mail_identity
from emailsettings.covermail.message import attachment_name, build_message, message_bytes
from emailsettings.exceptions import ActionNotAllowed, InvalidRecipient
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EmailSettings,
    EventKind,
    MailboxStatus,
    SmtpAccount,
    SuppressedAddress,
)
from emailsettings.outbox import lifecycle
from emailsettings.outbox.actions import (
    reactivate_address,
    resend,
    resume_held,
    retry_now,
    send_with_smart_mail,
)
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails
from emailsettings.outbox.sweeper import purge_bodies, sweep
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

ANYMAIL_TEST = "anymail.backends.test.EmailBackend"


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(practitioner=practitioner, email="giulia@example.test")
    return InvoiceFactory(patient=patient, number="7/2026")


@pytest.fixture
def anymail_backend(settings):
    settings.EMAIL_BACKEND = ANYMAIL_TEST
    mail.outbox = []
    return settings


# --- queueing --------------------------------------------------------------------------


@pytest.mark.django_db
def test_queue_creates_one_queued_row_with_snapshot_and_event(invoice, practitioner):
    delivery = queue_invoice_email(invoice)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.channel == Channel.SMART_MAIL
    assert delivery.recipient == "giulia@example.test"
    assert delivery.invoice_number == "7/2026"
    assert "7/2026" in delivery.subject
    assert "7/2026" in delivery.body_text and "<html" in delivery.body_html
    assert delivery.message_id.startswith("<") and delivery.message_id.endswith(
        "@mail.psicogest.test>"
    )
    assert delivery.from_header.endswith("<fatture@mail.psicogest.test>")
    assert practitioner.email in delivery.reply_to
    assert list(delivery.events.values_list("kind", flat=True)) == [EventKind.QUEUED]


@pytest.mark.django_db
def test_a_second_request_returns_the_pending_delivery_and_resend_makes_a_new_one(
    invoice, anymail_backend
):
    first = queue_invoice_email(invoice)
    again = queue_invoice_emails([invoice, invoice])
    assert {d.pk for d in again} == {first.pk}
    assert Delivery.objects.count() == 1

    send_batch(delivery_ids=[first.pk])
    first.refresh_from_db()
    assert first.status == DeliveryStatus.SENT
    # Still inside the duplicate window: a re-submitted form returns the sent row.
    assert queue_invoice_email(invoice).pk == first.pk

    second = resend(delivery=first)
    assert second.pk != first.pk
    assert second.resend_of_id == first.pk
    assert second.message_id != first.message_id
    assert second.status == DeliveryStatus.QUEUED
    # A double click on "resend" does not make a third one.
    assert resend(delivery=first).pk == second.pk


@pytest.mark.django_db
def test_smtp_channel_and_broken_mailbox_hold_the_new_row(invoice, practitioner):
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    account = SmtpAccount.objects.create(
        practitioner=practitioner,
        email="studio@example.test",
        sender_name="Studio <Rossi> @casa",
        host="127.0.0.1",
        port=1025,
        security="starttls",
        username="studio@example.test",
        status=MailboxStatus.BROKEN,
    )
    delivery = queue_invoice_email(invoice)
    assert delivery.channel == Channel.SMTP
    assert delivery.status == DeliveryStatus.HELD
    assert delivery.from_header == '"Studio Rossi" <studio@example.test>'
    assert delivery.message_id.endswith("@example.test>")

    with pytest.raises(ActionNotAllowed):
        retry_now(delivery=delivery)  # the mailbox is still broken

    account.status = MailboxStatus.OK
    account.save()
    assert resume_held(practitioner_id=practitioner.pk) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED


@pytest.mark.django_db
def test_send_with_smart_mail_is_an_explicit_recorded_choice(invoice, practitioner):
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    SmtpAccount.objects.create(
        practitioner=practitioner,
        email="studio@example.test",
        host="127.0.0.1",
        port=1025,
        security="starttls",
        username="studio@example.test",
        status=MailboxStatus.BROKEN,
    )
    delivery = queue_invoice_email(invoice)
    with pytest.raises(ActionNotAllowed):
        resend(delivery=delivery)

    send_with_smart_mail(delivery=delivery)

    delivery.refresh_from_db()
    assert delivery.channel == Channel.SMART_MAIL
    assert delivery.fallback_to_smart_mail is True
    assert delivery.status == DeliveryStatus.QUEUED
    assert "via PsicoGest" in delivery.from_header
    assert delivery.events.filter(kind=EventKind.ACTION).exists()
    with pytest.raises(ActionNotAllowed):
        send_with_smart_mail(delivery=delivery)


@pytest.mark.django_db
def test_suppressed_address_is_not_mailed_until_reactivated(invoice, practitioner):
    SuppressedAddress.objects.create(
        practitioner=practitioner, address="GIULIA@example.test", reason="bounced"
    )
    delivery = queue_invoice_email(invoice)
    assert delivery.status == DeliveryStatus.SUPPRESSED

    assert reactivate_address(practitioner=practitioner, address="giulia@example.test")
    again = resend(delivery=delivery)
    assert again.status == DeliveryStatus.QUEUED


# --- bad input (scenario 10) ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "non ha un indirizzo email"),
        ("   ", "non ha un indirizzo email"),
        ("non-un-indirizzo", "non è valido"),
        ("giulia@", "non è valido"),
        ("giulia@example.test\r\nBcc: spia@example.test", "non è valido"),
        ('"Giulia" <giulia@example.test>', "non è valido"),
        ("a@example.test, b@example.test", "non è valido"),
    ],
)
def test_bad_recipient_is_refused_and_nothing_is_created(practitioner, email, message):
    good = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    patient = PatientFactory(practitioner=practitioner, email="x@example.test")
    # Bypass the model field so that any stored value is tried.
    type(patient).objects.filter(pk=patient.pk).update(email=email)
    patient.refresh_from_db()
    bad = InvoiceFactory(patient=patient, number="99/2026")

    with pytest.raises(InvalidRecipient, match=message) as caught:
        queue_invoice_emails([good, bad])
    assert "99/2026" in str(caught.value)
    assert Delivery.objects.count() == 0
    assert DeliveryEvent.objects.count() == 0


@pytest.mark.django_db
def test_line_breaks_in_patient_name_never_reach_a_header(practitioner, anymail_backend):
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Giulia\r\nBcc: spia@example.test",
        last_name="Bianchi\nX-Evil: 1",
        email="giulia@example.test",
    )
    invoice = InvoiceFactory(patient=patient, number="8/2026")
    delivery = queue_invoice_email(invoice)

    assert "\n" not in delivery.subject and "\r" not in delivery.patient_name
    send_batch(delivery_ids=[delivery.pk])
    raw = mail.outbox[0].message().as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nX-Evil:" not in head
    assert mail.outbox[0].to == ["giulia@example.test"]


# --- identity and message ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Dott.ssa Maria Rossi", "Dott.ssa Maria Rossi"),
        ('Maria "la dottoressa" Rossi', "Maria la dottoressa Rossi"),
        ("Maria Rossi <maria@example.test>", "Maria Rossi"),
        ("banca@example.test", ""),
        ("Maria\r\nBcc: x@example.test", "Maria Bcc"),
        ("A" * 80, "A" * 60),
    ],
)
def test_display_names_are_cleaned(raw, expected):
    assert clean_display_name(raw) == expected


@pytest.mark.django_db
def test_smart_mail_identity_names_the_practitioner_via_the_platform(practitioner):
    practitioner.last_name = "Rossi <finto@banca.test> " + "X" * 80
    identity = smart_mail_identity(practitioner)
    name = identity.from_header.split('" <')[0].lstrip('"')
    assert name.startswith("Dott.ssa Maria Rossi")
    assert name.endswith(" via PsicoGest") and len(name) <= 60
    assert "@" not in name and "<" not in name
    assert identity.from_header.endswith("<fatture@mail.psicogest.test>")
    assert identity.reply_to.endswith(f"<{practitioner.email}>")


def test_attachment_names():
    assert attachment_name("12/2026") == "fattura-12-2026.pdf"
    assert attachment_name("A 3/2026\r\n") == "fattura-A-3-2026.pdf"


@pytest.mark.django_db
def test_message_has_text_html_pdf_date_and_the_stable_message_id(invoice):
    delivery = queue_invoice_email(invoice)
    first = message_bytes(build_message(delivery))
    second = message_bytes(build_message(delivery))
    import email
    from email.policy import default

    parsed = email.message_from_bytes(first, policy=default)
    assert parsed["Message-ID"] == delivery.message_id
    assert email.message_from_bytes(second, policy=default)["Message-ID"] == delivery.message_id
    assert parsed["Date"]
    assert parsed["Sender"] is None
    assert parsed.get_body(("plain",)).get_content().startswith("Gentile")
    assert "<p>" in parsed.get_body(("html",)).get_content()
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["fattura-7-2026.pdf"]
    assert attachments[0].get_content().startswith(b"%PDF")


# --- Smart Mail (scenario 9) ---------------------------------------------------------------


@pytest.mark.django_db
def test_smart_mail_sends_with_the_platform_identity_and_only_the_delivery_id(
    invoice, practitioner, anymail_backend
):
    delivery = queue_invoice_email(invoice)
    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    invoice.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 1
    assert delivery.esp_message_id == "0"
    assert invoice.last_emailed_at is not None
    [sent] = mail.outbox
    params = sent.anymail_test_params
    assert params["from"].display_name == f"{practitioner.display_name} via PsicoGest"
    assert params["from"].addr_spec == "fatture@mail.psicogest.test"
    assert [r.addr_spec for r in params["reply_to"]] == [practitioner.email]
    assert params["metadata"] == {"delivery_id": str(delivery.pk)}
    assert params["tags"] == ["invoice"]
    assert params["track_opens"] is False and params["track_clicks"] is False
    assert "Sender" not in sent.extra_headers
    assert sent.extra_headers["Message-ID"] == delivery.message_id
    assert [a.name for a in params["attachments"]] == ["fattura-7-2026.pdf"]


class FlakyEsp(AnymailTestBackend):
    """The ESP answers 503 to the first ``failures`` sends, then accepts."""

    failures = 1
    calls = 0

    def post_to_esp(self, payload, message):
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            raise AnymailAPIError("Service Unavailable", status_code=503, backend=self)
        return super().post_to_esp(payload, message)


class RefusingEsp(AnymailTestBackend):
    def post_to_esp(self, payload, message):
        raise AnymailRecipientsRefused(backend=self)


@pytest.mark.django_db
def test_smart_mail_esp_5xx_is_deferred_then_sent(invoice, settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyEsp"
    FlakyEsp.calls = 0
    mail.outbox = []
    delivery = queue_invoice_email(invoice)

    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEFERRED
    assert delivery.last_error_code == 503
    assert delivery.next_attempt_at > timezone.now()
    assert not mail.outbox

    # Not due yet: a worker that gets the id early leaves it alone.
    send_batch(delivery_ids=[delivery.pk])
    assert FlakyEsp.calls == 1

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    sweep()
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 2
    assert len(mail.outbox) == 1
    assert mail.outbox[0].extra_headers["Message-ID"] == delivery.message_id


@pytest.mark.django_db
def test_smart_mail_recipients_refused_fails_at_once(invoice, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingEsp"
    delivery = queue_invoice_email(invoice)
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error_class == "esp_rejected"


@pytest.mark.django_db
def test_deferred_row_past_its_maximum_age_fails_as_expired(invoice, settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyEsp"
    FlakyEsp.calls = 0
    delivery = queue_invoice_email(invoice)
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=3)
    )
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert "Tentativi esauriti" in delivery.events.last().text


# --- concurrency ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_for_the_same_invoice_create_one_delivery(invoice):
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                results.append(queue_invoice_email(invoice).pk)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(set(results)) == 1
    assert Delivery.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_claim_has_one_winner(invoice):
    delivery = queue_invoice_email(invoice)
    barrier = threading.Barrier(6)
    winners: list[bool] = []

    def claim() -> None:
        try:
            barrier.wait()
            winners.append(lifecycle.claim(delivery.pk) is not None)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [False] * 5 + [True]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENDING and delivery.attempts == 1


# --- ESP tracking webhooks -----------------------------------------------------------------


def _track(event_type: str, **fields) -> None:
    from anymail.signals import AnymailTrackingEvent, tracking

    fields.setdefault("timestamp", timezone.now())
    event = AnymailTrackingEvent(event_type=event_type, **fields)
    tracking.send(sender=object, event=event, esp_name="Test")


@pytest.mark.django_db
def test_tracking_events_update_the_delivery_and_suppress_bad_addresses(
    invoice, practitioner, anymail_backend
):
    delivery = queue_invoice_email(invoice)
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    esp_id = delivery.esp_message_id
    assert esp_id

    _track("delivered", metadata={"delivery_id": str(delivery.pk)}, message_id=esp_id)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED

    bounce_at = timezone.now()
    _track("bounced", message_id=esp_id, description="Mailbox does not exist", timestamp=bounce_at)
    # The same event posted again (the ESP retries its webhook) changes nothing more.
    _track("bounced", message_id=esp_id, description="Mailbox does not exist", timestamp=bounce_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert SuppressedAddress.objects.filter(
        practitioner=practitioner, address="giulia@example.test", reason="bounced"
    ).exists()
    # A late "delivered" does not hide the bounce; opens are not tracked at all.
    _track("delivered", message_id=esp_id, metadata={"delivery_id": str(delivery.pk)})
    _track("opened", message_id=esp_id, metadata={"delivery_id": str(delivery.pk)})
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    kinds = list(delivery.events.filter(kind=EventKind.WEBHOOK).values_list("status", flat=True))
    assert kinds == [DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.BOUNCED]

    # The next invoice to that address is not mailed until it is reactivated.
    other = InvoiceFactory(patient=invoice.patient, number="9/2026")
    assert queue_invoice_email(other).status == DeliveryStatus.SUPPRESSED


@pytest.mark.django_db
def test_tracking_event_for_an_unknown_delivery_is_ignored():
    _track("bounced", metadata={"delivery_id": "999999"})
    _track("complained", message_id="nessuno")
    assert SuppressedAddress.objects.count() == 0


# --- the sweeper and retention -------------------------------------------------------------


@pytest.mark.django_db
def test_sweeper_settles_expired_leases_by_phase(practitioner):
    from emailsettings.models import Phase

    before, after = (
        queue_invoice_email(InvoiceFactory(patient=PatientFactory(practitioner=practitioner)))
        for _ in range(2)
    )
    for delivery, phase in ((before, Phase.RCPT), (after, Phase.DATA_SENT)):
        assert lifecycle.claim(delivery.pk) is not None
        Delivery.objects.filter(pk=delivery.pk).update(
            phase=phase, lease_expires_at=timezone.now() - timezone.timedelta(seconds=1)
        )

    result = sweep()

    before.refresh_from_db()
    after.refresh_from_db()
    assert (result.requeued_after_crash, result.unknown) == (1, 1)
    assert before.status == DeliveryStatus.QUEUED  # retried, same Message-ID
    assert after.status == DeliveryStatus.UNKNOWN  # may have gone out: never re-sent
    assert "Non viene reinviato" in after.events.last().text
    assert resend(delivery=after).status == DeliveryStatus.QUEUED


@pytest.mark.django_db
def test_old_message_bodies_are_purged_but_the_record_stays(invoice, settings):
    settings.EMAILSETTINGS_BODY_RETENTION_DAYS = 30
    delivery = queue_invoice_email(invoice)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT, created_at=timezone.now() - timezone.timedelta(days=31)
    )
    assert purge_bodies() == 1
    delivery.refresh_from_db()
    assert delivery.body_text == "" and delivery.body_html == ""
    assert delivery.body_purged_at is not None
    assert delivery.subject and delivery.recipient
