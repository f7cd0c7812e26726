"""«Il tuo dominio» in Chromium: each DNS record has a copy button; a DNS error or time-out is
said apart from a missing record; an open page checks again by itself a few minutes later
(the page's clock is driven by the test, nothing sleeps)."""

from __future__ import annotations

import dns.exception
import pytest
from playwright.sync_api import expect

from emailsettings.mailbox import autodetect
from emailsettings.models import SenderDomain
from tests.conftest import login, save_screenshot
from tests.factories import PractitionerFactory
from tests.support.fakedns import FakeResolver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOMAIN = "studiorossi.it"


def good_zone() -> FakeResolver:
    return FakeResolver(
        {
            (f"psicogest._domainkey.{DOMAIN}", "CNAME"): ["dkim.psicogest.test."],
            (DOMAIN, "TXT"): ['"v=spf1 include:spf.psicogest.test ~all"'],
            (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=quarantine"'],
        }
    )


def test_copy_a_record_tell_a_dns_error_and_check_again_by_itself(page, live_server, monkeypatch):
    resolver = {"now": FakeResolver(error=dns.exception.Timeout())}
    monkeypatch.setattr(autodetect, "_default_resolver", lambda: resolver["now"])
    practitioner = PractitionerFactory(email=f"maria@{DOMAIN}")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.clock.install()
    login(page, live_server, practitioner.email, "password-di-prova")
    page.goto(f"{live_server.url}/email/impostazioni/dominio/")
    card = page.locator("#sender-domain")

    # English or Italian, the record's name column is a DNS name, not a person's.
    expect(card.locator("thead")).to_contain_text("Nome")
    value = card.get_by_role("button", name="Copia il valore del record CNAME")
    value.click()
    expect(value).to_have_text("Copiato")
    assert page.evaluate("navigator.clipboard.readText()") == "dkim.psicogest.test."

    # The DNS times out: said as such, not as a missing record.
    card.get_by_role("button", name="Verifica dominio").click()
    expect(page.locator("#sender-domain-messages")).to_contain_text(
        "Non è stato possibile leggere il DNS del dominio (errore o tempo scaduto)"
    )
    expect(card.locator("[data-dns-error]")).to_have_text(
        "controllo non riuscito: errore DNS o tempo scaduto"
    )
    expect(card.locator('[data-state="error"]').first).to_have_text("errore DNS o tempo scaduto")
    expect(card.locator('[data-state="missing"]')).to_have_count(0)
    save_screenshot(page, "sender-domain-dns-error")

    # The records are now in place: a few minutes later the page checks again by itself.
    resolver["now"] = good_zone()
    page.clock.fast_forward("02:00")
    page.wait_for_timeout(500)
    expect(card.locator("[data-dns-error]")).to_be_visible()
    page.clock.fast_forward("01:05")
    expect(card.locator("#sender-domain-status .badge")).to_have_text("verificato")
    assert SenderDomain.objects.get(practitioner=practitioner).verified_at is not None
    save_screenshot(page, "sender-domain-rechecked")
