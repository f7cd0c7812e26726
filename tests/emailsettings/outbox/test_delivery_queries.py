"""What one delivery costs the database in a batch's steady state: two SQL statements, the
claim (which also records that the data is about to leave) and the outcome (the row, its
event and the invoice's "last emailed" in one statement, ``outbox.statements``), whatever the
batch size, on both channels. Counted with Django's ``CaptureQueriesContext`` on PostgreSQL,
outside any test transaction (so each ``atomic`` block is the worker's own), BEGIN, COMMIT
and savepoints included: the outcome needs none. Smart Mail goes through anymail's Postmark
backend to a local stand-in of its API; its daily quota is claimed once a batch, not checked
once a delivery."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.worker import send_batch
from psicogest.models import Invoice, Language
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)

MAX_QUERIES_PER_DELIVERY = 2


TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.I)


def statements(captured: list[dict]) -> list[str]:
    """The SQL statements that read or write rows (BEGIN, COMMIT and savepoints left out)."""
    return [q["sql"] for q in captured if not TRANSACTION_CONTROL.match(q["sql"])]


def queries_for_a_batch(practitioner, count: int) -> int:
    invoices = [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"p{n}@example.test")
        )
        for n in range(count)
    ]
    rows = queue_invoice_emails(invoices)
    with CaptureQueriesContext(connection) as captured:
        send_batch(delivery_ids=[row.pk for row in rows])
    statuses = set(
        Delivery.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True)
    )
    assert statuses == {DeliveryStatus.SENT}
    return len(captured.captured_queries)


def steady_state(practitioner) -> float:
    # The difference between two batch sizes leaves out the batch's fixed costs (loading
    # the rows and the mailbox, opening the session).
    small, large = queries_for_a_batch(practitioner, 3), queries_for_a_batch(practitioner, 11)
    return (large - small) / 8


@pytest.mark.parametrize("pipelining", [True, False])
def test_smtp_delivery_costs_two_statements(
    pipelining, settings, smtp_server_factory, smtp_account_factory, practitioner
):
    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    smtp_account_factory(smtp_server_factory(pipelining=pipelining))
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )

    per_delivery = steady_state(practitioner)

    # Without PIPELINING the RCPT and DATA phases are two more writes (they tell a dead
    # worker's row apart while the envelope goes command by command).
    assert per_delivery <= MAX_QUERIES_PER_DELIVERY + (0 if pipelining else 2), per_delivery


@pytest.mark.parametrize("quota", ["warm-up quota", "no daily quota"])
def test_smart_mail_delivery_costs_two_statements(quota, settings, postmark_standin, practitioner):
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    if quota == "no daily quota":
        settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 0
        settings.EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA = 0
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMART_MAIL}
    )

    per_delivery = steady_state(practitioner)

    assert postmark_standin.messages == 3 + 11
    assert per_delivery <= MAX_QUERIES_PER_DELIVERY, per_delivery


def queueing_statements(practitioner, count: int, *, tag: str) -> int:
    ids = [
        InvoiceFactory(
            patient=PatientFactory(
                practitioner=practitioner,
                email=f"{tag}{n}@example.test",
                language=Language.EN if n % 2 else Language.IT,
            )
        ).pk
        for n in range(count)
    ]
    invoices = list(Invoice.objects.filter(pk__in=ids).select_related("patient", "practitioner"))
    with CaptureQueriesContext(connection) as captured:
        rows = queue_invoice_emails(invoices)
    assert len(rows) == count
    return len(statements(captured.captured_queries))


def test_queueing_reads_the_practitioners_settings_once_a_batch_not_once_an_invoice(
    practitioner,
):
    # Italian and English patients alike: each language's cover text is read once.
    EmailSettings.objects.update_or_create(
        practitioner=practitioner,
        defaults={"subject_template_en": "Invoice ${numero_fattura}", "body_template_en": "Hi"},
    )

    small = queueing_statements(practitioner, 3, tag="a")
    large = queueing_statements(practitioner, 11, tag="b")

    # The rows and their first events are inserted in one statement each, however many.
    assert large == small, (small, large)
