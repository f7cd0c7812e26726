"""factory_boy factories for the host and the email module."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import factory
from django.core.files.base import ContentFile

from psicogest.invoicepdf import invoice_pdf_bytes
from psicogest.models import Invoice, Patient, Practitioner, Title


class PractitionerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Practitioner
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"professionista{n}@example.test")
    title = Title.DOTTSSA
    first_name = "Maria"
    last_name = factory.Sequence(lambda n: f"Rossi{n}")
    practice_name = "Studio di Psicologia"
    password = factory.PostGenerationMethodCall("set_password", "password-di-prova")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    practitioner = factory.SubFactory(PractitionerFactory)
    salutation = "Gentile"
    first_name = "Giulia"
    last_name = factory.Sequence(lambda n: f"Bianchi{n}")
    email = factory.Sequence(lambda n: f"paziente{n}@example.test")


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    practitioner = factory.LazyAttribute(lambda o: o.patient.practitioner)
    patient = factory.SubFactory(PatientFactory)
    number = factory.Sequence(lambda n: f"{n + 1}/2026")
    issue_date = datetime.date(2026, 11, 2)
    due_date = datetime.date(2026, 12, 2)
    total = Decimal("1234.56")
    pdf = factory.LazyAttribute(
        lambda o: ContentFile(
            invoice_pdf_bytes(number=o.number, patient="Paziente", total=o.total),
            name=f"fattura-{o.number.replace('/', '-')}.pdf",
        )
    )


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A Delivery row as the report sees it (pass ``invoice=`` to share one invoice's PDF)."""

    class Meta:
        model = "emailsettings.Delivery"

    invoice = factory.SubFactory(InvoiceFactory)
    practitioner = factory.LazyAttribute(lambda o: o.invoice.practitioner)
    patient = factory.LazyAttribute(lambda o: o.invoice.patient)
    channel = "smart_mail"
    status = "sent"
    recipient = factory.LazyAttribute(lambda o: o.patient.email)
    patient_name = factory.LazyAttribute(lambda o: o.patient.display_name)
    invoice_number = factory.LazyAttribute(lambda o: o.invoice.number)
    subject = factory.LazyAttribute(lambda o: f"Fattura n. {o.invoice_number}")
    message_id = factory.LazyFunction(lambda: f"<{uuid.uuid4().hex}@psicogest.test>")
    attempts = 1
