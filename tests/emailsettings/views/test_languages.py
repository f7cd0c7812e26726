"""Templates by language: the English cover mail, saved on its page (validated like the
Italian one), sent to a patient whose card says English, the Italian one to everyone else."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.models import EmailSettings
from emailsettings.outbox.queueing import queue_invoice_email
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

URL = reverse("emailsettings:covermail_english")


def test_the_english_cover_mail_goes_to_english_patients_only(logged_client, practitioner):
    english = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, first_name="John", language="en")
    )
    italian = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    page = logged_client.get(URL).content.decode()
    assert "non c&#x27;è ancora un testo in inglese" in page or "non c'è ancora" in page
    response = logged_client.post(
        URL,
        {
            "subject_template_en": "Invoice ${numero_fattura}",
            "body_template_en": "Dear ${nome},\nplease find attached invoice ${numero_fattura}.",
        },
    )
    assert response.status_code == 302
    page = logged_client.get(URL).content.decode()
    assert "riceve la versione in inglese" in page and f"Invoice {english.number}" in page
    assert queue_invoice_email(english).subject == f"Invoice {english.number}"
    assert queue_invoice_email(italian).subject.startswith("Fattura n.")


@pytest.mark.parametrize(
    ("subject", "body", "error"),
    [
        ("Invoice ${numero}", "Dear ${nome}", "numero_fattura"),
        ("Invoice", "", "sia l&#x27;oggetto sia il testo"),
    ],
)
def test_a_bad_english_text_is_refused(logged_client, practitioner, subject, body, error):
    response = logged_client.post(URL, {"subject_template_en": subject, "body_template_en": body})
    assert response.status_code == 400 and error in response.content.decode()
    assert (
        not EmailSettings.objects.filter(practitioner=practitioner)
        .exclude(subject_template_en="")
        .exists()
    )
