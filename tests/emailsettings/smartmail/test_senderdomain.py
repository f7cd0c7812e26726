"""Smart Mail's own-address From: the SPF/DKIM/DMARC check (a fake resolver stands in for
public DNS), the identity chosen at queue time, and the "Verifica dominio" section."""

from __future__ import annotations

import re

import dns.exception
import dns.resolver
import pytest
from django.test import Client
from django.urls import reverse

from emailsettings.covermail.message import build_message
from emailsettings.guidance.senderdomain import record_advice
from emailsettings.mailbox import autodetect
from emailsettings.models import SenderDomain
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.smartmail.senderdomain import (
    check_sender_domain,
    sender_domain_verified,
    verify_sender_domain,
)
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory
from tests.support.fakedns import FakeResolver

SETTINGS_URL = reverse("emailsettings:settings")
VERIFY_URL = reverse("emailsettings:sender_domain_verify")
DOMAIN = "studiorossi.it"
GOOD_SPF = "v=spf1 include:spf.psicogest.test ~all"


def dns_zone(
    *,
    dkim: str | None = "dkim.psicogest.test.",
    spf: str | None = GOOD_SPF,
    dmarc: str | None = "v=DMARC1; p=quarantine; rua=mailto:dmarc@studiorossi.it",
    domain: str = DOMAIN,
) -> FakeResolver:
    records: dict[tuple[str, str], list[str]] = {}
    if dkim:
        records[(f"psicogest._domainkey.{domain}", "CNAME")] = [dkim]
    if spf:
        records[(domain, "TXT")] = [f'"{spf}"', '"google-site-verification=abc"']
    if dmarc:
        records[(f"_dmarc.{domain}", "TXT")] = [f'"{dmarc}"']
    return FakeResolver(records)


@pytest.fixture
def use_resolver(monkeypatch):
    """Route the views' look-ups (the default resolver) to a fake."""

    def install(resolver: FakeResolver) -> FakeResolver:
        monkeypatch.setattr(autodetect, "_default_resolver", lambda: resolver)
        return resolver

    return install


@pytest.fixture
def own_domain_practitioner(db):
    return PractitionerFactory(email=f"maria@{DOMAIN}", first_name="Maria", last_name="Rossi")


def queue_one(practitioner):
    patient = PatientFactory(practitioner=practitioner, email="giulia@example.test")
    return queue_invoice_email(InvoiceFactory(patient=patient, number="3/2026"))


# --- the DNS check ---------------------------------------------------------------------------


def test_all_records_in_place_verify_the_domain():
    resolver = dns_zone()
    check = check_sender_domain(domain="StudioRossi.IT.", resolver=resolver)
    assert check.verified
    assert (check.dkim.state, check.spf.state, check.dmarc.state) == ("ok", "ok", "ok")
    assert check.dmarc.policy == "quarantine"
    assert check.dkim.found == ("dkim.psicogest.test",)
    assert all(lifetime == autodetect.DNS_TIMEOUT for _q, _t, lifetime in resolver.queries)


def test_spf_is_advised_but_not_required():
    check = check_sender_domain(domain=DOMAIN, resolver=dns_zone(spf=None))
    assert check.spf.state == "missing" and check.verified
    assert "include:spf.psicogest.test" in record_advice(check.spf, DOMAIN)

    check = check_sender_domain(domain=DOMAIN, resolver=dns_zone(spf="v=spf1 mx -all"))
    assert check.spf.state == "wrong" and check.verified
    assert "spf.psicogest.test" in record_advice(check.spf, DOMAIN)


def test_two_spf_records_are_wrong():
    resolver = dns_zone()
    resolver.records[(DOMAIN, "TXT")] = [f'"{GOOD_SPF}"', '"v=spf1 mx -all"']
    assert check_sender_domain(domain=DOMAIN, resolver=resolver).spf.state == "wrong"


def test_spf_split_into_several_strings_is_read_whole():
    resolver = dns_zone(spf=None)
    resolver.records[(DOMAIN, "TXT")] = ['"v=spf1 include:spf.psi" "cogest.test ~all"']
    assert check_sender_domain(domain=DOMAIN, resolver=resolver).spf.state == "ok"


