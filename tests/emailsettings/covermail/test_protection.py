"""The protected PDF: AES-256 (revision 6) read back with pikepdf; it opens with the right
password only; the notice the patient reads never holds the password."""

from __future__ import annotations

import datetime
from decimal import Decimal
from io import BytesIO

import pikepdf
import pytest

from emailsettings.covermail.protection import encrypt_pdf, notice_text
from psicogest.invoicepdf import invoice_pdf_bytes
from psicogest.models import InvoiceDelivery, PdfPasswordSource

PASSWORD = "RSSMRA80A01H501U"


@pytest.fixture(scope="module")
def plain() -> bytes:
    return invoice_pdf_bytes(number="12/2026", patient="Mario Rossi", total=Decimal("80.00"))


def test_the_protected_pdf_is_aes_256_revision_6(plain):
    encrypted = encrypt_pdf(plain, password=PASSWORD)

    with pikepdf.open(BytesIO(encrypted), password=PASSWORD) as document:
        assert document.is_encrypted
        info = document.encryption
        assert info.R == 6
        assert info.V == 5
        assert info.bits == 256
        # AESv3: AES-256, the only method of revision 6 (ISO 32000-2, 7.6.5).
        assert info.stream_method.name == "aesv3"
        assert info.string_method.name == "aesv3"
        assert info.file_method.name == "aesv3"
        assert len(document.pages) >= 1


def test_the_protected_pdf_opens_with_the_password_and_not_without(plain):
    encrypted = encrypt_pdf(plain, password=PASSWORD)

    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(BytesIO(encrypted))
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(BytesIO(encrypted), password=PASSWORD.lower())
    with pikepdf.open(BytesIO(encrypted), password=PASSWORD) as document:
        assert document.pages


def test_the_protected_pdf_keeps_the_invoice_and_leaks_no_text_in_clear(plain):
    encrypted = encrypt_pdf(plain, password=PASSWORD)

    assert b"Mario Rossi" in plain
    assert b"Mario Rossi" not in encrypted
    with pikepdf.open(BytesIO(encrypted), password=PASSWORD) as document:
        out = BytesIO()
        document.save(out)
    with pikepdf.open(BytesIO(plain)) as original, pikepdf.open(out) as reopened:
        assert len(original.pages) == len(reopened.pages)
        assert reopened.pages[0].Contents.read_bytes() == original.pages[0].Contents.read_bytes()


def test_an_empty_password_is_refused(plain):
    with pytest.raises(ValueError):
        encrypt_pdf(plain, password="")


def test_the_notices_say_how_to_open_and_never_hold_the_password():
    by_codice_fiscale = notice_text(
        mode=InvoiceDelivery.PROTECTED_PDF, password_source=PdfPasswordSource.CODICE_FISCALE
    )
    assert "codice fiscale, in maiuscolo" in by_codice_fiscale
    assert PASSWORD not in by_codice_fiscale
    custom = notice_text(mode=InvoiceDelivery.PROTECTED_PDF, password_source="custom")
    assert "consegnata di persona" in custom
    link = notice_text(
        mode=InvoiceDelivery.SECURE_LINK,
        link_url="https://psicogest.test/email/scarica/abc/",
        expires_at=datetime.date(2027, 1, 21),
        factor="birth_date",
    )
    assert "https://psicogest.test/email/scarica/abc/" in link
    assert "21/01/2027" in link and "data di nascita" in link
    assert notice_text(mode=InvoiceDelivery.ATTACHMENT) == ""


# --- minimal content -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Fattura per la seduta del ${data_fattura}", ["seduta"]),
        ("Ciclo di Psicoterapia e sedute", ["psicoterapia", "sedute"]),
        ("Consulenza psicologica di novembre", ["consulenza", "psicologica"]),
        ("Gentile ${nominativo}, le invio la fattura.\n${studio}", []),
        ("Fattura n. ${numero_fattura} del ${data_fattura}", []),
    ],
)
def test_words_that_name_the_kind_of_care(text, words):
    from emailsettings.covermail.rendering import care_words

    assert care_words(text) == words


@pytest.mark.django_db
def test_the_default_cover_mail_names_no_care_and_a_care_word_is_warned(practitioner):
    from emailsettings.covermail.rendering import (
        DEFAULT_BODY,
        DEFAULT_SUBJECT,
        care_words,
        render_cover_mail,
    )
    from tests.factories import InvoiceFactory, PatientFactory

    assert care_words(DEFAULT_SUBJECT + "\n" + DEFAULT_BODY) == []
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    plain = render_cover_mail(
        subject_template=DEFAULT_SUBJECT, body_template=DEFAULT_BODY, invoice=invoice
    )
    assert not any("tipo di prestazione" in warning for warning in plain.warnings)
    named = render_cover_mail(
        subject_template="Fattura sedute di psicoterapia",
        body_template=DEFAULT_BODY,
        invoice=invoice,
    )
    [warning] = [w for w in named.warnings if "tipo di prestazione" in w]
    assert "«sedute»" in warning and "«psicoterapia»" in warning
