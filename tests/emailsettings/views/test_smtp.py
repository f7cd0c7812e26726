"""The "Configurazione SMTP personale" section and the channel choice, through the views."""

from __future__ import annotations

import logging

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from emailsettings.mailbox import autodetect
from emailsettings.models import Channel, EmailSettings, MailboxStatus, SmtpAccount
from tests.factories import PractitionerFactory
from tests.support.fakedns import mx_zone

pytestmark = pytest.mark.django_db

PASSWORD = "Pw-della-casella-93!"
SETTINGS_URL = reverse("emailsettings:settings")
SAVE_URL = reverse("emailsettings:smtp_save")
DELETE_URL = reverse("emailsettings:smtp_delete")
CHANNEL_URL = reverse("emailsettings:channel_save")
AUTODETECT_URL = reverse("emailsettings:smtp_autodetect")


@pytest.fixture(autouse=True)
def _local_server(settings):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {"host": "localhost", "port": 1025}
    autodetect.clear_cache()


def form_data(**overrides):
    data = {
        "email": "maria.rossi@example.test",
        "preset": "local",
        "host": "localhost",
        "port": "1025",
        "security": "starttls",
        "username": "maria.rossi@example.test",
        "password": PASSWORD,
        "sender_name": "Dott.ssa Maria Rossi",
    }
    data.update(overrides)
    return data


def make_account(practitioner, **fields) -> SmtpAccount:
    values = dict(
        practitioner=practitioner,
        email=practitioner.email,
        preset="gmail",
        host="smtp.gmail.com",
        port=465,
        security="ssl",
        username=practitioner.email,
    )
    values.update(fields)
    account = SmtpAccount(**values)
    account.set_password(PASSWORD)
    account.save()
    return account


def assert_refused(response, anchor: str) -> None:
    """A refused save goes back to the settings page (post/redirect/get): the browser never
    stays on the POST URL; the errors show on the page it lands on."""
    assert response.redirect_chain == [(SETTINGS_URL + anchor, 302)]
    assert response.status_code == 200


def test_settings_page_shows_the_section_with_presets(logged_client):
    response = logged_client.get(SETTINGS_URL)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="smtp"' in body and "Configurazione SMTP personale" in body
    assert 'id="smtp-actions"' in body
    assert 'id="smtp-presets-data"' in body and "smtp.gmail.com" in body
    assert "Altro provider" in body and "Server di test locale" in body
    assert "js/smtp.js" in body
    assert "<script>" not in body  # CSP: only external scripts and JSON data blocks


def test_local_preset_is_not_offered_in_production(logged_client, settings):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = None
    body = logged_client.get(SETTINGS_URL).content.decode()
    assert "Server di test locale" not in body
    response = logged_client.post(SAVE_URL, form_data(), follow=True)
    assert_refused(response, "#smtp")
    assert not SmtpAccount.objects.exists()


def test_save_stores_the_password_encrypted_and_never_shows_it(logged_client, practitioner, caplog):
    caplog.set_level(logging.DEBUG)
    response = logged_client.post(SAVE_URL, form_data(), follow=True)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Configurazione SMTP salvata" in body
    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.password_encrypted and PASSWORD not in account.password_encrypted
    assert account.get_password() == PASSWORD
    assert account.status == MailboxStatus.UNVERIFIED
    assert PASSWORD not in body
    assert "•••• salvata" in body
    assert PASSWORD not in logged_client.get(SETTINGS_URL).content.decode()
    assert PASSWORD not in caplog.text


def test_password_not_echoed_when_the_form_has_errors(logged_client):
    response = logged_client.post(SAVE_URL, form_data(port="6379", preset="custom"), follow=True)
    body = response.content.decode()
    assert_refused(response, "#smtp")
    assert "Porta non consentita" in body
    assert PASSWORD not in body


def test_empty_password_keeps_the_stored_one_when_host_changes(logged_client, practitioner):
    logged_client.post(SAVE_URL, form_data())
    response = logged_client.post(
        SAVE_URL, form_data(password="", host="127.0.0.1", username="altro@example.test")
    )
    assert response.status_code == 302
    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.host == "127.0.0.1" and account.username == "altro@example.test"
    assert account.get_password() == PASSWORD


