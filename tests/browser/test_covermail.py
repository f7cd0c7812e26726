"""The cover-mail editor in Chromium: keyword panel, validation on save, live preview."""

from __future__ import annotations

import datetime
import re

import pytest
from playwright.sync_api import expect

from emailsettings.covermail.rendering import DEFAULT_SUBJECT, cover_mail_templates_for
from tests.conftest import ARTIFACTS, login, save_screenshot
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(live_server):
    practitioner = PractitionerFactory(email="maria@example.test", last_name="Rossi")
    ferrari = PatientFactory(
        practitioner=practitioner, salutation="Egregio", first_name="Paolo", last_name="Ferrari"
    )
    esposito = PatientFactory(
        practitioner=practitioner,
        salutation="Spett.le",
        first_name="",
        last_name="",
        company_name="Esposito S.r.l.",
    )
    gallo = PatientFactory(
        practitioner=practitioner, salutation="", first_name="Chiara", last_name="Gallo"
    )
    invoices = {
        "ferrari": InvoiceFactory(
            patient=ferrari, number="1/2026", issue_date=datetime.date(2026, 1, 10)
        ),
        "gallo": InvoiceFactory(
            patient=gallo, number="2/2026", issue_date=datetime.date(2026, 2, 1)
        ),
        "esposito": InvoiceFactory(
            patient=esposito, number="3/2026", issue_date=datetime.date(2026, 3, 5)
        ),
    }
    return practitioner, invoices


@pytest.fixture
def settings_page(page, live_server, demo):
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            csp_errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    login(page, live_server, "maria@example.test", "password-di-prova")
    page.goto(f"{live_server.url}/email/impostazioni/")
    expect(page.locator("#covermail-form")).to_have_attribute("data-preview-state", "ready")
    yield page
    assert csp_errors == []


def save_preview_screenshot(page, name: str) -> None:
    """The whole page, plus the preview section alone: a full-page capture leaves the
    sandboxed HTML iframe blank (Chromium paints it only inside the viewport)."""
    save_screenshot(page, name)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".covermail-preview").screenshot(path=str(ARTIFACTS / f"{name}-section.png"))


def caret(page, selector: str) -> int:
    return page.eval_on_selector(selector, "el => el.selectionStart")


def test_clicking_a_keyword_inserts_it_at_the_caret_of_the_focused_editor(settings_page):
    page = settings_page
    subject = page.locator("#id_subject_template")
    body = page.locator("#id_body_template")

    subject.fill("Fattura del mese")
    page.eval_on_selector("#id_subject_template", "el => el.setSelectionRange(8, 8)")
    page.get_by_role("button", name="${nominativo} Nominativo").click()
    expect(subject).to_have_value("Fattura ${nominativo}del mese")
    assert page.evaluate("document.activeElement.id") == "id_subject_template"
    assert caret(page, "#id_subject_template") == len("Fattura ${nominativo}")

    body.fill("Ciao ,\nsaluti")
    page.eval_on_selector("#id_body_template", "el => el.setSelectionRange(5, 5)")
    page.get_by_role("button", name="${nome} Nome", exact=True).click()
    expect(body).to_have_value("Ciao ${nome},\nsaluti")
    expect(subject).to_have_value("Fattura ${nominativo}del mese")
    assert caret(page, "#id_body_template") == len("Ciao ${nome}")
    save_screenshot(page, "covermail-keyword-inserted")


def test_keywords_work_from_the_keyboard(settings_page):
    page = settings_page
    body = page.locator("#id_body_template")
    body.fill("Totale: ")
    body.press("End")
    # Tab away from the editor to the panel, then use Enter and Space on a keyword.
    page.get_by_role("button", name="${importo} Importo").focus()
    page.keyboard.press("Enter")
    expect(body).to_have_value("Totale: ${importo}")
    page.get_by_role("button", name="${scadenza} Scadenza").focus()
    page.keyboard.press("Space")
    expect(body).to_have_value("Totale: ${importo}${scadenza}")


