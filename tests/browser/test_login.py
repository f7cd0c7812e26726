import pytest
from django.core.management import call_command

from tests.conftest import login, save_screenshot

pytestmark = pytest.mark.browser


def test_demo_user_logs_in_and_reaches_the_email_settings(page, live_server, transactional_db):
    call_command("seed_demo")
    login(page, live_server, "demo@psicogest.test", "demo")
    page.get_by_role("link", name="Impostazioni email").click()
    page.wait_for_url("**/email/impostazioni/")
    assert page.get_by_role("heading", level=1).inner_text() == "Impostazioni email"
    save_screenshot(page, "foundation-settings-page")


def test_wrong_password_shows_an_italian_error(page, live_server, transactional_db):
    call_command("seed_demo")
    login(page, live_server, "demo@psicogest.test", "sbagliata")
    assert page.get_by_role("alert").inner_text() == "Email o password non corretti."
