"""Demo data: practitioner demo@psicogest.test / demo, a dozen patients, their invoices.

Idempotent: running it again updates the same rows and creates nothing twice.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from psicogest.invoicepdf import invoice_pdf_bytes
from psicogest.models import Invoice, Patient, Practitioner, Title

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
    ("", "Chiara", "Gallo", "", "chiara.gallo@example.test", ""),
    # Accepted by make run's local test server, then bounced (a report in the sender's INBOX).
    ("Gentile Sig.", "Davide", "Conti", "", "davide.conti@rimbalza.test", ""),
]


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
                defaults={"salutation": salutation, "email": email, "pec": pec},
            )
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
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo pronta: {DEMO_EMAIL} / {DEMO_PASSWORD} "
                f"({len(PATIENTS)} pazienti, {len(PATIENTS)} fatture)"
            )
        )