def test_first_save_needs_a_password(logged_client):
    response = logged_client.post(SAVE_URL, form_data(password=""), follow=True)
    assert_refused(response, "#smtp")
    assert "Inserisci la password della casella" in response.content.decode()
    assert not SmtpAccount.objects.exists()


def test_username_defaults_to_the_address(logged_client, practitioner):
    logged_client.post(SAVE_URL, form_data(username=""))
    assert SmtpAccount.objects.get(practitioner=practitioner).username == (
        "maria.rossi@example.test"
    )


def test_changing_the_settings_resets_the_last_verification(logged_client, practitioner):
    account = make_account(
        practitioner,
        preset="local",
        host="localhost",
        port=1025,
        security="starttls",
        status=MailboxStatus.BROKEN,
        last_error={"error_class": "auth_failed", "code": 535, "reply": "535 no"},
    )
    logged_client.post(SAVE_URL, form_data(email=account.email, password="nuova-password"))
    account.refresh_from_db()
    assert account.status == MailboxStatus.UNVERIFIED
    assert account.last_error == {}
    assert account.get_password() == "nuova-password"


@pytest.mark.parametrize(
    ("overrides", "field_error"),
    [
        (dict(preset="custom", port="6379"), "Porta non consentita"),
        (dict(preset="custom", port="1025"), "Porta non consentita"),
        (dict(preset="custom", port="465", security="starttls"), "La porta 465 usa SSL/TLS"),
        (dict(preset="custom", port="587", security="ssl"), "La porta 587 usa STARTTLS"),
        (dict(preset="outlook", port="587"), "non consente l&#x27;invio con password"),
        (dict(preset="proton", port="587"), "usa Smart"),
        (dict(preset="nessuno"), "Scegli un&#x27;opzione valida"),
        (dict(security="none"), "Scegli un&#x27;opzione valida"),
        (dict(host="smtp.example.it/path"), "Scrivi solo il nome del server"),
        (dict(host="smtp.example.it:587"), "Scrivi solo il nome del server"),
        (dict(email="non-un-indirizzo"), "indirizzo email valido"),
    ],
)
def test_invalid_settings_are_explained(logged_client, overrides, field_error):
    response = logged_client.post(SAVE_URL, form_data(**overrides), follow=True)
    assert_refused(response, "#smtp")
    assert field_error in response.content.decode()
    assert not SmtpAccount.objects.exists()


def test_local_preset_accepts_any_port_in_development(logged_client, practitioner):
    response = logged_client.post(SAVE_URL, form_data(port="2626"))
    assert response.status_code == 302
    assert SmtpAccount.objects.get(practitioner=practitioner).port == 2626


def test_private_host_is_refused_when_not_allowed(logged_client, settings):
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    response = logged_client.post(
        SAVE_URL, form_data(preset="custom", host="127.0.0.1", port="587"), follow=True
    )
    assert_refused(response, "#smtp")
    assert not SmtpAccount.objects.exists()


def test_last_error_is_shown_as_advice_with_technical_details(logged_client, practitioner):
    make_account(
        practitioner,
        status=MailboxStatus.BROKEN,
        last_error={
            "phase": "auth",
            "code": 534,
            "enhanced": "5.7.14",
            "error_class": "suspicious_login",
            # A server that echoes the password must not put it on the page.
            "reply": f"534-5.7.14 Please log in via your web browser {PASSWORD}",
        },
    )
    body = logged_client.get(SETTINGS_URL).content.decode()
    assert "Gmail ha bloccato l&#x27;accesso come sospetto" in body
    assert "Francoforte" in body
    assert "dettagli tecnici" in body and "534-5.7.14 Please log in via your web browser" in body
    assert PASSWORD not in body
    assert "da correggere" in body
    assert "autenticazione" in body  # the phase, in words


def test_status_ok_shows_last_verification(logged_client, practitioner):
    from django.utils import timezone

    make_account(practitioner, status=MailboxStatus.OK, last_verified_at=timezone.now())
    body = logged_client.get(SETTINGS_URL).content.decode()
    assert "funzionante" in body and "ultima verifica riuscita" in body


def test_views_are_scoped_to_the_practitioner(client, practitioner, other_practitioner):
    theirs = make_account(other_practitioner, sender_name="Studio Neri")
    client.force_login(practitioner)
    body = client.get(SETTINGS_URL).content.decode()
    assert other_practitioner.email not in body and "Studio Neri" not in body

    client.post(SAVE_URL, form_data())
    client.post(DELETE_URL)
    theirs.refresh_from_db()
    assert theirs.host == "smtp.gmail.com" and theirs.get_password() == PASSWORD
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()


