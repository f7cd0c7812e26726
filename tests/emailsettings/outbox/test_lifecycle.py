"""The outbox's spine: what every source of failure makes of a delivery, through the one
lifecycle — international addresses, ESP answers lost after the request, rows that crash
their worker, the mailbox that cannot be reached, the Smart Mail fallback, invoices without
a PDF, a broker that does not answer.

The real Postfix cases (one AUTH attempt, 8BITMIME) are in tests/fault/test_real_mta.py.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import time

import pytest
import redis
import requests
from anymail.exceptions import AnymailRequestsAPIError
from django.core import mail
from django.utils import timezone

from emailsettings.covermail.message import message_bytes
from emailsettings.exceptions import ActionNotAllowed, InvalidRecipient
from emailsettings.failures import ErrorClass
from emailsettings.health.verify import build_test_message
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    MailboxStatus,
    Phase,
    SmtpAccount,
)
from emailsettings.outbox import lifecycle
from emailsettings.outbox.actions import send_with_smart_mail
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails
from emailsettings.outbox.sweeper import sweep
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

ANYMAIL_TEST = "anymail.backends.test.EmailBackend"


def _invoice(practitioner, email_address: str = "giulia@example.test", **fields):
    patient = PatientFactory(practitioner=practitioner, email=email_address)
    return InvoiceFactory(patient=patient, **fields)


def _strict(raw: bytes) -> email.message.Message:
    """Parse like a strict mail client: every part without defects."""
    message = email.message_from_bytes(raw, policy=email.policy.strict)
    for part in message.walk():
        assert not part.defects, part.defects
    return message


def _smtp_channel(practitioner) -> None:
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )


# --- international addresses -------------------------------------------------------------


@pytest.mark.django_db
def test_an_accented_domain_is_sent_in_idna_through_the_personal_mailbox(
    practitioner, smtp_server, smtp_account_factory
):
    smtp_account_factory(smtp_server)
    _smtp_channel(practitioner)
    delivery = queue_invoice_email(_invoice(practitioner, "mario.rossi@università.it"))

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["mario.rossi@xn--universit-y1a.it"]
    parsed = _strict(received.data)
    assert parsed["Message-ID"] == delivery.message_id


@pytest.mark.django_db
def test_a_non_ascii_local_part_without_smtputf8_fails_with_a_reason_and_the_batch_goes_on(
    practitioner, smtp_server_factory, smtp_account_factory
):
    """The server offers no SMTPUTF8: that one row fails permanently with its own
    explanation; the next invoice of the same batch is still sent."""
    smtp_server = smtp_server_factory(smtputf8=False)
    smtp_account_factory(smtp_server)
    _smtp_channel(practitioner)
    # Django's validator refuses such an address on the patient card; an imported one
    # still reaches the outbox.
    accented = queue_invoice_email(_invoice(practitioner, "mario@example.test"))
    Delivery.objects.filter(pk=accented.pk).update(recipient="màrio@example.test")
    plain = queue_invoice_email(_invoice(practitioner, "anna@example.test"))

    send_batch(delivery_ids=[accented.pk, plain.pk])

    accented.refresh_from_db()
    plain.refresh_from_db()
    assert accented.status == DeliveryStatus.FAILED
    assert accented.last_error_class == ErrorClass.ADDRESS_UNSUPPORTED
    assert accented.attempts == 1
    assert plain.status == DeliveryStatus.SENT
    assert [r.rcpt_tos for r in smtp_server.messages] == [["anna@example.test"]]
    # Nothing left for the sweeper to pick up again.
    result = sweep()
    assert result.requeued_after_crash == result.unknown == 0
    assert SmtpAccount.objects.get().status != MailboxStatus.BROKEN


@pytest.mark.django_db
def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_offered(
    practitioner, smtp_server, smtp_account_factory
):
    smtp_account_factory(smtp_server)
    _smtp_channel(practitioner)
    delivery = queue_invoice_email(_invoice(practitioner, "mario@example.test"))
    Delivery.objects.filter(pk=delivery.pk).update(recipient="màrio@università.it")
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert [m.rcpt_tos for m in smtp_server.messages] == [["màrio@xn--universit-y1a.it"]]


@pytest.mark.django_db
def test_an_accented_domain_through_smart_mail_makes_a_strict_message(practitioner, settings):
    settings.EMAIL_BACKEND = ANYMAIL_TEST
    mail.outbox = []
    delivery = queue_invoice_email(_invoice(practitioner, "mario.rossi@università.it"))
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    [sent] = mail.outbox
    parsed = _strict(sent.message().as_bytes())
    assert "xn--universit-y1a.it" in str(parsed["To"])


@pytest.mark.django_db
def test_the_test_mail_uses_the_cleaned_sender_name_and_parses_strictly(
    practitioner, smtp_account_factory
):
    account = smtp_account_factory(sender_name='Rossi, Maria "Mary" <x@evil.test> @ Studio')
    message = build_test_message(account=account)
    parsed = _strict(message_bytes(message))
    sender = parsed["From"]
    assert "evil.test" not in str(sender)
    assert sender.addresses[0].addr_spec == account.email
    assert sender.addresses[0].display_name == "Rossi Maria Mary Studio"


# --- Smart Mail: the ESP's answer ---------------------------------------------------------


def _lost_answer(error_class):
    """An anymail backend whose request fails the way ``error_class`` does in requests."""

    class LostAnswer:
        def __init__(self, *args, **kwargs):
            pass

        def open(self):
            return True

        def close(self):
            pass

        def send_messages(self, messages):
            exc_class = type("AnymailRequestsAPIError", (AnymailRequestsAPIError, error_class), {})
            try:
                raise error_class("boom")
            except error_class as cause:
                raise exc_class("Error posting to the ESP") from cause

    return LostAnswer


class ReadTimeoutEsp(_lost_answer(requests.exceptions.ReadTimeout)):
    pass


class ConnectTimeoutEsp(_lost_answer(requests.exceptions.ConnectTimeout)):
    pass


@pytest.mark.django_db
def test_an_esp_answer_lost_after_the_request_is_unknown_and_never_resent(practitioner, settings):
    settings.EMAIL_BACKEND = f"{__name__}.ReadTimeoutEsp"
    delivery = queue_invoice_email(_invoice(practitioner))
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNKNOWN
    sweep()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNKNOWN and delivery.attempts == 1


@pytest.mark.django_db
def test_an_esp_that_cannot_be_reached_is_retried_later(practitioner, settings):
    settings.EMAIL_BACKEND = f"{__name__}.ConnectTimeoutEsp"
    delivery = queue_invoice_email(_invoice(practitioner))
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEFERRED
    assert delivery.last_error_class == ErrorClass.CONNECTION_FAILED


# --- rows that go wrong in the worker -----------------------------------------------------


class ExplodingEsp:
    """A bug before anything reaches the ESP (opening the backend)."""

    def __init__(self, *args, **kwargs):
        pass

    def open(self):
        raise RuntimeError("a bug in the product")

    def close(self):
        pass


@pytest.mark.django_db
def test_an_unexpected_error_is_recorded_a_bounded_number_of_times(practitioner, settings):
    settings.EMAIL_BACKEND = f"{__name__}.ExplodingEsp"
    settings.EMAILSETTINGS_MAX_INTERNAL_ERRORS = 3
    delivery = queue_invoice_email(_invoice(practitioner))
    for _attempt in range(3):
        Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.DEFERRED).update(
            next_attempt_at=timezone.now()
        )
        send_batch(delivery_ids=[delivery.pk])
        delivery.refresh_from_db()
        assert delivery.status != DeliveryStatus.SENDING
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    assert delivery.last_error_class == ErrorClass.INTERNAL_ERROR


@pytest.mark.django_db
def test_a_row_that_keeps_killing_its_worker_becomes_failed(practitioner, settings, caplog):
    settings.EMAILSETTINGS_MAX_CRASHES = 3
    delivery = queue_invoice_email(_invoice(practitioner))
    statuses = []
    for _crash in range(3):
        claimed = lifecycle.claim(delivery.pk)
        assert claimed is not None
        lifecycle.mark_phase(claimed, Phase.RCPT)  # the worker dies at RCPT
        Delivery.objects.filter(pk=delivery.pk).update(
            lease_expires_at=timezone.now() - datetime.timedelta(seconds=1)
        )
        sweep()
        delivery.refresh_from_db()
        statuses.append(delivery.status)
    assert statuses == [DeliveryStatus.QUEUED, DeliveryStatus.QUEUED, DeliveryStatus.FAILED]
    assert delivery.last_error_class == ErrorClass.WORKER_CRASHED
    assert delivery.phase == Phase.RCPT  # the phase reached, not "connect"
    assert "poison row" in caplog.text


# --- the personal mailbox's health --------------------------------------------------------


@pytest.mark.django_db
def test_a_refused_connection_defers_and_only_a_lasting_outage_holds(
    practitioner, smtp_account_factory, settings
):
    """Nothing listens on the port: temporary (deferred, mailbox not broken). Once the
    outage has lasted long enough the mailbox is broken and the queue held; a working
    check then releases it."""
    from devtools.smtpserver import free_port

    settings.EMAILSETTINGS_MAILBOX_UNREACHABLE_SECONDS = 3600
    account = smtp_account_factory(None, port=free_port("127.0.0.1"))
    _smtp_channel(practitioner)
    first = queue_invoice_email(_invoice(practitioner))
    second = queue_invoice_email(_invoice(practitioner, "anna@example.test"))

    send_batch(delivery_ids=[first.pk, second.pk])

    first.refresh_from_db()
    second.refresh_from_db()
    account.refresh_from_db()
    assert first.status == second.status == DeliveryStatus.DEFERRED
    assert first.last_error_class == ErrorClass.CONNECTION_FAILED
    assert account.status != MailboxStatus.BROKEN and account.unreachable_since is not None
    assert lifecycle.can_fall_back(first)  # the mailbox is the problem: offer Smart Mail

    SmtpAccount.objects.filter(pk=account.pk).update(
        unreachable_since=timezone.now() - datetime.timedelta(hours=2)
    )
    Delivery.objects.filter(pk__in=[first.pk, second.pk]).update(next_attempt_at=timezone.now())
    send_batch(delivery_ids=[first.pk, second.pk])
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.HELD}


@pytest.mark.django_db
def test_smart_mail_is_offered_only_when_the_mailbox_is_the_problem(
    practitioner, smtp_server, smtp_account_factory
):
    smtp_account_factory(smtp_server)
    _smtp_channel(practitioner)
    refused = queue_invoice_email(_invoice(practitioner, "nessuno@rifiuta.test"))
    send_batch(delivery_ids=[refused.pk])
    refused.refresh_from_db()
    assert refused.status == DeliveryStatus.FAILED
    assert refused.last_error_class == ErrorClass.RECIPIENT_REFUSED
    assert not lifecycle.can_fall_back(refused)
    with pytest.raises(ActionNotAllowed):
        send_with_smart_mail(delivery=refused)


@pytest.mark.django_db
def test_the_report_tells_to_fix_the_patient_for_a_refused_address(
    logged_client, practitioner, smtp_server, smtp_account_factory
):
    smtp_account_factory(smtp_server)
    _smtp_channel(practitioner)
    refused = queue_invoice_email(_invoice(practitioner, "nessuno@rifiuta.test"))
    send_batch(delivery_ids=[refused.pk])
    page = logged_client.get(f"/email/invii/{refused.pk}/").content.decode()
    assert "Indirizzo del destinatario inesistente" in page
    # The address is corrected inline (it goes on the patient card), then sent again.
    assert 'id="correggi"' in page and "Correggi l'indirizzo e reinvia" in page
    assert "Apri la scheda del paziente</a>" in page
    assert "Invia con Smart Mail" not in page


# --- queueing -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_invoice_without_pdf_is_refused_and_nothing_is_created(practitioner):
    invoice = _invoice(practitioner)
    invoice.pdf = ""
    invoice.save()
    with pytest.raises(InvalidRecipient, match="manca il PDF"):
        queue_invoice_emails([_invoice(practitioner, "altra@example.test"), invoice])
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_publishing_to_a_paused_redis_fails_fast_and_the_row_stays_queued(
    practitioner, django_capture_on_commit_callbacks
):
    """Redis accepts the connection but answers nothing (CLIENT PAUSE): the request returns
    after the broker's socket timeout, not after Redis comes back."""
    import os

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    invoice = _invoice(practitioner)
    pause_seconds = 14
    client.execute_command("CLIENT", "PAUSE", str(pause_seconds * 1000), "ALL")
    paused_at = time.monotonic()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = queue_invoice_email(invoice)
        elapsed = time.monotonic() - paused_at
    finally:
        # CLIENT UNPAUSE would wait too: let the pause run out before the next test.
        time.sleep(max(0.0, pause_seconds + 0.5 - (time.monotonic() - paused_at)))
    assert elapsed < pause_seconds - 3, f"publishing waited {elapsed:.1f} s for a paused Redis"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED


