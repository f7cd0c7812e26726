"""Demo data: practitioner demo@psicogest.test / demo, a dozen patients, their invoices.

Three patients show the three ways an invoice can travel (PDF allegato is everyone else's),
and one address is a typo of a common provider, for the confirmation page's warning. A few
older invoices are overdue (and one of them paid), with payment reminders turned on, so
«Solleciti» shows reminders in arrivo.

Idempotent: running it again updates the same rows and creates nothing twice.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from emailsettings.outbox.reminders import rules_for
from psicogest.invoicepdf import invoice_pdf_bytes
from psicogest.models import (
    Invoice,
    InvoiceDelivery,
    Patient,
    PdfPasswordSource,
    Practitioner,
    Title,
)
from psicogest.payments import mark_paid

DEMO_EMAIL = "demo@psicogest.test"
DEMO_PASSWORD = "demo"

# (salutation, first, last, company, email, pec)
PATIENTS = [
    ("Gentile", "Giulia", "Bianchi", "", "giulia.bianchi@example.test", ""),
    ("Gentile Sig.", "Marco", "Verdi", "", "marco.verdi@example.test", ""),
    ("Gentile Sig.ra", "Anna", "Russo", "", "anna.russo@example.test", ""),
    ("Egregio", "Paolo", "Ferrari", "", "paolo.ferrari@example.test", ""),
    ("Spett.le", "", "", "Studio Associato Esposito S.r.l.", "amministrazione@esposito.test", ""),
    ("Caro", "Luca", "Romano", "", "luca.romano@example.test", ""),
    ("Cara", "Sara", "Colombo", "", "sara.colombo@example.test", ""),
    (
        "Gentile",
        "Francesca",
        "Ricci",
        "",
        "francesca.ricci@pec.example.test",
        "francesca.ricci@pec.example.test",
    ),
    ("Gentile Sig.", "Giorgio", "Marino", "", "", ""),
    ("Gentile Sig.ra", "Elena", "Greco", "", "elena.greco@rifiuta.test", ""),
    ("Alla cortese attenzione di", "Roberto", "Bruno", "", "roberto.bruno@example.test", ""),
    # A typo of gmail.com: the confirmation page warns and asks for the tick.
    ("", "Chiara", "Gallo", "", "chiara.gallo@gmial.com", ""),
    # Accepted by make run's local test server, then bounced (a report in the sender's INBOX).
    ("Gentile Sig.", "Davide", "Conti", "", "davide.conti@rimbalza.test", ""),
]


# How some patients receive their invoices: (first, last) → card fields. The codici fiscali
# are made up but valid (check character included); Anna Russo's PDF opens with the
# practitioner's own password.
PROTECTION: dict[tuple[str, str], dict[str, Any]] = {
    ("Giulia", "Bianchi"): {
        "invoice_delivery": InvoiceDelivery.PROTECTED_PDF,
        "codice_fiscale": "BNCGLI85T41F205X",
    },
    ("Marco", "Verdi"): {
        "invoice_delivery": InvoiceDelivery.SECURE_LINK,
        "codice_fiscale": "VRDMRC79C14L219F",
        "birth_date": datetime.date(1979, 3, 14),
    },
    ("Anna", "Russo"): {
        "invoice_delivery": InvoiceDelivery.PROTECTED_PDF,
        "codice_fiscale": "RSSNNA90L62F839Z",
        "pdf_password_source": PdfPasswordSource.CUSTOM,
    },
}
DEMO_PDF_PASSWORD = "Girasole-2026"

# Older invoices: (first, last) of the patient, days past the due date, paid. The reminder
# levels (7 and 21 days after the due date) put them in «In arrivo».
OVERDUE: list[tuple[str, str, int, bool]] = [
    ("Paolo", "Ferrari", 12, False),
    ("Luca", "Romano", 25, False),
    ("Sara", "Colombo", 3, False),
    ("Roberto", "Bruno", 40, True),
]
# A well-known example IBAN (not a real account), quoted by the reminders.
DEMO_IBAN = "IT60X0542811101000000123456"


class Command(BaseCommand):
    help = "Create (or refresh) the demo practitioner, patients and invoices."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        practitioner, created = Practitioner.objects.get_or_create(
            email=DEMO_EMAIL,
            defaults={
                "title": Title.DOTTSSA,
                "first_name": "Maria",
                "last_name": "Rossi",
                "practice_name": "Studio di Psicologia Rossi",
                "iban": DEMO_IBAN,
                "is_staff": True,
                "is_superuser": True,
            },
        )
        if created or not practitioner.check_password(DEMO_PASSWORD):
            practitioner.set_password(DEMO_PASSWORD)
            practitioner.save()

        today = datetime.date.today()
        for index, (salutation, first, last, company, email, pec) in enumerate(PATIENTS, 1):
            patient, _ = Patient.objects.update_or_create(
                practitioner=practitioner,
                first_name=first,
                last_name=last,
                company_name=company,
                defaults={
                    "salutation": salutation,
                    "email": email,
                    "pec": pec,
                    **PROTECTION.get((first, last), {}),
                },
            )
            if PROTECTION.get((first, last), {}).get("pdf_password_source"):
                patient.set_pdf_password(DEMO_PDF_PASSWORD)
                patient.save(update_fields=["pdf_password_encrypted"])
            number = f"{index}/{today.year}"
            total = Decimal("70.00") + Decimal(index * 10) + (Decimal("1200") if company else 0)
            invoice, _ = Invoice.objects.update_or_create(
                practitioner=practitioner,
                number=number,
                defaults={
                    "patient": patient,
                    "issue_date": today - datetime.timedelta(days=len(PATIENTS) - index),
                    "due_date": today + datetime.timedelta(days=30),
                    "total": total,
                },
            )
            if not invoice.pdf:
                pdf = invoice_pdf_bytes(number=number, patient=patient.display_name, total=total)
                invoice.pdf.save(f"fattura-{index}-{today.year}.pdf", ContentFile(pdf))
        for offset, (first, last, days_late, paid) in enumerate(OVERDUE, len(PATIENTS) + 1):
            patient = Patient.objects.get(
                practitioner=practitioner, first_name=first, last_name=last
            )
            number = f"{offset}/{today.year}"
            total = Decimal("80.00")
            due = today - datetime.timedelta(days=days_late)
            invoice, created = Invoice.objects.update_or_create(
                practitioner=practitioner,
                number=number,
                defaults={
                    "patient": patient,
                    "issue_date": due - datetime.timedelta(days=30),
                    "due_date": due,
                    "total": total,
                },
            )
            if not invoice.pdf:
                pdf = invoice_pdf_bytes(number=number, patient=patient.display_name, total=total)
                invoice.pdf.save(f"fattura-{offset}-{today.year}.pdf", ContentFile(pdf))
            if paid and created:
                mark_paid(invoice=invoice)
        rules = rules_for(practitioner)
        if not rules.enabled:
            rules.enabled = True
            rules.save(update_fields=["enabled", "updated_at"])
        invoices = len(PATIENTS) + len(OVERDUE)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo pronta: {DEMO_EMAIL} / {DEMO_PASSWORD} "
                f"({len(PATIENTS)} pazienti, {invoices} fatture, solleciti attivi)"
            )
        )