def test_delete_removes_the_mailbox_and_returns_to_smart_mail(logged_client, practitioner):
    make_account(practitioner)
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    response = logged_client.post(DELETE_URL, follow=True)
    assert "Configurazione SMTP eliminata" in response.content.decode()
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMART_MAIL


def test_delete_asks_first_counting_invoices_and_holds_what_waited(logged_client, practitioner):
    from emailsettings.models import Delivery, DeliveryStatus
    from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

    make_account(practitioner)
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    patient = PatientFactory(practitioner=practitioner)
    for status in ("queued", "deferred", "sent"):
        DeliveryFactory(invoice=InvoiceFactory(patient=patient), channel="smtp", status=status)
    # One invoice scheduled to the patient, another recipient and the copy: 1 invoice.
    scheduled = InvoiceFactory(patient=patient)
    for role in ("patient", "extra", "copy"):
        DeliveryFactory(invoice=scheduled, channel="smtp", status="scheduled", role=role)
    DeliveryFactory(invoice=InvoiceFactory(patient=patient), channel="smart_mail", status="queued")

    page = logged_client.get(SETTINGS_URL).content.decode()
    confirm = page[page.index('id="smtp-delete-confirm"') :]
    confirm = confirm[: confirm.index("</details>")]
    assert "Eliminare la configurazione della casella" in confirm
    assert "In coda per questa casella: 3 fatture (5 email).</strong> Non partiranno" in confirm
    assert "Le prossime fatture partiranno con Smart Mail." in confirm
    assert ">Annulla</button>" in confirm
    # The delete button is inside the confirmation, not on the page.
    assert page.count('id="smtp-delete"') == 1 and 'id="smtp-delete"' in confirm

    response = logged_client.post(DELETE_URL, follow=True)
    content = response.content.decode()
    assert "Configurazione SMTP eliminata." in content
    assert "3 fatture (5 email) in coda per la casella restano trattenute" in content
    # As promised: nothing of the mailbox's is still waiting to leave, scheduled rows too.
    smtp_rows = Delivery.objects.filter(channel="smtp").exclude(status="sent")
    assert set(smtp_rows.values_list("status", flat=True)) == {DeliveryStatus.HELD}
    assert Delivery.objects.get(channel="smart_mail").status == DeliveryStatus.QUEUED


def test_delete_confirmation_without_queued_invoices(logged_client, practitioner):
    make_account(practitioner)
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "Nessuna fattura è in coda per questa casella." in page
    assert "Le prossime fatture partiranno con Smart Mail." not in page


def test_choosing_smtp_needs_a_configured_mailbox(logged_client, practitioner):
    response = logged_client.post(CHANNEL_URL, {"channel": "smtp"}, follow=True)
    assert_refused(response, "#channel")
    assert "configura prima l&#x27;SMTP personale" in response.content.decode()
    assert not EmailSettings.objects.filter(practitioner=practitioner, channel="smtp").exists()

    make_account(practitioner)
    response = logged_client.post(CHANNEL_URL, {"channel": "smtp"})
    assert response.status_code == 302
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMTP

    logged_client.post(CHANNEL_URL, {"channel": "smart_mail"})
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMART_MAIL


def test_channel_choice_is_per_practitioner(client, practitioner, other_practitioner):
    make_account(practitioner)
    EmailSettings.objects.create(practitioner=other_practitioner, channel=Channel.SMART_MAIL)
    client.force_login(practitioner)
    client.post(CHANNEL_URL, {"channel": "smtp"})
    assert EmailSettings.objects.get(practitioner=other_practitioner).channel == "smart_mail"
    assert EmailSettings.objects.get(practitioner=practitioner).channel == "smtp"


def test_autodetect_proposes_the_preset_from_the_domain(logged_client):
    response = logged_client.get(AUTODETECT_URL, {"email": "mario.rossi@libero.it"})
    assert response.status_code == 200
    data = response.json()
    assert data["preset_key"] == "libero" and data["label"] == "Libero Mail"
    assert (data["host"], data["port"], data["security"]) == ("smtp.libero.it", 465, "ssl")
    assert data["guessed"] is False and data["source"] == "domain"
    assert "login.libero.it" in data["login_notes"]


