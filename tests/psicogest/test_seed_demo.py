import pytest
from django.core.management import call_command
from django.utils import timezone

from emailsettings.outbox.reminders import UPCOMING_DAYS, due_reminders
from psicogest.models import Invoice, InvoiceDelivery, Patient, Practitioner, Salutation

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_the_demo_practice_and_is_idempotent():
    call_command("seed_demo")
    call_command("seed_demo")
    demo = Practitioner.objects.get(email="demo@psicogest.test")
    assert demo.check_password("demo")
    patients = Patient.objects.owned_by(demo)
    assert patients.count() == 13
    assert Invoice.objects.owned_by(demo).count() == 17
    salutations = set(patients.values_list("salutation", flat=True))
    assert {choice.value for choice in Salutation} <= salutations
    assert patients.filter(salutation="Spett.le").exclude(company_name="").exists()
    assert patients.exclude(pec="").exists()
    assert patients.filter(email="").exists()
    assert patients.filter(email__endswith="@rifiuta.test").exists()
    # make run's local test server bounces this one after accepting it.
    assert patients.filter(email__endswith="@rimbalza.test").exists()
    # The three ways an invoice travels, and a typo the confirmation page warns about.
    assert set(patients.values_list("invoice_delivery", flat=True)) == {
        "",
        InvoiceDelivery.PROTECTED_PDF,
        InvoiceDelivery.SECURE_LINK,
    }
    anna = patients.get(first_name="Anna", last_name="Russo")
    assert anna.get_pdf_password() == "Girasole-2026"
    assert patients.filter(email__endswith="@gmial.com").exists()


def test_demo_invoices_have_real_pdfs():
    call_command("seed_demo")
    for invoice in Invoice.objects.all():
        with invoice.pdf.open("rb") as handle:
            data = handle.read()
        assert data.startswith(b"%PDF-1.4")
        assert data.rstrip().endswith(b"%%EOF")
        assert invoice.number.encode() in data


def test_demo_has_overdue_invoices_with_reminders_in_arrivo():
    call_command("seed_demo")
    demo = Practitioner.objects.get(email="demo@psicogest.test")
    invoices = Invoice.objects.owned_by(demo)
    assert invoices.filter(paid_at__isnull=False).count() == 1
    assert demo.reminder_rules.enabled and demo.iban
    upcoming = due_reminders(practitioner=demo, now=timezone.now(), days=UPCOMING_DAYS)
    assert {(due.invoice.patient.last_name, due.level) for due in upcoming} >= {
        ("Ferrari", 1),
        ("Romano", 2),
    }
