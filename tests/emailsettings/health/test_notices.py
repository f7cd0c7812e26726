"""The platform's own mail to practitioners leaves apart from the invoices: its own From and,
through anymail's ``esp_extra``, its own ESP stream — checked on what a local stand-in of
Postmark's send API receives."""

from __future__ import annotations

import pytest

from emailsettings.guidance import Advice
from emailsettings.health.alerts import alert_practitioner
from emailsettings.models import DeliveryStatus
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def notice_stream(settings, postmark_standin):
    settings.EMAILSETTINGS_NOTICE_FROM = "avvisi@psicogest.test"
    settings.EMAILSETTINGS_NOTICE_ESP_EXTRA = {"MessageStream": "avvisi"}
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    return postmark_standin


def test_alerts_use_the_notice_stream_and_invoices_do_not(
    notice_stream, practitioner, smtp_account_factory
):
    account = smtp_account_factory()
    assert alert_practitioner(
        account, advice=Advice(title="Password cambiata", text="Aggiornala."), lead="Attenzione"
    )
    delivery = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    )
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT

    alert, invoice = notice_stream.payloads
    assert alert["To"] == practitioner.email
    assert alert["From"] == "avvisi@psicogest.test"
    assert alert["MessageStream"] == "avvisi"
    assert invoice["To"] == delivery.recipient
    assert invoice.get("MessageStream", "outbound") != "avvisi"
    assert "avvisi@psicogest.test" not in invoice["From"]


def test_without_the_setting_notices_use_the_platform_from(
    settings, postmark_standin, practitioner, smtp_account_factory
):
    settings.EMAILSETTINGS_PLATFORM_FROM = "fatture@psicogest.test"
    alert_practitioner(smtp_account_factory(), advice=Advice(title="t", text="x"), lead="l")

    [alert] = postmark_standin.payloads
    assert alert["From"] == "fatture@psicogest.test"
    assert "MessageStream" not in alert