@pytest.mark.parametrize(
    ("dkim", "state"),
    [
        (None, "missing"),
        ("dkim.altroservizio.example.", "wrong"),
        ("dkim.psicogest.test.evil.example.", "wrong"),
    ],
)
def test_missing_or_wrong_dkim_is_not_verified(dkim, state):
    check = check_sender_domain(domain=DOMAIN, resolver=dns_zone(dkim=dkim))
    assert check.dkim.state == state
    assert not check.verified
    assert "psicogest._domainkey.studiorossi.it" in record_advice(check.dkim, DOMAIN)


@pytest.mark.parametrize(
    "error",
    [dns.exception.Timeout(), dns.resolver.NoNameservers(), OSError("network unreachable")],
)
def test_a_dns_error_or_timeout_is_never_verified(error):
    check = check_sender_domain(domain=DOMAIN, resolver=FakeResolver(error=error))
    assert {record.state for record in check.records} == {"error"}
    assert not check.verified
    assert "errore DNS" in record_advice(check.dkim, DOMAIN)


def test_an_error_on_another_record_also_blocks_verification():
    class DmarcTimesOut(FakeResolver):
        def resolve(self, qname, rdtype, *, lifetime):
            if qname.startswith("_dmarc."):
                raise dns.exception.Timeout()
            return super().resolve(qname, rdtype, lifetime=lifetime)

    resolver = DmarcTimesOut(dns_zone().records)
    check = check_sender_domain(domain=DOMAIN, resolver=resolver)
    assert check.dkim.state == "ok" and check.dmarc.state == "error"
    assert not check.verified


@pytest.mark.parametrize(
    ("record", "state", "policy", "advice_part"),
    [
        ("v=DMARC1; p=reject", "ok", "reject", "«reject»"),
        ("v=DMARC1; p=quarantine; pct=100", "ok", "quarantine", "«quarantine»"),
        ("v=DMARC1; p=none; rua=mailto:x@studiorossi.it", "ok", "none", "solo monitoraggio"),
        ("v=DMARC1; rua=mailto:x@studiorossi.it", "wrong", "", "non è valido"),
        ("v=DMARC1; p=blocca", "wrong", "", "non è valido"),
        (None, "missing", "", "v=DMARC1; p=none"),
    ],
)
def test_dmarc_states_are_mapped_to_advice(record, state, policy, advice_part):
    check = check_sender_domain(domain=DOMAIN, resolver=dns_zone(dmarc=record))
    assert (check.dmarc.state, check.dmarc.policy) == (state, policy)
    assert advice_part in record_advice(check.dmarc, DOMAIN)
    assert check.verified  # DMARC informs; the aligned DKIM signature is what counts


@pytest.mark.parametrize(
    "domain",
    ["gmail.com", "libero.it", "outlook.com", "yahoo.it", "icloud.com", "x.onmicrosoft.com"],
)
def test_free_mail_domains_are_never_verified_nor_looked_up(domain):
    resolver = dns_zone(domain=domain)
    check = check_sender_domain(domain=domain, resolver=resolver)
    assert check.free_mail and not check.verified
    assert resolver.queries == []


def test_settings_change_the_expected_records(settings):
    settings.EMAILSETTINGS_PLATFORM_DKIM_TARGET = "dkim.esp.example"
    settings.EMAILSETTINGS_PLATFORM_SPF_INCLUDE = "spf.esp.example"
    resolver = dns_zone(dkim="dkim.esp.example.", spf="v=spf1 include:spf.esp.example -all")
    check = check_sender_domain(domain=DOMAIN, resolver=resolver)
    assert check.verified and check.spf.state == "ok"
    assert not check_sender_domain(domain=DOMAIN, resolver=dns_zone()).verified


# --- the identity at queue time ---------------------------------------------------------------


@pytest.mark.django_db
def test_verified_domain_sends_from_the_practitioners_own_address(own_domain_practitioner):
    verify_sender_domain(practitioner=own_domain_practitioner, resolver=dns_zone())

    delivery = queue_one(own_domain_practitioner)

    assert delivery.from_header == '"Dott.ssa Maria Rossi" <maria@studiorossi.it>'
    assert "via PsicoGest" not in delivery.from_header
    message = build_message(delivery, pdf=b"%PDF-1.4").message()
    assert message["From"] == '"Dott.ssa Maria Rossi" <maria@studiorossi.it>'
    assert message["Sender"] is None
    assert message["Reply-To"] is None


