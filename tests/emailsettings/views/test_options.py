"""The sending options in the UI: the "Opzioni di invio" card, the patient card's address
choice and other recipients, "Invia il …" on the confirmation page, and the report's
scheduled rows with "Annulla" / "Invia ora". Every URL is scoped to the practitioner and
needs CSRF; bad input gets an Italian error and loses nothing."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from emailsettings.models import Delivery, DeliveryStatus, EmailSettings, RecipientRole
from emailsettings.outbox.queueing import queue_invoice_email
from psicogest.models import InvoiceAddress
from tests.factories import InvoiceFactory, PatientFactory

CONFIRM_URL = reverse("emailsettings:send_confirm")
OPTIONS_URL = reverse("emailsettings:options_save")
SETTINGS_URL = reverse("emailsettings:settings")


def local_input(moment: datetime.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Anna",
        last_name="Russo",
        email="anna.russo@example.test",
        extra_emails=["mamma.russo@example.test"],
    )
    return InvoiceFactory(patient=patient, number="7/2026")


# --- the options card ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_settings_page_shows_the_options_card(logged_client, practitioner):
    response = logged_client.get(SETTINGS_URL)
    body = response.content.decode()
    assert 'id="sending-options"' in body
    assert "Ricevi una copia di ogni fattura inviata" in body
    assert f"La copia arriva a {practitioner.email}" in body


@pytest.mark.django_db
def test_saving_the_options_stores_the_copy_and_the_window(
    logged_client, practitioner, other_practitioner
):
    EmailSettings.objects.create(practitioner=other_practitioner)
    response = logged_client.post(
        OPTIONS_URL,
        {
            "copy_to_self": "on",
            "window_enabled": "on",
            "window_days": ["0", "1", "2", "3", "4"],
            "window_start": "08:00",
            "window_end": "20:00",
        },
    )
    assert response.status_code == 302
    assert response["Location"].endswith("#sending-options")
    row = EmailSettings.objects.get(practitioner=practitioner)
    assert row.copy_to_self is True
    assert (row.window_days, row.window_start, row.window_end) == (
        "01234",
        datetime.time(8),
        datetime.time(20),
    )
    other = EmailSettings.objects.get(practitioner=other_practitioner)
    assert (other.copy_to_self, other.window_days) == (False, "")
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "Opzioni di invio salvate." in page
    assert "Lun, Mar, Mer, Gio, Ven dalle 08:00 alle 20:00" in page


@pytest.mark.django_db
def test_turning_the_window_off_clears_it(logged_client, practitioner):
    EmailSettings.objects.create(
        practitioner=practitioner,
        window_days="01234",
        window_start=datetime.time(8),
        window_end=datetime.time(20),
    )
    logged_client.post(OPTIONS_URL, {"window_days": ["0"], "window_start": "08:00"})
    row = EmailSettings.objects.get(practitioner=practitioner)
    assert (row.window_days, row.window_start, row.window_end) == ("", None, None)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"window_days": ["0"], "window_start": "20:00", "window_end": "08:00"},
            "L&#x27;ora di fine deve essere dopo l&#x27;ora di inizio.",
        ),
        ({"window_start": "08:00", "window_end": "20:00"}, "Scegli almeno un giorno di invio."),
        (
            {"window_days": ["0"], "window_start": "otto", "window_end": "20:00"},
            "Scrivi l&#x27;ora come 08:00.",
        ),
    ],
)
@pytest.mark.django_db
def test_a_bad_window_is_refused_in_italian_and_keeps_what_was_typed(
    logged_client, practitioner, data, error
):
    response = logged_client.post(
        OPTIONS_URL, {"copy_to_self": "on", "window_enabled": "on", **data}
    )
    assert response.status_code == 302
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()
    page = logged_client.get(response["Location"]).content.decode()
    assert error in page
    assert "Opzioni di invio non salvate" in page
    # What was typed is still there.
    assert 'name="copy_to_self" id="id_copy_to_self" checked' in page or (
        'name="copy_to_self"' in page and "checked" in page.split('name="copy_to_self"')[1][:80]
    )


@pytest.mark.django_db
def test_the_options_need_login_post_and_csrf(client, practitioner):
    assert client.post(OPTIONS_URL, {"copy_to_self": "on"}).status_code == 302  # to login
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(practitioner)
    assert csrf_client.post(OPTIONS_URL, {"copy_to_self": "on"}).status_code == 403
    csrf_client.force_login(practitioner)
    assert csrf_client.get(OPTIONS_URL).status_code == 405
    assert not EmailSettings.objects.filter(practitioner=practitioner, copy_to_self=True).exists()


# --- the patient card ----------------------------------------------------------------------


def patient_post(**fields):
    data = {
        "salutation_choice": "Gentile",
        "first_name": "Anna",
        "last_name": "Russo",
        "email": "anna.russo@example.test",
        "pec": "",
        "invoice_address": "email",
        "extra_emails": "",
    }
    data.update(fields)
    return data


@pytest.mark.django_db
def test_the_patient_card_saves_the_address_choice_and_other_recipients(logged_client, invoice):
    patient = invoice.patient
    url = reverse("patient_edit", args=[patient.pk])
    response = logged_client.post(
        url,
        patient_post(
            pec="anna@pec.example.test",
            invoice_address="pec",
            extra_emails="mamma@example.test\n\nPapa@Example.TEST, mamma@example.test",
        ),
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.invoice_address == InvoiceAddress.PEC
    assert patient.extra_emails == ["mamma@example.test", "Papa@example.test"]
    page = logged_client.get(url).content.decode()
    assert "mamma@example.test\nPapa@example.test" in page


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"extra_emails": "mamma@example.test\nnon valido"}, "«non valido» non è un indirizzo"),
        (
            {"extra_emails": "\n".join(f"p{n}@example.test" for n in range(6))},
            "al massimo 5 altri destinatari",
        ),
        ({"invoice_address": "pec", "pec": ""}, "Scrivi l&#x27;indirizzo PEC"),
    ],
)
@pytest.mark.django_db
def test_bad_recipients_on_the_card_are_refused_and_nothing_is_saved(
    logged_client, invoice, fields, error
):
    patient = invoice.patient
    response = logged_client.post(
        reverse("patient_edit", args=[patient.pk]), patient_post(**fields)
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    patient.refresh_from_db()
    assert patient.extra_emails == ["mamma.russo@example.test"]
    assert patient.invoice_address == InvoiceAddress.EMAIL


# --- the confirmation page -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_confirmation_shows_other_recipients_the_copy_and_the_schedule(
    logged_client, practitioner, invoice
):
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)
    page = logged_client.get(CONFIRM_URL + f"?fattura={invoice.pk}").content.decode()
    assert "mamma.russo@example.test" in page
    assert f"Riceverai una copia di ogni mail a {practitioner.email}" in page
    # One invoice: the patient, the other recipient and the copy.
    assert "Partiranno: 1 fattura (3 email)." in page
    assert 'name="invia_il"' in page and 'type="datetime-local"' in page


@pytest.mark.django_db
def test_sending_at_a_date_schedules_every_row(logged_client, practitioner, invoice):
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)
    when = timezone.now() + datetime.timedelta(days=1)
    response = logged_client.post(
        CONFIRM_URL,
        {"fattura": [str(invoice.pk)], "quando": "programma", "invia_il": local_input(when)},
        follow=True,
    )
    rows = list(Delivery.objects.order_by("pk"))
    assert [row.role for row in rows] == [
        RecipientRole.PATIENT,
        RecipientRole.EXTRA,
        RecipientRole.COPY,
    ]
    assert {row.status for row in rows} == {DeliveryStatus.SCHEDULED}
    expected = when.replace(second=0, microsecond=0)
    assert {row.scheduled_for for row in rows} == {expected}
    body = response.content.decode()
    # The invoice is the unit: one invoice, its three emails in brackets.
    assert "1 fattura (3 email) programmata: partirà" in body
    assert "programmata per" in body
    # The progress page says where to cancel it, and names each email's role.
    assert "1 fattura (3 email) programmata: la trovi nell&#x27;elenco invii" in body
    assert "(3 email)</small>" in body
    for role in ("paziente", "altro destinatario", "copia per te"):
        assert f">{role}</span>" in body


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"quando": "programma", "invia_il": ""}, "Scegli la data e l&#x27;ora di invio."),
        ({"quando": "programma", "invia_il": "domani"}, "Scrivi data e ora come 25/12/2026 09:30."),
        (
            {"quando": "programma", "invia_il": "2020-01-01T09:00"},
            "Scegli una data e un&#x27;ora future.",
        ),
        ({"quando": "programma", "invia_il": "2099-01-01T09:00"}, "al massimo 366 giorni"),
        (
            {"quando": "ora", "invia_il": "2099-01-01T09:00"},
            "Hai scritto una data: scegli «Invia il…» oppure cancella la data.",
        ),
    ],
)
@pytest.mark.django_db
def test_a_bad_send_date_is_refused_on_the_same_page_and_creates_nothing(
    logged_client, invoice, data, error
):
    response = logged_client.post(CONFIRM_URL, {"fattura": [str(invoice.pk)], **data})
    assert response.status_code == 400
    body = response.content.decode()
    assert error in body
    # The selection and what was typed are still on the page.
    assert f'name="fattura" value="{invoice.pk}"' in body
    if data["invia_il"]:
        assert f'value="{data["invia_il"]}"' in body
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_the_confirmation_warns_when_sending_now_is_outside_the_window(
    logged_client, practitioner, invoice
):
    today = timezone.localtime().weekday()
    EmailSettings.objects.create(
        practitioner=practitioner,
        window_days="".join(str(day) for day in range(7) if day != today),
        window_start=datetime.time(8),
        window_end=datetime.time(20),
    )
    page = logged_client.get(CONFIRM_URL + f"?fattura={invoice.pk}").content.decode()
    assert "Fascia oraria di invio:" in page
    assert "Ora sei fuori fascia: se invii subito, partiranno" in page


# --- the report: scheduled rows --------------------------------------------------------------


@pytest.fixture
def scheduled(invoice):
    return queue_invoice_email(invoice, send_at=timezone.now() + datetime.timedelta(days=1))


@pytest.mark.django_db
def test_the_report_shows_programmata_per_and_offers_cancel(logged_client, scheduled):
    listing = logged_client.get(reverse("emailsettings:deliveries")).content.decode()
    assert "programmata per" in listing
    detail = logged_client.get(reverse("emailsettings:delivery", args=[scheduled.pk]))
    body = detail.content.decode()
    assert "Annulla l'invio programmato" in body and "Invia ora" in body
    assert "data-scheduled-for" in body
    assert "Programmata: partirà all&#x27;orario scelto." in body


@pytest.mark.django_db
def test_cancelling_from_the_report_cancels_every_email_of_the_invoice(logged_client, scheduled):
    rows = list(Delivery.objects.filter(invoice=scheduled.invoice).order_by("pk"))
    assert [row.role for row in rows] == [RecipientRole.PATIENT, RecipientRole.EXTRA]
    detail = logged_client.get(reverse("emailsettings:delivery", args=[scheduled.pk]))
    assert "comprende 2 email" in detail.content.decode()
    response = logged_client.post(
        reverse("emailsettings:delivery_cancel", args=[scheduled.pk]), follow=True
    )
    assert {row.status for row in Delivery.objects.filter(invoice=scheduled.invoice)} == {
        DeliveryStatus.CANCELLED
    }
    assert (
        "la fattura 7/2026 non partirà per nessun destinatario (2 email)"
        in response.content.decode()
    )
    # Once cancelled (or gone), it cannot be cancelled again: said in Italian.
    again = logged_client.post(
        reverse("emailsettings:delivery_cancel", args=[scheduled.pk]), follow=True
    )
    assert "Questa azione non è possibile" in again.content.decode()


@pytest.mark.django_db
def test_one_recipient_alone_can_still_be_cancelled(logged_client, scheduled):
    extra = Delivery.objects.get(invoice=scheduled.invoice, role=RecipientRole.EXTRA)
    response = logged_client.post(
        reverse("emailsettings:delivery_cancel", args=[extra.pk]), {"solo": "questo"}, follow=True
    )
    assert "annullato per questo destinatario" in response.content.decode()
    extra.refresh_from_db()
    scheduled.refresh_from_db()
    assert (extra.status, scheduled.status) == (DeliveryStatus.CANCELLED, DeliveryStatus.SCHEDULED)


@pytest.mark.django_db
def test_send_now_from_the_report_sends_every_email_of_the_invoice(logged_client, scheduled):
    extra = Delivery.objects.get(invoice=scheduled.invoice, role=RecipientRole.EXTRA)
    response = logged_client.post(
        reverse("emailsettings:delivery_send_now", args=[extra.pk]), follow=True
    )
    assert "parte subito (2 email)" in response.content.decode()
    rows = Delivery.objects.filter(invoice=scheduled.invoice)
    assert {(row.status, row.scheduled_for) for row in rows} == {(DeliveryStatus.QUEUED, None)}


@pytest.mark.parametrize(
    "name", ["emailsettings:delivery_cancel", "emailsettings:delivery_send_now"]
)
@pytest.mark.django_db
def test_another_practitioner_cannot_touch_a_scheduled_row(
    client, other_practitioner, scheduled, name
):
    client.force_login(other_practitioner)
    assert client.post(reverse(name, args=[scheduled.pk])).status_code == 404
    assert client.get(reverse(name, args=[scheduled.pk])).status_code in (404, 405)
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(scheduled.practitioner)
    assert csrf_client.post(reverse(name, args=[scheduled.pk])).status_code == 403
    scheduled.refresh_from_db()
    assert scheduled.status == DeliveryStatus.SCHEDULED


@pytest.mark.django_db
def test_the_timeline_is_shown_in_english_for_an_english_reader(logged_client, invoice, settings):
    delivery = queue_invoice_email(invoice)
    logged_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    body = logged_client.get(reverse("emailsettings:delivery", args=[delivery.pk])).content.decode()
    assert '<html lang="en">' in body
    assert "Queued." in body and "Messa in coda." not in body


def _next_change(month: int) -> datetime.date:
    """The next last Sunday of ``month`` (Europe's clock changes) at least two days ahead."""
    today = timezone.localdate()
    for year in (today.year, today.year + 1):
        last = datetime.date(year, month + 1, 1) - datetime.timedelta(days=1)
        sunday = last - datetime.timedelta(days=(last.weekday() - 6) % 7)
        if sunday > today + datetime.timedelta(days=2):
            return sunday
    raise AssertionError("no clock change within a year")


@pytest.mark.django_db
def test_the_hour_the_clocks_repeat_can_be_scheduled_choosing_which(
    logged_client, practitioner, invoice
):
    day = _next_change(10)
    typed = f"{day.isoformat()}T02:30"
    data = {"fattura": [str(invoice.pk)], "quando": "programma", "invia_il": typed}

    asked = logged_client.post(CONFIRM_URL, data)

    assert asked.status_code == 400
    body = asked.content.decode()
    assert "vengono due volte (si torna all&#x27;ora solare): scegli quale." in body
    assert 'name="ora_ripetuta"' in body and f'value="{typed}"' in body
    assert not Delivery.objects.exists()

    logged_client.post(CONFIRM_URL, {**data, "ora_ripetuta": "seconda"})

    # The second 02:30 is on winter time (UTC+1): 01:30 UTC.
    scheduled = {row.scheduled_for for row in Delivery.objects.all()}
    assert scheduled == {datetime.datetime.combine(day, datetime.time(1, 30), tzinfo=datetime.UTC)}


@pytest.mark.django_db
def test_the_hour_the_clocks_skip_is_refused_with_the_reason(logged_client, invoice):
    day = _next_change(3)
    response = logged_client.post(
        CONFIRM_URL,
        {"fattura": [str(invoice.pk)], "quando": "programma", "invia_il": f"{day}T02:30"},
    )
    assert response.status_code == 400
    assert "non esistono (si passa all&#x27;ora legale)" in response.content.decode()
    assert not Delivery.objects.exists()
