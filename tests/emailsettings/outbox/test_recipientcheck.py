"""No wrong recipient: the four warnings of the confirmation page and the patient card, each
with the address, and the explicit tick they need before sending."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.mailbox import autodetect
from emailsettings.models import Delivery, DeliveryStatus
from emailsettings.outbox import recipientcheck
from emailsettings.outbox.recipientcheck import address_warnings, likely_typo_of
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory
from tests.support.fakedns import FakeResolver

pytestmark = pytest.mark.django_db

CONFIRM_URL = reverse("emailsettings:send_confirm")


@pytest.fixture(autouse=True)
def _fresh_dns_cache():
    autodetect.clear_cache()
    yield
    autodetect.clear_cache()


@pytest.fixture
def dns(monkeypatch):
    """Public DNS as a table: ``studio-bianchi.it`` has a mail server, ``chiuso.it`` has a
    null MX, ``sito-senza-posta.it`` only a web address, anything else does not exist."""
    resolver = FakeResolver(
        {
            ("studio-bianchi.it", "MX"): ["10 mx.studio-bianchi.it."],
            ("chiuso.it", "MX"): ["0 ."],
            ("gmail.com", "MX"): ["5 gmail-smtp-in.l.google.com."],
        }
    )
    monkeypatch.setattr(recipientcheck, "default_resolver", lambda: resolver)
    return resolver


@pytest.mark.parametrize(
    ("domain", "provider"),
    [
        ("gmial.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("libero.ti", "libero.it"),
        ("hotmial.it", "hotmail.it"),
        ("hotmial.con", "hotmail.com"),
        ("yahooo.it", "yahoo.it"),
        ("outlok.it", "outlook.it"),
        ("GMIAL.COM", "gmail.com"),
    ],
)
def test_a_typo_of_a_common_provider_is_recognised(domain, provider):
    assert likely_typo_of(domain) == provider


@pytest.mark.parametrize(
    "domain", ["gmail.com", "libero.it", "tim.it", "studio-bianchi.it", "example.test", ""]
)
def test_real_domains_are_not_typos(domain):
    assert likely_typo_of(domain) == ""


def codes(warnings) -> list[str]:
    return [warning.code for warning in warnings]


def test_each_warning_names_the_address(practitioner, dns):
    patient = PatientFactory(practitioner=practitioner, email="anna@gmial.com")
    PatientFactory(practitioner=practitioner, email="anna@gmial.com", first_name="Marco")

    warnings = address_warnings(
        practitioner=practitioner, address="anna@gmial.com", patient=patient
    )

    assert codes(warnings) == ["typo", "shared", "no_mail_server"]
    assert all("anna@gmial.com" in warning.text for warning in warnings)
    assert "forse «gmail.com»" in warnings[0].text
    assert "Marco" in warnings[1].text


def test_the_address_changed_since_the_last_invoice_that_reached_the_patient(practitioner, dns):
    patient = PatientFactory(practitioner=practitioner, email="anna@studio-bianchi.it")
    invoice = InvoiceFactory(patient=patient)
    DeliveryFactory(invoice=invoice, recipient="anna.vecchia@studio-bianchi.it", status="sent")
    # A later failed one did not reach the patient: it does not count.
    DeliveryFactory(invoice=invoice, recipient="altro@studio-bianchi.it", status="failed")

    [warning] = address_warnings(
        practitioner=practitioner, address="anna@studio-bianchi.it", patient=patient
    )

    assert warning.code == "changed"
    assert "anna@studio-bianchi.it" in warning.text
    assert "anna.vecchia@studio-bianchi.it" in warning.text
    same = address_warnings(
        practitioner=practitioner, address="Anna.Vecchia@studio-bianchi.it", patient=patient
    )
    assert same == []


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("anna@studio-bianchi.it", []),
        ("anna@chiuso.it", ["no_mail_server"]),
        ("anna@non-esiste.it", ["no_mail_server"]),
        ("anna@example.test", []),
    ],
)
def test_a_domain_without_mail_server(practitioner, dns, address, expected):
    assert codes(address_warnings(practitioner=practitioner, address=address)) == expected


def test_a_domain_with_only_a_web_address_receives_mail(practitioner, monkeypatch):
    resolver = FakeResolver({("sito.it", "A"): ["192.0.2.10"]})
    # The name exists but has no MX: NoAnswer, then the implicit MX of RFC 5321.
    original = resolver.resolve

    def resolve(qname, rdtype, *, lifetime):
        if (qname, rdtype) == ("sito.it", "MX"):
            import dns.resolver

            raise dns.resolver.NoAnswer()
        return original(qname, rdtype, lifetime=lifetime)

    resolver.resolve = resolve
    assert address_warnings(practitioner=practitioner, address="a@sito.it", resolver=resolver) == []


def test_a_dns_timeout_says_nothing(practitioner):
    import dns.exception

    resolver = FakeResolver(error=dns.exception.Timeout())
    assert (
        address_warnings(practitioner=practitioner, address="a@lento.it", resolver=resolver) == []
    )


def test_another_practitioners_patient_with_the_same_address_is_not_shared(
    practitioner, other_practitioner, dns
):
    PatientFactory(practitioner=other_practitioner, email="famiglia@studio-bianchi.it")
    assert address_warnings(practitioner=practitioner, address="famiglia@studio-bianchi.it") == []


# --- the confirmation page -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "code"),
    [
        ("anna@gmial.com", "typo"),
        ("anna@libero.ti", "typo"),
        ("anna@chiuso.it", "no_mail_server"),
    ],
)
def test_the_confirmation_page_warns_and_refuses_without_the_tick(
    logged_client, practitioner, dns, email, code
):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=email))

    page = logged_client.get(CONFIRM_URL, {"fattura": invoice.pk})
    content = page.content.decode()
    assert f'data-address-warning="{code}"' in content
    assert email in content
    assert "L'indirizzo è giusto: invia comunque" in content

    refused = logged_client.post(CONFIRM_URL, {"fattura": [invoice.pk]})
    assert refused.status_code == 400
    assert "Spunta «L'indirizzo è giusto»" in refused.content.decode()
    assert not Delivery.objects.filter(invoice=invoice).exists()

    sent = logged_client.post(
        CONFIRM_URL, {"fattura": [invoice.pk], "conferma_indirizzo": [invoice.pk]}
    )
    assert sent.status_code == 302
    assert Delivery.objects.get(invoice=invoice).recipient == email


def test_a_batch_needs_the_tick_of_each_flagged_invoice_only(logged_client, practitioner, dns):
    shared = "famiglia@studio-bianchi.it"
    first = InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=shared))
    second = InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=shared))
    clean = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, email="luca@studio-bianchi.it")
    )
    changed_patient = PatientFactory(practitioner=practitioner, email="sara@studio-bianchi.it")
    changed = InvoiceFactory(patient=changed_patient)
    DeliveryFactory(
        invoice=InvoiceFactory(patient=changed_patient),
        recipient="sara.old@studio-bianchi.it",
        status=DeliveryStatus.DELIVERED,
    )
    ids = [first.pk, second.pk, clean.pk, changed.pk]

    page = logged_client.get(CONFIRM_URL, {"fattura": ids}).content.decode()
    assert page.count('data-address-warning="shared"') == 2
    assert page.count('data-address-warning="changed"') == 1
    assert "sara.old@studio-bianchi.it" in page

    partial = logged_client.post(
        CONFIRM_URL, {"fattura": ids, "conferma_indirizzo": [first.pk, second.pk]}
    )
    assert partial.status_code == 400
    assert not Delivery.objects.filter(invoice__in=[first, second, clean, changed]).exists()

    ticked = logged_client.post(
        CONFIRM_URL,
        {"fattura": ids, "conferma_indirizzo": [first.pk, second.pk, changed.pk]},
    )
    assert ticked.status_code == 302
    assert Delivery.objects.filter(invoice__in=[first, second, clean, changed]).count() == 4


def test_an_address_without_warnings_needs_no_tick(logged_client, practitioner, dns):
    invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, email="luca@studio-bianchi.it")
    )
    assert (
        "data-address-warning"
        not in logged_client.get(CONFIRM_URL, {"fattura": invoice.pk}).content.decode()
    )
    assert logged_client.post(CONFIRM_URL, {"fattura": [invoice.pk]}).status_code == 302


# --- the patient card ----------------------------------------------------------------------


def test_saving_the_card_shows_the_same_warnings(logged_client, practitioner, dns):
    patient = PatientFactory(practitioner=practitioner, first_name="Anna", last_name="Gallo")
    PatientFactory(practitioner=practitioner, email="famiglia@hotmial.it", first_name="Marco")

    response = logged_client.post(
        reverse("patient_edit", args=[patient.pk]),
        {
            "salutation_choice": "Gentile",
            "first_name": "Anna",
            "last_name": "Gallo",
            "email": "famiglia@hotmial.it",
            "next": "/fatture/",
        },
        follow=True,
    )

    assert response.request["PATH_INFO"] == reverse("patient_edit", args=[patient.pk])
    texts = [str(message) for message in response.context["messages"]]
    assert any("forse «hotmail.it»" in text for text in texts)
    assert any("Marco" in text and "famiglia@hotmial.it" in text for text in texts)
    assert any("non riceve posta" in text for text in texts)


def test_the_checks_log_nothing_of_the_address(logged_client, practitioner, dns, caplog):
    import logging

    import dns.exception

    caplog.set_level(logging.DEBUG)
    invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, email="anna.verdi@non-esiste.it")
    )
    logged_client.get(CONFIRM_URL, {"fattura": invoice.pk})
    address_warnings(
        practitioner=practitioner,
        address="anna.verdi@lento.it",
        resolver=FakeResolver(error=dns.exception.Timeout()),
    )

    assert "non-esiste" not in caplog.text and "lento.it" not in caplog.text
    assert "anna.verdi" not in caplog.text