@pytest.mark.parametrize(
    "resolver",
    [
        FakeResolver(),  # NXDOMAIN everywhere
        FakeResolver(error=dns.exception.Timeout()),
        dns_zone(dkim="dkim.altroservizio.example."),
        dns_zone(dkim=None),
    ],
    ids=["nxdomain", "timeout", "wrong-cname", "no-dkim"],
)
@pytest.mark.django_db
def test_unverified_domain_keeps_the_rewrite(own_domain_practitioner, resolver):
    row = verify_sender_domain(practitioner=own_domain_practitioner, resolver=resolver)
    assert row.verified_at is None

    delivery = queue_one(own_domain_practitioner)

    assert delivery.from_header == (
        '"Dott.ssa Maria Rossi via PsicoGest" <fatture@mail.psicogest.test>'
    )
    assert delivery.reply_to == '"Dott.ssa Maria Rossi" <maria@studiorossi.it>'
    assert build_message(delivery, pdf=b"%PDF-1.4").message()["Sender"] is None


@pytest.mark.django_db
def test_a_failing_recheck_goes_back_to_the_rewrite(own_domain_practitioner):
    verify_sender_domain(practitioner=own_domain_practitioner, resolver=dns_zone())
    assert sender_domain_verified(practitioner=own_domain_practitioner)

    verify_sender_domain(
        practitioner=own_domain_practitioner, resolver=FakeResolver(error=dns.exception.Timeout())
    )

    assert not sender_domain_verified(practitioner=own_domain_practitioner)
    assert "via PsicoGest" in queue_one(own_domain_practitioner).from_header


@pytest.mark.django_db
def test_a_changed_address_needs_its_own_verification(own_domain_practitioner):
    verify_sender_domain(practitioner=own_domain_practitioner, resolver=dns_zone())
    own_domain_practitioner.email = "maria@nuovostudio.it"
    own_domain_practitioner.save()

    assert not sender_domain_verified(practitioner=own_domain_practitioner)
    assert "via PsicoGest" in queue_one(own_domain_practitioner).from_header


@pytest.mark.django_db
def test_free_mail_address_always_rewrites(db):
    practitioner = PractitionerFactory(email="maria.rossi@gmail.com")
    # Even a row forged as verified does not put a gmail.com address in From.
    SenderDomain.objects.create(
        practitioner=practitioner,
        domain="gmail.com",
        verified_at="2026-01-01T00:00:00Z",
        last_result={"verified": True},
    )
    assert not sender_domain_verified(practitioner=practitioner)
    assert queue_one(practitioner).from_header.endswith("<fatture@mail.psicogest.test>")


# --- the settings section ---------------------------------------------------------------------


@pytest.mark.django_db
def test_page_shows_the_records_to_add_and_the_rewrite(client, own_domain_practitioner):
    client.force_login(own_domain_practitioner)
    page = client.get(SETTINGS_URL).content.decode()
    assert "psicogest._domainkey.studiorossi.it" in page
    assert "dkim.psicogest.test." in page
    assert "v=spf1 include:spf.psicogest.test ~all" in page
    assert "Verifica dominio" in page
    assert "Dominio mai verificato." in page
    assert "I pazienti vedranno:" in page
    assert (
        "&quot;Dott.ssa Maria Rossi via PsicoGest&quot; &lt;fatture@mail.psicogest.test&gt;" in page
    )


@pytest.mark.django_db
def test_verify_button_verifies_and_the_page_shows_the_state(
    client, own_domain_practitioner, use_resolver
):
    use_resolver(dns_zone(spf=None, dmarc="v=DMARC1; p=none"))
    client.force_login(own_domain_practitioner)

    response = client.post(VERIFY_URL, follow=True)

    page = response.content.decode()
    assert response.redirect_chain[-1][0].endswith("#sender-domain")
    assert "Dominio verificato" in page
    assert "I pazienti vedranno:" in page
    assert "&quot;Dott.ssa Maria Rossi&quot; &lt;maria@studiorossi.it&gt;" in page
    assert 'data-state="ok"' in page and 'data-state="missing"' in page
    assert "solo monitoraggio" in page  # DMARC p=none advice
    assert "Nessun record SPF" in page
    row = SenderDomain.objects.get(practitioner=own_domain_practitioner)
    assert row.domain == DOMAIN and row.verified_at is not None


