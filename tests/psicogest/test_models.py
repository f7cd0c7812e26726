from decimal import Decimal

import pytest

from psicogest.models import Invoice, Patient, Practitioner
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


def test_practitioner_logs_in_with_email_and_signs_with_title():
    user = Practitioner.objects.create_user(
        "Maria.Rossi@Example.TEST",
        "segreta",
        title="Dott.ssa",
        first_name="Maria",
        last_name="Rossi",
    )
    assert user.email == "maria.rossi@example.test"
    assert user.check_password("segreta")
    assert user.display_name == "Dott.ssa Maria Rossi"


def test_patient_display_name_is_the_company_for_companies():
    person = PatientFactory(first_name="Anna", last_name="Russo", company_name="")
    company = PatientFactory(salutation="Spett.le", company_name="Esposito S.r.l.")
    assert person.display_name == "Anna Russo"
    assert company.display_name == "Esposito S.r.l."
    assert company.is_company and not person.is_company


def test_owned_by_returns_only_the_practitioners_rows(practitioner, other_practitioner):
    mine = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    assert list(Invoice.objects.owned_by(practitioner)) == [mine]
    assert list(Patient.objects.owned_by(practitioner)) == [mine.patient]


def test_invoice_number_is_unique_per_practitioner(practitioner, other_practitioner):
    from django.db import IntegrityError, transaction

    InvoiceFactory(number="1/2026", patient=PatientFactory(practitioner=practitioner))
    InvoiceFactory(number="1/2026", patient=PatientFactory(practitioner=other_practitioner))
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceFactory(number="1/2026", patient=PatientFactory(practitioner=practitioner))
    assert Invoice.objects.get(practitioner=practitioner).total == Decimal("1234.56")
