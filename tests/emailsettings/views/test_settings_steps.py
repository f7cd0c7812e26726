"""The settings page in steps: each at its own URL, under a checklist of what is set and what
the patient will see (the From line and the mode)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.models import Channel, EmailSettings, SmtpAccount

SETTINGS_URL = reverse("emailsettings:settings")


def step_url(slug: str) -> str:
    return reverse("emailsettings:settings_step", args=[slug])


@pytest.mark.parametrize(
    ("slug", "shown", "not_shown"),
    [
        ("testo", 'id="covermail"', 'id="smtp"'),
        ("invio", 'id="sending-options"', 'id="covermail"'),
        ("casella", 'id="smtp"', 'id="channel"'),
        ("dominio", 'id="sender-domain"', 'id="smtp"'),
    ],
)
@pytest.mark.django_db
def test_each_step_opens_alone_at_its_url(logged_client, slug, shown, not_shown):
    page = logged_client.get(step_url(slug)).content.decode()
    assert shown in page and not_shown not in page
    assert f'data-step-link="{slug}" aria-current="page"' in page
    assert 'id="settings-checklist"' in page


@pytest.mark.django_db
def test_the_whole_page_still_holds_every_step(logged_client):
    page = logged_client.get(SETTINGS_URL).content.decode()
    for anchor in ("covermail", "channel", "sending-options", "smtp", "sender-domain"):
        assert f'id="{anchor}"' in page


@pytest.mark.django_db
def test_an_unknown_step_is_404_and_the_forms_still_post_beside_the_steps(logged_client):
    assert logged_client.get(SETTINGS_URL + "altro/").status_code == 404
    assert logged_client.get(SETTINGS_URL + "smtp/").status_code == 405


@pytest.mark.django_db
def test_the_checklist_says_the_from_line_and_the_mode(logged_client, practitioner):
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "via PsicoGest" in page and "<strong data-mode>Smart Mail</strong>" in page
    assert "non configurata (facoltativa)" in page
    assert "testo predefinito di PsicoGest" in page

    account = SmtpAccount(
        practitioner=practitioner,
        email="studio@example.test",
        sender_name="Studio Rossi",
        preset="custom",
        host="smtp.example.test",
        port=587,
        security="starttls",
        username="studio@example.test",
    )
    account.set_password("x")
    account.save()
    EmailSettings.objects.create(
        practitioner=practitioner, channel=Channel.SMTP, subject_template="Fattura"
    )
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "Studio Rossi" in page and "studio@example.test&gt;</strong>" in page
    assert "<strong data-mode>La tua casella</strong>" in page
    assert "studio@example.test — non verificata" in page
    assert "testo personalizzato" in page


@pytest.mark.django_db
def test_in_english_the_dns_name_is_a_name_and_the_report_has_one_name(client, settings):
    from tests.factories import PractitionerFactory

    client.force_login(PractitionerFactory(email="maria@studiorossi.it"))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get(step_url("dominio")).content.decode()
    assert '<th scope="col">Name</th>' in page and "First name" not in page
    assert "Sent-email report" in page and "delivery log" not in page