@pytest.mark.django_db
def test_verify_with_a_dns_timeout_shows_the_error_and_keeps_the_rewrite(
    client, own_domain_practitioner, use_resolver
):
    use_resolver(FakeResolver(error=dns.exception.Timeout()))
    client.force_login(own_domain_practitioner)

    page = client.post(VERIFY_URL, follow=True).content.decode()

    # Said apart from a missing record.
    assert "Non è stato possibile leggere il DNS del dominio (errore o tempo scaduto)" in page
    assert "Dominio non ancora verificato" not in page
    assert "controllo non riuscito: errore DNS o tempo scaduto" in page
    assert 'data-state="error"' in page and 'data-state="missing"' not in page
    assert "via PsicoGest&quot; &lt;fatture@mail.psicogest.test&gt;" in page


@pytest.mark.django_db
def test_free_mail_page_explains_why_and_offers_no_check(client, use_resolver):
    resolver = use_resolver(FakeResolver())
    client.force_login(PractitionerFactory(email="maria.rossi@libero.it"))

    page = client.get(SETTINGS_URL).content.decode()
    assert "libero.it è un dominio di un provider di posta" in page
    assert "politica DMARC" in page
    assert 'id="sender-domain-verify"' not in page

    client.post(VERIFY_URL)
    assert resolver.queries == []
    assert not SenderDomain.objects.exists()


@pytest.mark.django_db
def test_verify_requires_login_and_post(client, use_resolver, settings):
    resolver = use_resolver(dns_zone())
    response = client.post(VERIFY_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse(settings.LOGIN_URL))
    assert resolver.queries == []

    client.force_login(PractitionerFactory(email=f"maria@{DOMAIN}"))
    assert client.get(VERIFY_URL).status_code == 405


@pytest.mark.django_db
def test_verify_is_csrf_protected(own_domain_practitioner, use_resolver):
    resolver = use_resolver(dns_zone())
    client = Client(enforce_csrf_checks=True)
    client.force_login(own_domain_practitioner)

    assert client.post(VERIFY_URL).status_code == 403
    assert resolver.queries == []
    assert not SenderDomain.objects.exists()


@pytest.mark.django_db
def test_verify_touches_only_the_practitioners_own_domain(
    client, own_domain_practitioner, use_resolver
):
    other = PractitionerFactory(email="luca@neripsicologi.it", first_name="Luca")
    verify_sender_domain(practitioner=other, resolver=dns_zone(domain="neripsicologi.it"))
    resolver = use_resolver(dns_zone())
    client.force_login(own_domain_practitioner)

    page = client.post(VERIFY_URL, follow=True).content.decode()

    assert {name for name, _type, _lifetime in resolver.queries} == {
        "studiorossi.it",
        "psicogest._domainkey.studiorossi.it",
        "_dmarc.studiorossi.it",
    }
    assert "neripsicologi" not in page
    assert SenderDomain.objects.get(practitioner=other).domain == "neripsicologi.it"
    assert SenderDomain.objects.get(practitioner=own_domain_practitioner).domain == DOMAIN


@pytest.mark.django_db
def test_verify_is_rate_limited(client, use_resolver, db):
    resolver = use_resolver(dns_zone(domain="limitato.it"))
    client.force_login(PractitionerFactory(email="maria@limitato.it"))
    for _ in range(10):
        client.post(VERIFY_URL)
    queries = len(resolver.queries)

    page = client.post(VERIFY_URL, follow=True).content.decode()

    assert re.search(r"riprova tra (10 minuti|9 minuti), alle \d\d:\d\d", page)
    assert len(resolver.queries) == queries


@pytest.mark.django_db
def test_the_daily_recheck_stops_the_own_address_once_the_dkim_record_is_removed(
    own_domain_practitioner, use_resolver
):
    """The beat task re-verifies verified domains with the default resolver."""
    from emailsettings.tasks import recheck_sender_domains_task

    verify_sender_domain(practitioner=own_domain_practitioner, resolver=dns_zone())
    never_verified = PractitionerFactory(email="luca@altrostudio.it")
    zone = use_resolver(dns_zone(dkim=None))

    recheck_sender_domains_task()

    assert not sender_domain_verified(practitioner=own_domain_practitioner)
    assert "via PsicoGest" in queue_one(own_domain_practitioner).from_header
    # Only verified domains are looked up again.
    assert all("altrostudio" not in qname for qname, _type, _lifetime in zone.queries)
    assert not sender_domain_verified(practitioner=never_verified)
