"""How the invoice travels in the patient's mail: attached as it is, attached encrypted, or
not attached at all (a secure link), and the paragraph that tells the patient how to open it.

- :func:`protection_for` — the mode of one patient (their card, else the practice default);
- :func:`pdf_password` — the password of a protected PDF: the codice fiscale in upper case,
  or the practitioner's own password for that patient; never stored beside the delivery,
  never in the mail, a log or a task argument;
- :func:`encrypt_pdf` — the PDF encrypted with AES-256, PDF 2.0 security handler revision 6,
  named explicitly (``R=6, aes=True``) rather than left to a library default: some PDF
  libraries fall back to RC4 when no algorithm is named;
- :func:`notice_text` — the paragraph added to the cover mail at send time.

The PDF is encrypted when the message is built, in memory: no encrypted or plain copy is
stored besides the invoice's own PDF. To add a mode: a member of
``psicogest.models.InvoiceDelivery``, its branch here and in the worker's ``_prepare``.
"""

from __future__ import annotations

import datetime
import secrets
from io import BytesIO
from typing import TYPE_CHECKING

import pikepdf
from django.utils import translation
from django.utils.translation import gettext as _

from emailsettings.exceptions import InvalidRecipient
from emailsettings.models import EmailSettings
from psicogest.formatting import format_date
from psicogest.models import InvoiceDelivery, PdfPasswordSource

if TYPE_CHECKING:
    from psicogest.models import Patient, Practitioner

# The secure link's second factor when the card has no date of birth: the last characters
# of the codice fiscale (the check character and the three before it).
CODICE_FISCALE_FACTOR_LENGTH = 4


def practice_default(practitioner: Practitioner) -> str:
    """The practice's mode for patients whose card does not choose one."""
    value = (
        EmailSettings.objects.filter(practitioner=practitioner)
        .values_list("invoice_delivery", flat=True)
        .first()
    )
    return value or InvoiceDelivery.ATTACHMENT


def protection_for(patient: Patient, *, default: str | None = None) -> str:
    """The patient's mode: their card's choice, else ``default`` (the practice's, read when
    not given)."""
    if patient.invoice_delivery in InvoiceDelivery.values:
        return patient.invoice_delivery
    return default if default is not None else practice_default(patient.practitioner)


def pdf_password(patient: Patient) -> str:
    """The password that opens the patient's protected PDF, "" when the card lacks it."""
    if patient.pdf_password_source == PdfPasswordSource.CUSTOM:
        return patient.get_pdf_password()
    return (patient.codice_fiscale or "").strip().upper()


def second_factor_kind(patient: Patient) -> str:
    """What the secure link's page asks: "birth_date", "codice_fiscale" or "" (neither)."""
    if patient.birth_date is not None:
        return "birth_date"
    if len(patient.codice_fiscale or "") >= CODICE_FISCALE_FACTOR_LENGTH:
        return "codice_fiscale"
    return ""


def check_protection(patient: Patient, *, mode: str, invoice_number: str) -> None:
    """:class:`InvalidRecipient` when the card lacks what ``mode`` needs (a password for a
    protected PDF, a second factor for a secure link)."""
    values = {"number": invoice_number, "name": patient.display_name or _("il paziente")}
    if mode == InvoiceDelivery.PROTECTED_PDF and not _has_password(patient):
        if patient.pdf_password_source == PdfPasswordSource.CUSTOM:
            message = _(
                "La fattura %(number)s non può essere inviata: per %(name)s è scelto il PDF "
                "protetto con una tua password, ma la password non è impostata. Scrivila "
                "nella scheda paziente."
            )
        else:
            message = _(
                "La fattura %(number)s non può essere inviata: per %(name)s è scelto il PDF "
                "protetto dal codice fiscale, ma il codice fiscale manca. Aggiungilo nella "
                "scheda paziente."
            )
        raise InvalidRecipient(message % values)
    if mode == InvoiceDelivery.SECURE_LINK and not second_factor_kind(patient):
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: per %(name)s è scelto il link "
                "sicuro, che chiede la data di nascita o il codice fiscale, ma la scheda non "
                "ha né l'una né l'altro. Aggiungine uno nella scheda paziente."
            )
            % values
        )


def _has_password(patient: Patient) -> bool:
    if patient.pdf_password_source == PdfPasswordSource.CUSTOM:
        return patient.has_pdf_password
    return bool((patient.codice_fiscale or "").strip())


def encrypt_pdf(pdf: bytes, *, password: str) -> bytes:
    """``pdf`` encrypted with AES-256 (revision 6); opening it needs ``password``. The owner
    password is random and thrown away: nobody needs it, and it must not be the patient's."""
    if not password:
        raise ValueError("A protected PDF needs a password.")
    encryption = pikepdf.Encryption(
        owner=secrets.token_urlsafe(32), user=password, R=6, aes=True, metadata=True
    )
    out = BytesIO()
    with pikepdf.open(BytesIO(pdf)) as document:
        document.save(out, encryption=encryption)
    return out.getvalue()


def notice_text(
    *,
    mode: str,
    password_source: str = "",
    link_url: str = "",
    expires_at: datetime.date | None = None,
    factor: str = "",
    language: str = "",
) -> str:
    """The paragraph the patient reads about the invoice's protection ("" for a plain
    attachment), in ``language`` (the mail's; the active one when not given). It never
    contains the password."""
    if language:
        with translation.override(language):
            return notice_text(
                mode=mode,
                password_source=password_source,
                link_url=link_url,
                expires_at=expires_at,
                factor=factor,
            )
    if mode == InvoiceDelivery.PROTECTED_PDF:
        if password_source == PdfPasswordSource.CUSTOM:
            return _(
                "Il PDF della fattura è protetto da una password: è quella che le è stata "
                "consegnata di persona dallo studio."
            )
        return _(
            "Il PDF della fattura è protetto da una password: la password è il suo codice "
            "fiscale, in maiuscolo."
        )
    if mode == InvoiceDelivery.SECURE_LINK:
        ask = (
            _("la sua data di nascita")
            if factor == "birth_date"
            else _("gli ultimi %(count)d caratteri del suo codice fiscale")
            % {"count": CODICE_FISCALE_FACTOR_LENGTH}
        )
        return _(
            "La fattura non è allegata a questa email: può scaricarla da questo link "
            "sicuro, valido fino al %(date)s:\n%(url)s\nLa pagina le chiederà %(ask)s."
        ) % {"date": format_date(expires_at), "url": link_url, "ask": ask}
    return ""
