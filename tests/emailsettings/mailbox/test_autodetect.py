"""Auto-detection from the address: domain table, then MX (fake resolver), then a guess."""

from __future__ import annotations

import dns.exception
import dns.resolver
import pytest

from emailsettings.mailbox import autodetect
from emailsettings.mailbox.autodetect import detect_provider
from tests.support.fakedns import FakeResolver, mx_zone


@pytest.fixture(autouse=True)
def _empty_cache():
    autodetect.clear_cache()
    yield
    autodetect.clear_cache()


def test_known_domain_needs_no_dns_lookup():
    resolver = FakeResolver()
    detection = detect_provider("Mario.Rossi@Libero.IT", resolver=resolver)
    assert detection.preset_key == "libero"
    assert (detection.host, detection.port, detection.security) == ("smtp.libero.it", 465, "ssl")
    assert detection.source == "domain" and not detection.guessed
    assert resolver.queries == []


@pytest.mark.parametrize(
    ("mx", "key", "host"),
    [
        (
            [(10, "aspmx.l.google.com."), (20, "alt1.aspmx.l.google.com.")],
            "google_workspace",
            "smtp.gmail.com",
        ),
        (
            [(0, "studiorossi-it.mail.protection.outlook.com.")],
            "microsoft365",
            "smtp.office365.com",
        ),
        ([(10, "mx.aruba.it."), (20, "mxbackup.aruba.it.")], "aruba", "smtps.aruba.it"),
        ([(1, "mx1.mail.ovh.net.")], "ovh", "ssl0.ovh.net"),
    ],
)
def test_own_domain_is_detected_from_its_mx(mx, key, host):
    resolver = mx_zone({"studiorossi.it": mx})
    detection = detect_provider("info@studiorossi.it", resolver=resolver)
    assert detection.preset_key == key
    assert detection.host == host
    assert detection.source == "mx" and not detection.guessed
    assert resolver.queries == [("studiorossi.it", "MX", autodetect.DNS_TIMEOUT)]
    assert autodetect.DNS_TIMEOUT <= 3


def test_mx_records_are_tried_by_preference():
    resolver = mx_zone({"studio.it": [(20, "backup.mail.example.net."), (5, "mx.aruba.it.")]})
    assert detect_provider("a@studio.it", resolver=resolver).preset_key == "aruba"


@pytest.mark.parametrize(
    "error",
    [dns.exception.Timeout(), dns.resolver.NXDOMAIN(), dns.resolver.NoNameservers(), OSError()],
    ids=["timeout", "nxdomain", "no-nameservers", "network"],
)
def test_lookup_failure_falls_back_to_a_marked_guess(error):
    detection = detect_provider("dott.bianchi@studiobianchi.it", resolver=FakeResolver(error=error))
    assert detection.preset_key == "custom"
    assert (detection.host, detection.port, detection.security) == (
        "smtp.studiobianchi.it",
        587,
        "starttls",
    )
    assert detection.guessed and detection.source == "guess"


def test_unknown_mx_is_a_guess_too():
    resolver = mx_zone({"example.org": [(10, "mail.example.org.")]})
    detection = detect_provider("me@example.org", resolver=resolver)
    assert detection.preset_key == "custom" and detection.guessed
    assert detection.host == "smtp.example.org"


def test_lookups_are_cached():
    resolver = mx_zone({"studiorossi.it": [(10, "mx.aruba.it.")]})
    detect_provider("a@studiorossi.it", resolver=resolver)
    detect_provider("b@studiorossi.it", resolver=resolver)
    assert len(resolver.queries) == 1


def test_failures_are_cached_as_well():
    resolver = FakeResolver(error=dns.exception.Timeout())
    detect_provider("a@slow.example", resolver=resolver)
    detect_provider("b@slow.example", resolver=resolver)
    assert len(resolver.queries) == 1
