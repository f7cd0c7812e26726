"""The outbox under faults, with the real parts: PostgreSQL, Redis, Celery worker processes
and aiosmtpd servers with STARTTLS and AUTH.

Each scenario states what the SMTP server received (counted by Message-ID) and each row's
final status. Beat is not running: the tests call the sweeper in process, as beat would.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db import transaction

from devtools.smtpserver import Behaviour
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    EventKind,
    MailboxStatus,
)
from emailsettings.outbox.actions import resume_held
from emailsettings.outbox.publish import publish_deliveries
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails
from emailsettings.outbox.sweeper import sweep
from psicogest.models import Invoice
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST = {
    "EMAILSETTINGS_RETRY_BASE_SECONDS": "0.3",
    "EMAILSETTINGS_LEASE_SECONDS": "3",
    "EMAILSETTINGS_STALE_QUEUED_SECONDS": "1",
    "EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE": "60000",
}


@pytest.fixture
def outbox(settings, local_ca, celery_worker_factory, practitioner):
    """Fast retry settings here and in the workers; the practitioner sends by SMTP."""
    for name, value in FAST.items():
        setattr(settings, name, float(value))
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )

    def start_worker(**extra: str):
        return celery_worker_factory(
            EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, **FAST, **extra
        )

    return start_worker


def make_invoices(practitioner, count: int, *, domain: str = "example.test") -> list[Invoice]:
    return [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"p{n}@{domain}"),
        )
        for n in range(count)
    ]


def drive(predicate, *, timeout: float = 60.0):
    """Run the sweeper (as beat would) until ``predicate()`` holds."""

    def step():
        sweep()
        return predicate()

    return wait_until(step, timeout=timeout, interval=0.3)


def statuses(ids) -> Counter:
    return Counter(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True))


def settled(ids, *final: str) -> bool:
    return set(statuses(ids)) <= set(final)


# --- 1. normal send ----------------------------------------------------------------------


def test_normal_send_one_message_with_pdf_and_headers(
    outbox, smtp_server, smtp_account_factory, practitioner
):
    smtp_account_factory(smtp_server)
    outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)

    wait_until(lambda: settled([delivery.pk], DeliveryStatus.SENT), timeout=30)
    delivery.refresh_from_db()
    invoice.refresh_from_db()
    assert delivery.attempts == 1
    assert invoice.last_emailed_at is not None
    assert Counter(smtp_server.message_ids()) == {delivery.message_id: 1}
    [received] = smtp_server.messages
    assert received.login == "anna.bianchi@example.test"
    assert received.rcpt_tos == ["p0@example.test"]
    message = received.message
    assert message["From"] == "Studio Bianchi <anna.bianchi@example.test>"
    assert message["To"] == "p0@example.test"
    assert message["Subject"] == delivery.subject
    assert message["Date"] and message["Sender"] is None
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.strip() == delivery.body_text.strip()
    assert message.get_body(("html",)) is not None
    [pdf] = list(message.iter_attachments())
    assert pdf.get_filename() == "fattura-" + invoice.number.replace("/", "-") + ".pdf"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content() == invoice.pdf.open("rb").read()
    event = delivery.events.filter(kind=EventKind.ATTEMPT).get()
    assert event.reply_code == 250 and event.status == DeliveryStatus.SENT


# --- 2. rollback after queueing ----------------------------------------------------------


def test_rolled_back_transaction_leaves_no_row_no_task_nothing_sent(
    outbox, smtp_server, smtp_account_factory, practitioner
):
    from psicogest.celery import app

    smtp_account_factory(smtp_server)
    [invoice] = make_invoices(practitioner, 1)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        queue_invoice_email(invoice)
        raise Abort

    assert Delivery.objects.count() == 0
    with app.connection_for_write() as conn:
        assert conn.default_channel.client.llen("celery") == 0
    outbox()
    time.sleep(1.5)
    sweep()
    assert smtp_server.messages == []


# --- 4. duplicate enqueue, two workers racing --------------------------------------------


def test_duplicate_enqueue_and_two_racing_workers_send_one_message(
    outbox, smtp_server, smtp_account_factory, practitioner
):
    smtp_account_factory(smtp_server)
    outbox()
    outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)
    assert queue_invoice_email(invoice).pk == delivery.pk
    row = (delivery.pk, delivery.practitioner_id, delivery.channel)
    for _ in range(6):
        publish_deliveries([row])

    wait_until(lambda: settled([delivery.pk], DeliveryStatus.SENT), timeout=30)
    time.sleep(1.0)  # let every duplicate task run
    assert Counter(smtp_server.message_ids()) == {delivery.message_id: 1}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 1


# --- 5. temporary failures: backoff, same Message-ID -------------------------------------


def greylist_once(address: str, attempt: int) -> str | None:
    return "451 4.7.1 Greylisted, please try again later" if attempt == 1 else None


@pytest.mark.parametrize(
    ("behaviour", "attempts", "phase"),
    [
        (Behaviour(data_replies=["451 4.3.0 Busy", "451 4.3.0 Busy"]), 3, "data_sent"),
        (Behaviour(connect_replies=["421 4.7.0 Try again later"]), 2, "connect"),
        (Behaviour(rcpt_reply=greylist_once), 2, "rcpt"),
    ],
    ids=["451-twice-at-data", "421-at-connect", "greylisting-at-rcpt"],
)
def test_temporary_failures_are_deferred_with_backoff_then_sent_once(
    outbox, smtp_server_factory, smtp_account_factory, practitioner, behaviour, attempts, phase
):
    server = smtp_server_factory(behaviour=behaviour)
    smtp_account_factory(server)
    outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)

    drive(lambda: settled([delivery.pk], DeliveryStatus.SENT))
    delivery.refresh_from_db()
    assert delivery.attempts == attempts
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    events = list(delivery.events.filter(kind=EventKind.ATTEMPT))
    assert [e.status for e in events] == [DeliveryStatus.DEFERRED] * (attempts - 1) + [
        DeliveryStatus.SENT
    ]
    assert events[0].phase == phase
    assert events[0].reply_code in (421, 451)
    assert "nuovo tentativo tra" in events[0].text


# --- 6. permanent failures ---------------------------------------------------------------


def test_unknown_recipient_fails_after_one_attempt_with_advice(
    outbox, smtp_server, smtp_account_factory, practitioner
):
    from emailsettings.report import error_advice

    smtp_account_factory(smtp_server)
    outbox()
    invoices = make_invoices(practitioner, 1, domain="rifiuta.test") + make_invoices(
        practitioner, 1
    )

    deliveries = queue_invoice_emails(invoices)
    ids = [d.pk for d in deliveries]

    wait_until(lambda: settled(ids, DeliveryStatus.SENT, DeliveryStatus.FAILED), timeout=30)
    time.sleep(1.0)
    sweep()
    refused, good = (Delivery.objects.get(pk=pk) for pk in ids)
    assert refused.status == DeliveryStatus.FAILED
    assert refused.attempts == 1
    assert (refused.last_error_code, refused.last_error_enhanced) == (550, "5.1.1")
    assert refused.last_error_class == "recipient_refused"
    title, _text = error_advice(delivery=refused, preset_key="custom")
    assert "destinatario" in title.lower()
    # The same connection went on with the next invoice of the batch.
    assert good.status == DeliveryStatus.SENT
    assert Counter(smtp_server.message_ids()) == {good.message_id: 1}
    assert smtp_server.connections == 1


def test_authentication_failure_breaks_the_mailbox_and_holds_the_batch(
    outbox, smtp_server, smtp_account_factory, practitioner
):
    account = smtp_account_factory(smtp_server, password="password-sbagliata")
    outbox()
    invoices = make_invoices(practitioner, 5)

    deliveries = queue_invoice_emails(invoices)
    ids = [d.pk for d in deliveries]

    wait_until(lambda: settled(ids, DeliveryStatus.HELD), timeout=30)
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert account.last_error["code"] == 535
    assert "Segreta" not in str(account.last_error)
    rows = list(Delivery.objects.filter(pk__in=ids).order_by("id"))
    assert [r.attempts for r in rows] == [1, 0, 0, 0, 0]
    assert rows[0].last_error_code == 535
    # Nothing is retried while the mailbox is broken.
    time.sleep(1.5)
    sweep()
    time.sleep(1.0)
    assert statuses(ids) == {DeliveryStatus.HELD: 5}
    assert smtp_server.connections == 1  # one login session, no retry
    assert smtp_server.messages == []

    # Once the mailbox works again, the held rows go out.
    account.set_password("Segreta-Di-Prova-42!")
    account.status = MailboxStatus.OK
    account.save()
    assert resume_held(practitioner_id=practitioner.pk) == 5
    wait_until(lambda: settled(ids, DeliveryStatus.SENT), timeout=30)
    assert Counter(smtp_server.message_ids()) == {r.message_id: 1 for r in rows}


# --- 8. data accepted, then the connection drops -----------------------------------------


def test_connection_dropped_after_data_is_unknown_and_never_resent(
    outbox, smtp_server_factory, smtp_account_factory, practitioner
):
    server = smtp_server_factory(behaviour=Behaviour(data_replies=["drop"]))
    smtp_account_factory(server)
    outbox()
    [invoice] = make_invoices(practitioner, 1)

    delivery = queue_invoice_email(invoice)

    wait_until(lambda: settled([delivery.pk], DeliveryStatus.UNKNOWN), timeout=30)
    for _ in range(5):
        sweep()
        time.sleep(0.4)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.UNKNOWN
    assert delivery.attempts == 1
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    invoice.refresh_from_db()
    assert invoice.last_emailed_at is None


# --- 7. SIGKILL in the middle of a batch -------------------------------------------------


def test_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    outbox, smtp_server_factory, smtp_account_factory, practitioner
):
    server = smtp_server_factory(behaviour=Behaviour(data_delay=0.02))
    smtp_account_factory(server)
    worker = outbox()
    invoices = make_invoices(practitioner, 200)

    deliveries = queue_invoice_emails(invoices)
    ids = [d.pk for d in deliveries]
    wait_until(lambda: len(server.messages) >= 40, timeout=60)
    worker.kill()
    assert len(server.messages) < 200

    outbox()
    drive(lambda: settled(ids, DeliveryStatus.SENT, DeliveryStatus.UNKNOWN), timeout=120)

    rows = {r.message_id: r.status for r in Delivery.objects.filter(pk__in=ids)}
    received = Counter(server.message_ids())
    sent = [mid for mid, status in rows.items() if status == DeliveryStatus.SENT]
    unknown = [mid for mid, status in rows.items() if status == DeliveryStatus.UNKNOWN]
    assert len(sent) + len(unknown) == 200
    assert all(received[mid] == 1 for mid in sent), "a sent row was received twice or never"
    assert all(received[mid] <= 1 for mid in unknown), "an unknown row was re-sent"
    assert set(received) <= set(rows)
    assert len(unknown) <= 2  # at most the row(s) in flight when the worker died
    assert sum(received.values()) <= len(sent) + len(unknown)


# --- 9. Smart Mail through a worker (the embedded .eml backend) --------------------------


def test_smart_mail_through_the_worker_writes_one_eml_per_invoice(
    settings, celery_worker_factory, practitioner, tmp_path
):
    import email
    from email.policy import default

    var_dir = tmp_path / "worker-var"
    celery_worker_factory(
        EMAIL_BACKEND="emailsettings.backends.EmlFileBackend", PSICOGEST_VAR_DIR=str(var_dir)
    )
    invoices = make_invoices(practitioner, 3)

    deliveries = queue_invoice_emails(invoices)
    ids = [d.pk for d in deliveries]

    wait_until(lambda: settled(ids, DeliveryStatus.SENT), timeout=30)
    files = sorted((var_dir / "smartmail").glob("*.eml"))
    messages = [email.message_from_bytes(f.read_bytes(), policy=default) for f in files]
    assert Counter(m["Message-ID"] for m in messages) == {d.message_id: 1 for d in deliveries}
    for message in messages:
        assert message["From"] == (
            f'"{practitioner.display_name} via PsicoGest" <fatture@mail.psicogest.test>'
        )
        assert message["Reply-To"].addresses[0].addr_spec == practitioner.email
        assert message["Sender"] is None
        assert [a.get_filename() for a in message.iter_attachments()][0].startswith("fattura-")