def tab_to(page, condition: str, *, backwards: bool = False, limit: int = 80) -> None:
    """Press Tab (or Shift+Tab) until the JavaScript ``condition`` holds for the focus."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if page.evaluate(f"(el => Boolean({condition}))(document.activeElement)"):
            return
    raise AssertionError(f"never reached {condition} with the keyboard")


def test_keyboard_only_a_keyword_lands_where_the_user_was_writing(settings_page):
    """Tabbing from the subject to the panel passes through the body: the keyword still goes
    into the subject, at its caret, and the body is untouched."""
    page = settings_page
    subject = page.locator("#id_subject_template")
    body = page.locator("#id_body_template")
    original_body = body.input_value()
    hint = page.locator("#keyword-target")

    tab_to(page, "el.id === 'id_subject_template'")
    page.keyboard.press("End")
    page.keyboard.type(" per ")
    expect(hint).to_have_text("Ora va nell'oggetto.")
    tab_to(page, "el.dataset.keyword === 'nominativo'")
    page.keyboard.press("Enter")
    expect(subject).to_have_value(f"{DEFAULT_SUBJECT} per ${{nominativo}}")
    expect(body).to_have_value(original_body)
    expect(subject).to_be_focused()
    assert caret(page, "#id_subject_template") == len(f"{DEFAULT_SUBJECT} per ${{nominativo}}")

    # Now write in the body, and insert with Space from the panel.
    page.keyboard.press("Tab")
    expect(body).to_be_focused()
    page.keyboard.press("Control+End")
    page.keyboard.type("A presto, ")
    expect(hint).to_have_text("Ora va nel testo.")
    tab_to(page, "el.dataset.keyword === 'professionista'")
    page.keyboard.press("Space")
    expect(body).to_have_value(original_body + "A presto, ${professionista}")
    expect(subject).to_have_value(f"{DEFAULT_SUBJECT} per ${{nominativo}}")

    # Back to the start of the subject (through the body again): the caret there counts.
    tab_to(page, "el.id === 'id_subject_template'", backwards=True)
    page.keyboard.press("Home")
    page.keyboard.type("Nuova ")
    tab_to(page, "el.dataset.keyword === 'studio'")
    page.keyboard.press("Enter")
    expect(subject).to_have_value(f"Nuova ${{studio}}{DEFAULT_SUBJECT} per ${{nominativo}}")
    expect(body).to_have_value(original_body + "A presto, ${professionista}")
    save_screenshot(page, "covermail-keyboard-insertion")


def test_unknown_keyword_is_refused_on_save_with_a_suggestion(settings_page, demo):
    page = settings_page
    practitioner, _invoices = demo
    page.locator("#id_body_template").fill("${salutoo} ${nominativo},\nin allegato la fattura.")
    page.get_by_role("button", name="Salva", exact=True).click()

    errors = page.locator("#id_body_template_error")
    expect(errors).to_contain_text("«${salutoo}» non è una parola chiave valida.")
    expect(errors).to_contain_text("Forse intendevi ${saluto}?")
    expect(errors).to_contain_text("Parole chiave valide: ${saluto}, ${nome}")
    expect(page.locator("#id_body_template")).to_have_value(
        "${salutoo} ${nominativo},\nin allegato la fattura."
    )
    # The editor with the error has the focus and points at its messages.
    expect(page.locator("#id_body_template")).to_be_focused()
    expect(page.locator("#id_body_template")).to_have_attribute(
        "aria-describedby", "id_body_template_error"
    )
    assert cover_mail_templates_for(practitioner)[0] == DEFAULT_SUBJECT
    save_screenshot(page, "covermail-unknown-keyword")

    page.locator("#id_body_template").fill("${saluto} ${nominativo},\nin allegato la fattura.")
    page.get_by_role("button", name="Salva", exact=True).click()
    expect(page.locator(".message-success")).to_contain_text("Mail di accompagnamento salvata.")
    assert cover_mail_templates_for(practitioner)[1] == (
        "${saluto} ${nominativo},\nin allegato la fattura."
    )


def test_preview_follows_the_selected_patient_and_the_text_being_typed(settings_page, demo):
    page = settings_page
    _practitioner, invoices = demo
    text = page.locator("#covermail-preview-text")
    html = page.frame_locator("#covermail-preview-html").locator("body")

    # Default: the most recent invoice, a company.
    expect(page.locator("#covermail-preview-invoice")).to_have_value(str(invoices["esposito"].pk))
    expect(text).to_contain_text("Spett.le Esposito S.r.l.,")
    expect(page.locator("#covermail-preview-subject")).to_have_text(
        "Fattura n. 3/2026 del 05/03/2026"
    )

    page.locator("#covermail-preview-invoice").select_option(str(invoices["ferrari"].pk))
    expect(text).to_contain_text("Egregio Paolo Ferrari,")
    expect(html).to_contain_text("Egregio Paolo Ferrari,")
    expect(page.locator("#covermail-preview-subject")).to_have_text(
        "Fattura n. 1/2026 del 10/01/2026"
    )
    expect(page.locator("#covermail-preview-warnings")).to_be_hidden()
    save_preview_screenshot(page, "covermail-preview-ferrari")

    # Typing updates the preview without saving; markup typed or stored stays text.
    page.locator("#id_body_template").fill("${saluto} <b>${cognome}</b>, a presto")
    expect(text).to_have_text("Egregio <b>Ferrari</b>, a presto")
    expect(html).to_have_text("Egregio <b>Ferrari</b>, a presto")

    # A patient without a salutation: empty text and a warning.
    page.locator("#covermail-preview-invoice").select_option(str(invoices["gallo"].pk))
    expect(text).to_have_text("<b>Gallo</b>, a presto")
    expect(page.locator("#covermail-preview-warnings")).to_contain_text(
        "questo paziente non ha un saluto impostato"
    )

    # An error shows under its editor as soon as it is typed, and nowhere else.
    page.locator("#id_subject_template").fill("Fattura ${numero}")
    subject_errors = page.locator("#id_subject_template_error")
    expect(subject_errors).to_contain_text("Forse intendevi ${numero_fattura}?")
    expect(page.locator("#id_subject_template")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("Forse intendevi ${numero_fattura}?")).to_have_count(1)
    page.locator("#id_subject_template").fill("Fattura ${numero_fattura}")
    expect(subject_errors).to_be_hidden()
    expect(page.locator("#covermail-preview-subject")).to_have_text("Fattura 2/2026")
    save_preview_screenshot(page, "covermail-preview-warning")


def test_restore_default_asks_for_confirmation(settings_page, demo):
    page = settings_page
    practitioner, _invoices = demo
    page.locator("#id_subject_template").fill("Il mio oggetto")
    page.get_by_role("button", name="Salva", exact=True).click()
    expect(page.locator("#id_subject_template")).to_have_value("Il mio oggetto")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Ripristina testo predefinito").click()
    expect(page.locator("#id_subject_template")).to_have_value("Il mio oggetto")
    assert cover_mail_templates_for(practitioner)[0] == "Il mio oggetto"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Ripristina testo predefinito").click()
    expect(page.locator(".message-success")).to_contain_text("Ripristinato il testo predefinito")
    expect(page.locator("#id_subject_template")).to_have_value(DEFAULT_SUBJECT)


def test_keyword_panel_sits_beside_the_editor_and_between_body_and_buttons_when_narrow(
    settings_page,
):
    page = settings_page
    body = page.locator("#id_body_template").bounding_box()
    panel = page.locator(".keyword-panel").bounding_box()
    assert panel["x"] > body["x"] + body["width"] - 1
    save_screenshot(page, "covermail-wide")

    page.set_viewport_size({"width": 420, "height": 900})
    body = page.locator("#id_body_template").bounding_box()
    panel = page.locator(".keyword-panel").bounding_box()
    save_button = page.get_by_role("button", name="Salva", exact=True).bounding_box()
    assert body["y"] + body["height"] <= panel["y"] <= body["y"] + body["height"] + 60
    assert panel["y"] + panel["height"] <= save_button["y"]
    assert panel["height"] < 320, "a compact list of chips, not a 1,000 px column"
    # Still a button named after the keyword, with its description.
    button = page.get_by_role("button", name="${saluto} Saluto")
    expect(button).to_be_visible()
    expect(button).to_have_accessible_description(re.compile("Dalla scheda paziente"))
    save_screenshot(page, "covermail-narrow")
