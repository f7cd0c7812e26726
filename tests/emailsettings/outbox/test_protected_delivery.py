"""How each patient receives the invoice, end to end through the worker: a plain attachment,
a PDF encrypted at send time (the codice fiscale or the practitioner's password), or a secure
link with no attachment; what the ESP receives (no tracking, nothing of the patient in its
metadata); nothing of the patient in the logs or the task arguments."""

from __future__ import annotations

import email
import logging
import re
from email.policy import default
from io import BytesIO

import pikepdf
import pytest
from django.core import mail

from emailsettings import report
from emailsettings.exceptions import InvalidRecipient
from emailsettings.models import Channel, DeliveryStatus, EmailSettings, SecureLink
from emailsettings.outbox import publish
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from psicogest.models import InvoiceDelivery, Language, PdfPasswordSource
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

CODICE_FISCALE = "RSSMRA80A01H501U"


@pytest.fixture
def anymail_backend(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    mail.outbox = []
    return settings


def make_invoice(practitioner, **card):
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Paolo",
        last_name="Verdi",
        email="paolo.verdi@example.test",
        codice_fiscale=CODICE_FISCALE,
        **card,
    )
    return InvoiceFactory(patient=patient, number="12/2026")


def sent_message(delivery):
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_text
    [sent] = mail.outbox
    return sent


def test_attachment_is_the_default_and_sends_the_invoice_pdf_as_it_is(
    practitioner, anymail_backend
):
    invoice = make_invoice(practitioner)
    delivery = queue_invoice_email(invoice)
    assert delivery.protection == InvoiceDelivery.ATTACHMENT

    sent = sent_message(delivery)

    [(name, content, mimetype)] = sent.attachments
    with invoice.pdf.open("rb") as handle:
        assert content == handle.read()
    assert "password" not in sent.body.lower()


def test_the_codice_fiscale_protects_the_pdf_and_the_mail_says_how_to_open_it(
    practitioner, anymail_backend
):
    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF)
    delivery = queue_invoice_email(invoice)
    assert delivery.protection == InvoiceDelivery.PROTECTED_PDF

    sent = sent_message(delivery)

    [(name, content, mimetype)] = sent.attachments
    assert name == "fattura-12-2026.pdf" and mimetype == "application/pdf"
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(BytesIO(content))
    with pikepdf.open(BytesIO(content), password=CODICE_FISCALE) as document:
        assert document.encryption.R == 6
        assert document.encryption.bits == 256
    assert "la password è il suo codice fiscale, in maiuscolo" in sent.body
    html = sent.alternatives[0][0]
    assert "codice fiscale, in maiuscolo" in html
    for text in (sent.body, html, sent.subject):
        assert CODICE_FISCALE not in text.upper()
    # No copy of the encrypted file is kept: the invoice's own PDF is the only file.
    with invoice.pdf.open("rb") as handle:
        assert handle.read() != content


@pytest.mark.parametrize("english_text", [True, False])
def test_the_protection_notice_is_in_the_language_of_the_mail(
    english_text, practitioner, anymail_backend
):
    if english_text:
        EmailSettings.objects.update_or_create(
            practitioner=practitioner,
            defaults={
                "subject_template_en": "Invoice ${numero_fattura}",
                "body_template_en": "Dear ${nome}, please find your invoice.",
            },
        )
    invoice = make_invoice(
        practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF, language=Language.EN
    )

    sent = sent_message(queue_invoice_email(invoice))

    english = "the password is your tax code (codice fiscale), in capital letters"
    italian = "la password è il suo codice fiscale, in maiuscolo"
    # An English patient reads the English text when the practitioner wrote one, the
    # Italian otherwise: the notice goes with the text it sits in.
    assert (english in sent.body) is english_text
    assert (italian in sent.body) is not english_text
    assert ("Dear Paolo" in sent.body) is english_text


def test_the_practice_default_applies_when_the_card_does_not_choose(practitioner, anymail_backend):
    EmailSettings.objects.create(
        practitioner=practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF
    )
    invoice = make_invoice(practitioner)

    assert queue_invoice_email(invoice).protection == InvoiceDelivery.PROTECTED_PDF


def test_the_practitioners_own_password_protects_the_pdf_and_is_never_mailed(
    practitioner, anymail_backend, caplog
):
    invoice = make_invoice(
        practitioner,
        invoice_delivery=InvoiceDelivery.PROTECTED_PDF,
        pdf_password_source=PdfPasswordSource.CUSTOM,
    )
    patient = invoice.patient
    patient.set_pdf_password("Girasole-2026")
    patient.save()
    assert "Girasole" not in patient.pdf_password_encrypted

    caplog.set_level(logging.DEBUG)
    sent = sent_message(queue_invoice_email(invoice))

    [(name, content, mimetype)] = sent.attachments
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(BytesIO(content), password=CODICE_FISCALE)
    with pikepdf.open(BytesIO(content), password="Girasole-2026") as document:
        assert document.pages
    assert "consegnata di persona" in sent.body
    assert "Girasole" not in sent.body and "Girasole" not in caplog.text


