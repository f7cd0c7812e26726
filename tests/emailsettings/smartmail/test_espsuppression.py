"""Reactivating a Smart Mail address that hard-bounced lifts the ESP's own suppression too —
Postmark, SendGrid, Mailgun and Brevo, each against a local stand-in of its API through the
real "Riattiva" button — and says so; where the ESP cannot (Amazon SES here) or fails, the
page says that instead."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.models import SuppressedAddress
from emailsettings.smartmail.espsuppression import Outcome, clear_bounce
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory
from tests.support.esp_api_standin import KEY, EspApiStandIn

pytestmark = pytest.mark.django_db

ADDRESS = "giulia.bianchi@example.test"

ESPS = {
    "postmark": (
        "anymail.backends.postmark.EmailBackend",
        {"POSTMARK_SERVER_TOKEN": KEY},
        "POSTMARK_API_URL",
        "",
        ("POST", "/postmark/message-streams/outbound/suppressions/delete"),
    ),
    "sendgrid": (
        "anymail.backends.sendgrid.EmailBackend",
        {"SENDGRID_API_KEY": KEY},
        "SENDGRID_API_URL",
        "v3/",
        ("DELETE", f"/sendgrid/v3/suppression/bounces/{ADDRESS}"),
    ),
    "mailgun": (
        "anymail.backends.mailgun.EmailBackend",
        {"MAILGUN_API_KEY": KEY, "MAILGUN_SENDER_DOMAIN": "mg.psicogest.test"},
        "MAILGUN_API_URL",
        "v3",
        ("DELETE", f"/mailgun/v3/mg.psicogest.test/bounces/{ADDRESS}"),
    ),
    "brevo": (
        "anymail.backends.brevo.EmailBackend",
        {"BREVO_API_KEY": KEY},
        "BREVO_API_URL",
        "v3/",
        ("DELETE", f"/brevo/v3/smtp/blockedContacts/{ADDRESS}"),
    ),
}


@pytest.fixture
def standin():
    with EspApiStandIn() as server:
        yield server


def use_esp(settings, standin, esp: str) -> None:
    backend, keys, url_name, suffix, _call = ESPS[esp]
    settings.EMAIL_BACKEND = backend
    settings.ANYMAIL = {**keys, url_name: standin.url(esp) + suffix}


def bounced_row(practitioner, *, status="bounced", channel="smart_mail"):
    patient = PatientFactory(practitioner=practitioner, email=ADDRESS)
    row = DeliveryFactory(invoice=InvoiceFactory(patient=patient), status=status, channel=channel)
    SuppressedAddress.objects.create(practitioner=practitioner, address=ADDRESS, reason=status)
    return row


def reactivate(client, row):
    response = client.post(reverse("emailsettings:delivery_reactivate", args=[row.pk]), follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize("esp", list(ESPS))
def test_the_button_clears_the_esp_suppression(logged_client, practitioner, settings, standin, esp):
    use_esp(settings, standin, esp)
    standin.suppressed[esp].add(ADDRESS)
    row = bounced_row(practitioner)

    shown = reactivate(logged_client, row)

    assert ADDRESS not in standin.suppressed[esp]
    assert standin.calls == [ESPS[esp][4]]
    assert not SuppressedAddress.objects.exists()
    assert any("Riattivato anche presso il servizio di invio" in text for text in shown)


@pytest.mark.parametrize("esp", list(ESPS))
def test_a_wrong_key_or_an_outage_is_said(practitioner, settings, standin, esp):
    use_esp(settings, standin, esp)
    standin.suppressed[esp].add(ADDRESS)
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        **{name: "sbagliata" for name in ESPS[esp][1] if name.endswith(("KEY", "TOKEN"))},
    }
    assert clear_bounce(address=ADDRESS).outcome is Outcome.FAILED
    assert ADDRESS in standin.suppressed[esp]

    use_esp(settings, standin, esp)
    standin.fail_with = 503
    assert clear_bounce(address=ADDRESS).outcome is Outcome.FAILED


def test_an_esp_without_the_api_is_said_on_the_page(logged_client, practitioner, settings):
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    shown = reactivate(logged_client, bounced_row(practitioner))
    assert any("non permette di riattivare" in text and "Amazon SES" in text for text in shown)
    assert not SuppressedAddress.objects.exists()


@pytest.mark.parametrize(("status", "channel"), [("complained", "smart_mail"), ("bounced", "smtp")])
def test_complaints_and_own_mailbox_bounces_are_never_cleared_at_the_esp(
    logged_client, practitioner, settings, standin, status, channel
):
    use_esp(settings, standin, "postmark")
    standin.suppressed["postmark"].add(ADDRESS)
    reactivate(logged_client, bounced_row(practitioner, status=status, channel=channel))
    assert standin.calls == []
    assert ADDRESS in standin.suppressed["postmark"]


def test_without_an_esp_nothing_is_called(settings):
    settings.EMAIL_BACKEND = "emailsettings.backends.EmlFileBackend"
    assert clear_bounce(address=ADDRESS).outcome is Outcome.NO_ESP
