"""An invoice is never a mailing: the patient card's other recipients are capped where the
deliveries are created, whatever wrote the card (the admin edits the raw JSON)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from emailsettings.models import Delivery
from emailsettings.outbox.queueing import queue_invoice_emails
from psicogest.models import MAX_EXTRA_RECIPIENTS, Patient
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


def test_forty_extra_recipients_in_the_database_send_at_most_six_mails(practitioner):
    patient = PatientFactory(practitioner=practitioner)
    extras = [f"genitore{n}@example.test" for n in range(40)]
    Patient.objects.filter(pk=patient.pk).update(extra_emails=extras + extras[:3])
    invoice = InvoiceFactory(patient=Patient.objects.get(pk=patient.pk))

    queue_invoice_emails([invoice])

    rows = Delivery.objects.filter(invoice=invoice).order_by("id")
    recipients = list(rows.values_list("recipient", flat=True))
    assert len(recipients) == 1 + MAX_EXTRA_RECIPIENTS
    assert len(set(recipients)) == len(recipients)
    assert recipients[1:] == extras[:MAX_EXTRA_RECIPIENTS]


@pytest.mark.parametrize(
    "value",
    [[f"p{n}@example.test" for n in range(MAX_EXTRA_RECIPIENTS + 1)], "a@example.test", [1, 2]],
)
def test_the_card_refuses_other_recipients_that_are_too_many_or_not_a_list(practitioner, value):
    patient = PatientFactory(practitioner=practitioner)
    patient.extra_emails = value
    with pytest.raises(ValidationError) as refused:
        patient.full_clean()
    assert "extra_emails" in refused.value.message_dict


def test_the_admin_refuses_forty_other_recipients(practitioner, django_user_model):
    admin = django_user_model.objects.create_superuser(email="admin@example.test", password="x")
    patient = PatientFactory(practitioner=practitioner)
    client = Client()
    client.force_login(admin)
    url = f"/admin/psicogest/patient/{patient.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {
        name: (form.initial.get(name) if form.initial.get(name) is not None else "")
        for name in form.fields
    }
    data["practitioner"] = practitioner.pk
    data["extra_emails"] = str([f"p{n}@example.test" for n in range(40)]).replace("'", '"')

    response = client.post(url, data)

    assert response.status_code == 200  # the form again, with the error
    assert "al massimo" in response.content.decode()
    patient.refresh_from_db()
    assert patient.extra_recipients == []
