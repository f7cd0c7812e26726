"""The payment reminders' pages: the rules editor (validation like the cover mail, defaults
stored as "the default", preview with the patient's language), «In arrivo» with «Salta» and
«Sospendi», and the scoping to the logged-in practitioner."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
import time_machine
from django.urls import reverse

from emailsettings.covermail.reminders import default_texts
from emailsettings.models import ReminderLevel, ReminderRules, ReminderSkip
from emailsettings.outbox import reminders
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

ROME = zoneinfo.ZoneInfo("Europe/Rome")
RULES = reverse("emailsettings:reminders")
UPCOMING = reverse("emailsettings:reminders_upcoming")
# Monday 7 December 2026, 08:00 in Rome: the invoice below gets level 1 on Wednesday 9/12.
MONDAY = datetime.datetime(2026, 12, 7, 8, 0, tzinfo=ROME)


def rules_post(**overrides):
    data = {"enabled": "on", "minimum_amount": "0", "attach_invoice": "on"}
    for level, days in ((1, 7), (2, 21), (3, 45)):
        data.update(
            {
                f"l{level}-enabled": "on" if level < 3 else "",
                f"l{level}-days": str(days),
                f"l{level}-subject_template": f"Promemoria {level} ${{numero_fattura}}",
                f"l{level}-body_template": "${saluto} ${nominativo}, restano ${importo_da_pagare}.",
                f"l{level}-subject_template_en": "",
                f"l{level}-body_template_en": "",
            }
        )
    data.update(overrides)
    return {key: value for key, value in data.items() if value != ""}


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(practitioner=practitioner, first_name="Anna", last_name="Russo")
    return InvoiceFactory(patient=patient, number="5/2026", due_date=datetime.date(2026, 12, 2))


def test_rules_page_starts_off_with_the_default_texts_and_a_preview(logged_client, invoice):
    content = logged_client.get(RULES).content.decode()
    assert "Regole dei solleciti" in content
    assert 'name="enabled"' in content and 'name="enabled" checked' not in content
    assert "Promemoria: fattura n. ${numero_fattura}" in content
    assert "${giorni_ritardo}" in content and "${importo_da_pagare}" in content
    assert "Promemoria: fattura n. 5/2026" in content  # the preview
    assert "Anna Russo riceve la versione in italiano." in content
    assert "js/reminders.js" in content and "<script>" not in content


def test_saving_turns_reminders_on_and_a_default_text_is_stored_as_the_default(
    logged_client, practitioner, invoice
):
    subject, body = ("Promemoria: fattura n. ${numero_fattura} del ${data_fattura}", None)
    data = rules_post(**{"l1-subject_template": subject})
    response = logged_client.post(RULES, data)
    assert response.status_code == 302
    rules = ReminderRules.objects.get(practitioner=practitioner)
    assert rules.enabled
    level1 = rules.levels.get(level=1)
    assert level1.subject_template == "" and level1.body_template.startswith("${saluto}")
    assert not rules.levels.get(level=3).enabled
    assert body is None


def test_an_unknown_keyword_is_refused_with_a_suggestion_and_nothing_is_saved(
    logged_client, practitioner
):
    data = rules_post(**{"l2-body_template": "Restano ${importo_da_pagre}."})
    response = logged_client.post(RULES, data)
    assert response.status_code == 400
    content = response.content.decode()
    assert "importo_da_pagre" in content and "importo_da_pagare" in content
    assert not ReminderRules.objects.get(practitioner=practitioner).enabled


def test_preview_shows_the_english_version_for_an_english_patient(logged_client, practitioner):
    patient = PatientFactory(practitioner=practitioner, first_name="John", language="en")
    english = InvoiceFactory(patient=patient, number="6/2026")
    data = rules_post(
        **{
            "l1-subject_template_en": "Reminder: invoice ${numero_fattura}",
            "l1-body_template_en": "Dear ${nome}, ${importo_da_pagare} is still due.",
            "invoice": str(english.pk),
            "level": "1",
        }
    )
    result = logged_client.post(reverse("emailsettings:reminders_preview"), data).json()
    assert result["subject"] == "Reminder: invoice 6/2026"
    assert result["text"].startswith("Dear John, € 1.234,56")
    assert "versione in inglese" in result["version"]
    # Level 2 has no English text: the Italian one goes.
    data.update({"level": "2"})
    result = logged_client.post(reverse("emailsettings:reminders_preview"), data).json()
    assert result["language"] == "it" and "versione in italiano" in result["version"]


def test_upcoming_lists_the_next_reminders_with_skip_and_pause(
    logged_client, practitioner, invoice
):
    rules = reminders.rules_for(practitioner)
    rules.enabled = True
    rules.save()
    with time_machine.travel(MONDAY, tick=False):
        content = logged_client.get(UPCOMING).content.decode()
        assert f'data-upcoming="{invoice.pk}"' in content
        assert "Sollecito 1" in content and "Anna Russo" in content
        assert "mercoledì 9 dicembre 2026" in content
        skip_url = reverse("emailsettings:reminders_skip", args=[invoice.pk])
        assert logged_client.post(skip_url, {"level": "1"}).status_code == 302
        assert ReminderSkip.objects.filter(invoice=invoice, level=1).exists()
        content = logged_client.get(UPCOMING).content.decode()
        # Level 2 is due on 23/12, beyond the 14 days.
        assert f'data-upcoming="{invoice.pk}"' not in content
        assert "Nessun sollecito in arrivo" in content
        pause_url = reverse("emailsettings:reminders_pause", args=[invoice.pk])
        logged_client.post(
            pause_url, {f"p{invoice.pk}-until": "2027-01-31", f"p{invoice.pk}-reason": "Dilazione"}
        )
        invoice.refresh_from_db()
        assert invoice.reminders_paused_until == datetime.date(2027, 1, 31)
        content = logged_client.get(UPCOMING).content.decode()
        assert f'data-upcoming="{invoice.pk}"' not in content
        assert "sospesi fino al 31/01/2027" in content and "Dilazione" in content
        logged_client.post(pause_url, {"resume": "1"})
        invoice.refresh_from_db()
        assert invoice.reminders_paused_until is None


def test_a_pause_in_the_past_is_refused(logged_client, invoice):
    with time_machine.travel(MONDAY, tick=False):
        url = reverse("emailsettings:reminders_pause", args=[invoice.pk])
        logged_client.post(url, {f"p{invoice.pk}-until": "2026-12-01"})
    invoice.refresh_from_db()
    assert invoice.reminders_paused_until is None


def test_upcoming_says_when_reminders_are_off(logged_client, invoice):
    content = logged_client.get(UPCOMING).content.decode()
    assert "I solleciti sono spenti" in content


def test_another_practitioners_invoice_cannot_be_skipped_paused_or_previewed(
    logged_client, other_practitioner
):
    foreign = InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    skip_url = reverse("emailsettings:reminders_skip", args=[foreign.pk])
    pause_url = reverse("emailsettings:reminders_pause", args=[foreign.pk])
    assert logged_client.post(skip_url, {"level": "1"}).status_code == 404
    assert logged_client.post(pause_url, {"resume": "1"}).status_code == 404
    data = rules_post(invoice=str(foreign.pk), level="1")
    assert logged_client.post(reverse("emailsettings:reminders_preview"), data).status_code == 404
    assert logged_client.get(RULES + f"?fattura={foreign.pk}").status_code == 404
    assert not ReminderSkip.objects.exists()
    assert ReminderLevel.objects.filter(rules__practitioner=other_practitioner).count() == 0


def test_the_patient_card_has_no_reminders_and_language(logged_client, invoice):
    url = reverse("patient_edit", args=[invoice.patient_id])
    content = logged_client.get(url).content.decode()
    assert 'name="no_reminders"' in content and 'name="language"' in content


@pytest.mark.parametrize(
    ("typed", "stored", "error"),
    [
        ("it60 x054 2811 1010 0000 0123 456", "IT60X0542811101000000123456", ""),
        ("", "", ""),
        ("IT60X0542811101000000123457", "", "controlla le cifre"),
        ("non è un iban", "", "Scrivi un IBAN valido"),
    ],
)
def test_the_iban_is_kept_on_the_profile_and_checked(
    logged_client, practitioner, typed, stored, error
):
    response = logged_client.post(RULES, rules_post(iban=typed) if typed else rules_post())
    practitioner.refresh_from_db()
    assert practitioner.iban == stored
    if error:
        assert response.status_code == 400 and error in response.content.decode()
    else:
        assert response.status_code == 302


def test_the_default_text_stays_the_default_when_the_iban_is_added(logged_client, practitioner):
    subject, body = default_texts(1, iban=False)
    data = rules_post(
        iban="IT60X0542811101000000123456",
        **{"l1-subject_template": subject, "l1-body_template": body},
    )
    assert logged_client.post(RULES, data).status_code == 302
    level = ReminderLevel.objects.get(rules__practitioner=practitioner, level=1)
    assert level.subject_template == "" and level.body_template == ""
