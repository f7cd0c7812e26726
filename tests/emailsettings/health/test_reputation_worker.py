"""The suspension with a real Celery worker: a suspended practitioner's Smart Mail invoice is
held when the worker claims it while another practitioner's leaves; the one click sends the
held one through the practitioner's own mailbox (a real SMTP server); the operator's lift
lets the next Smart Mail invoice leave again."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.failures import ErrorClass
from emailsettings.health.reputation import lift_suspension
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    MailboxStatus,
    Reputation,
    ReputationState,
)
from emailsettings.outbox.queueing import queue_invoice_email
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def status_of(row: Delivery) -> tuple[str, str, str]:
    row.refresh_from_db()
    return row.status, row.channel, row.last_error_class


def queue(practitioner) -> Delivery:
    return queue_invoice_email(InvoiceFactory(patient=PatientFactory(practitioner=practitioner)))


def test_hold_one_click_and_lift_with_a_real_worker(
    client,
    practitioner,
    other_practitioner,
    local_ca,
    smtp_server,
    smtp_account_factory,
    celery_worker_factory,
):
    celery_worker_factory(EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file)
    Reputation.objects.create(practitioner=practitioner, state=ReputationState.SUSPENDED)
    smtp_account_factory(smtp_server, status=MailboxStatus.OK)

    held = queue(practitioner)
    other = queue(other_practitioner)

    wait_until(
        lambda: (
            status_of(other)[0] == DeliveryStatus.SENT
            and status_of(held)
            == (DeliveryStatus.HELD, Channel.SMART_MAIL, ErrorClass.REPUTATION_HOLD)
        ),
        message="the other practitioner's invoice sent, the suspended one's held",
    )

    client.force_login(practitioner)
    response = client.post(reverse("emailsettings:reputation_send_held"))
    assert response.status_code == 302
    wait_until(
        lambda: status_of(held)[:2] == (DeliveryStatus.SENT, Channel.SMTP),
        message="the held invoice sent through the own mailbox",
    )
    assert [m.rcpt_tos for m in smtp_server.messages] == [[held.recipient]]

    assert lift_suspension(practitioner=practitioner, by=None, note="Elenco pazienti ripulito")
    after = queue(practitioner)
    wait_until(
        lambda: status_of(after)[:2] == (DeliveryStatus.SENT, Channel.SMART_MAIL),
        message="Smart Mail leaves again after the lift",
    )
    assert len(smtp_server.messages) == 1