def test_autodetect_uses_mx_and_marks_guesses(logged_client, monkeypatch):
    fake = mx_zone({"studiorossi.it": [(10, "aspmx.l.google.com.")]})
    monkeypatch.setattr(autodetect, "_default_resolver", lambda: fake)
    data = logged_client.get(AUTODETECT_URL, {"email": "info@studiorossi.it"}).json()
    assert data["preset_key"] == "google_workspace" and data["source"] == "mx"

    data = logged_client.get(AUTODETECT_URL, {"email": "info@sconosciuto.example"}).json()
    assert data["preset_key"] == "custom" and data["guessed"] is True
    assert data["host"] == "smtp.sconosciuto.example"


def test_autodetect_rejects_invalid_addresses(logged_client):
    response = logged_client.get(AUTODETECT_URL, {"email": "non valido"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", SETTINGS_URL),
        ("get", AUTODETECT_URL + "?email=a@libero.it"),
        ("post", SAVE_URL),
        ("post", DELETE_URL),
        ("post", CHANNEL_URL),
    ],
)
def test_login_is_required(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


@pytest.mark.parametrize(
    ("url", "data"),
    [(SAVE_URL, form_data()), (DELETE_URL, {}), (CHANNEL_URL, {"channel": "smart_mail"})],
)
def test_every_post_needs_the_csrf_token(practitioner, url, data):
    make_account(practitioner)
    client = Client(enforce_csrf_checks=True)
    client.force_login(practitioner)
    response = client.post(url, data)
    assert response.status_code == 403
    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.host == "smtp.gmail.com"
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()


@pytest.mark.parametrize("url", [SAVE_URL, DELETE_URL, CHANNEL_URL])
def test_state_changes_refuse_get(logged_client, url):
    assert logged_client.get(url).status_code == 405


def test_a_new_practitioner_starts_from_their_own_address(client):
    newcomer = PractitionerFactory(email="nuova@libero.it")
    client.force_login(newcomer)
    body = client.get(SETTINGS_URL).content.decode()
    assert 'value="nuova@libero.it"' in body
    assert "Nessuna casella configurata" in body
    # "Altro provider" with its usual settings, and the practitioner's name as sender.
    assert 'name="port" value="587"' in body
    assert '<option value="starttls" selected>STARTTLS</option>' in body
    assert f'value="{newcomer.display_name}"' in body


@pytest.mark.parametrize(
    ("port", "security", "expected", "absent"),
    [
        (1, "starttls", "La porta 1 non è una porta per la posta in uscita", "porta 25"),
        (587, "starttls", "indichi la porta 587 con STARTTLS", "porta 25"),
        (465, "ssl", "indichi la porta 465 con SSL/TLS", "porta 25"),
        (25, "starttls", "La porta 25 è spesso bloccata", "non è una porta per la posta"),
    ],
)
def test_connection_advice_is_about_the_port_in_use(
    logged_client, practitioner, port, security, expected, absent
):
    account = make_account(practitioner)
    SmtpAccount.objects.filter(pk=account.pk).update(
        port=port,
        security=security,
        last_error={"phase": "connect", "error_class": "connection_failed", "reply": "refused"},
        last_error_at=timezone.now(),
    )
    page = logged_client.get(SETTINGS_URL).content.decode()
    advice = page[page.index('id="smtp-last-error"') :]
    advice = advice[: advice.index("</ol>")]
    assert expected in advice
    assert absent not in advice


def test_a_refused_save_keeps_what_was_typed_but_never_the_password(logged_client):
    response = logged_client.post(
        SAVE_URL, form_data(preset="custom", host="smtp.nuovo.test", port="1"), follow=True
    )
    assert_refused(response, "#smtp")
    body = response.content.decode()
    assert 'value="smtp.nuovo.test"' in body
    assert "Porta non consentita" in body
    assert "Configurazione SMTP non salvata" in body
    # The password was typed but is not kept, not even in the session: type it again.
    assert "Per sicurezza la password non viene conservata: scrivila di nuovo." in body
    assert PASSWORD not in body
    assert PASSWORD not in str(dict(logged_client.session))
    # Shown once: a reload is a clean page, it does not post again.
    again = logged_client.get(SETTINGS_URL).content.decode()
    assert "Porta non consentita" not in again
    assert 'value="smtp.nuovo.test"' not in again