def test_a_protected_pdf_without_a_password_is_refused_when_queued(practitioner):
    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF)
    invoice.patient.codice_fiscale = ""
    invoice.patient.save()

    with pytest.raises(InvalidRecipient, match="codice fiscale"):
        queue_invoice_email(invoice)


def test_a_secure_link_without_a_second_factor_is_refused_when_queued(practitioner):
    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.SECURE_LINK)
    invoice.patient.codice_fiscale = ""
    invoice.patient.save()

    with pytest.raises(InvalidRecipient, match="link sicuro"):
        queue_invoice_email(invoice)


def test_a_secure_link_mail_has_no_attachment_and_the_same_link_on_every_build(
    practitioner, anymail_backend, settings
):
    settings.EMAILSETTINGS_SITE_URL = "https://app.psicogest.test"
    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.SECURE_LINK)
    delivery = queue_invoice_email(invoice)

    sent = sent_message(delivery)

    assert sent.attachments == []
    [url] = re.findall(r"https://app\.psicogest\.test/email/scarica/[0-9a-f]{64}/", sent.body)
    token = url.rstrip("/").rsplit("/", 1)[1]
    link = SecureLink.objects.get(delivery=delivery)
    assert token not in link.token_hash and link.nonce not in url
    assert "ultimi 4 caratteri del suo codice fiscale" in sent.body
    # Built again (a retry), the message carries the same link.
    from emailsettings.outbox.worker import _protected_parts

    assert url in _protected_parts(delivery)[1]
    assert SecureLink.objects.filter(delivery=delivery).count() == 1


def test_what_the_esp_receives_has_tracking_off_and_nothing_of_the_patient(
    practitioner, postmark_standin, settings
):
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF)
    delivery = queue_invoice_email(invoice)

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    [payload] = postmark_standin.payloads
    assert payload["TrackOpens"] is False
    assert payload["TrackLinks"] == "None"
    assert payload["Metadata"] == {"delivery_id": str(delivery.pk)}
    assert payload["Tag"] == "invoice"
    outside_the_body = repr(
        {key: value for key, value in payload.items() if key not in ("TextBody", "HtmlBody")}
    )
    for secret in ("Paolo", "Verdi", CODICE_FISCALE, "1.234,56", "1234.56"):
        assert secret not in outside_the_body.replace("paolo.verdi@example.test", "")
        assert secret not in repr(payload.get("Metadata"))


def test_nothing_of_the_patient_in_the_task_arguments_or_the_logs(
    practitioner, anymail_backend, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr(
        publish.app, "send_task", lambda name, args, **options: published.append((name, args))
    )
    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF)
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=True):
        delivery = queue_invoice_email(invoice)
    send_batch(delivery_ids=[delivery.pk])

    assert published, "the send task was published"
    arguments = repr(published)
    logs = caplog.text
    for secret in ("Paolo", "Verdi", CODICE_FISCALE, "1.234,56", "1234.56", "12/2026"):
        assert secret not in arguments
        assert secret not in logs


def test_the_report_and_its_csv_say_how_each_delivery_was_protected(practitioner):
    for mode in InvoiceDelivery.values:
        patient = PatientFactory(
            practitioner=practitioner, codice_fiscale=CODICE_FISCALE, invoice_delivery=mode
        )
        queue_invoice_email(InvoiceFactory(patient=patient))
    lines = list(report.iter_csv_rows(practitioner=practitioner, filters=report.ReportFilters()))
    header = lines[0].lstrip("\ufeff").split(";")
    column = header.index("Protezione")
    cells = {line.split(";")[column] for line in lines[1:]}
    assert cells == {"PDF allegato", "PDF protetto da password", "Link sicuro"}


def test_the_message_as_sent_over_smtp_carries_the_encrypted_pdf(practitioner, anymail_backend):
    from emailsettings.covermail.message import build_message, message_bytes
    from emailsettings.outbox.worker import _protected_parts

    invoice = make_invoice(practitioner, invoice_delivery=InvoiceDelivery.PROTECTED_PDF)
    delivery = queue_invoice_email(invoice)
    pdf, notice = _protected_parts(delivery)

    parsed = email.message_from_bytes(
        message_bytes(build_message(delivery, pdf=pdf, notice=notice)), policy=default
    )

    [attachment] = list(parsed.iter_attachments())
    with pikepdf.open(BytesIO(attachment.get_content()), password=CODICE_FISCALE) as document:
        assert document.is_encrypted
    assert delivery.channel == Channel.SMART_MAIL


def test_the_confirmation_page_says_how_each_invoice_will_travel(logged_client, practitioner):
    from django.urls import reverse

    ids = []
    for mode in ("", InvoiceDelivery.PROTECTED_PDF, InvoiceDelivery.SECURE_LINK):
        patient = PatientFactory(
            practitioner=practitioner, codice_fiscale=CODICE_FISCALE, invoice_delivery=mode
        )
        ids.append(InvoiceFactory(patient=patient).pk)

    page = logged_client.get(reverse("emailsettings:send_confirm"), {"fattura": ids})

    content = page.content.decode()
    for label in ("PDF allegato", "PDF protetto da password", "Link sicuro"):
        assert f'<small class="muted" data-protection>{label}</small>' in content