@pytest.mark.django_db
def test_development_settings_page_says_the_webhooks_are_unprotected(logged_client, settings):
    settings.ANYMAIL = {key: v for key, v in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}
    page = logged_client.get("/email/impostazioni/").content.decode()
    assert "data-webhooks-unprotected" in page and "ANYMAIL_WEBHOOK_SECRET" in page
    assert "data-webhooks-unprotected" not in logged_client.get("/fatture/").content.decode()
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "esp:segreto"}
    page = logged_client.get("/email/impostazioni/").content.decode()
    assert "data-webhooks-unprotected" not in page


@pytest.mark.django_db
def test_an_action_keeps_the_way_back_to_the_filtered_list(logged_client, practitioner):
    from tests.factories import DeliveryFactory

    invoice = _invoice(practitioner)
    delivery = DeliveryFactory(invoice=invoice, status=DeliveryStatus.FAILED)
    back = "/email/invii/?status=failed&q=rossi"
    response = logged_client.post(
        f"/email/invii/{delivery.pk}/reinvia/", {"next": back}, follow=True
    )
    assert 'href="/email/invii/?status=failed&amp;q=rossi"' in response.content.decode()
    # Anything but a list URL of this site falls back to the plain list.
    response = logged_client.post(
        f"/email/invii/{delivery.pk}/reinvia/", {"next": "https://evil.test/"}, follow=True
    )
    assert "evil.test" not in response.content.decode()
