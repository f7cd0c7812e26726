"""The provider presets are data: every entry must be usable by the form and the detector."""

from __future__ import annotations

import pytest

from emailsettings.mailbox import presets
from emailsettings.mailbox.presets import PRESETS, Preset

REQUIRED_KEYS = {
    "gmail",
    "google_workspace",
    "outlook",
    "microsoft365",
    "yahoo",
    "icloud",
    "libero",
    "virgilio",
    "tiscali",
    "aruba",
    "aruba_pec",
    "legalmail",
    "ovh",
    "register",
    "fastweb",
    "tim",
    "alice",
    "zoho",
    "proton",
    "custom",
}


def test_keys_are_unique_and_the_main_providers_are_there():
    keys = [preset.key for preset in PRESETS]
    assert len(keys) == len(set(keys))
    assert REQUIRED_KEYS <= set(keys)
    assert PRESETS[-1].key == "custom"
    assert str(PRESETS[-1].label) == "Altro provider"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda preset: preset.key)
def test_every_entry_is_valid(preset: Preset):
    assert preset.key and preset.key == preset.key.strip().lower()
    assert str(preset.label)
    assert preset.port in presets.ALLOWED_PORTS
    assert preset.security in presets.SECURITY_VALUES
    # The standard pairings: implicit TLS on 465, STARTTLS on 587.
    assert (preset.port, preset.security) in {(465, "ssl"), (587, "starttls")}
    if preset.key != "custom":
        assert preset.host and "." in preset.host and preset.host == preset.host.lower()
    assert preset.username_rule in (presets.USERNAME_EMAIL, presets.USERNAME_PROVIDER_ID)
    assert preset.rate_limit_per_minute > 0
    assert all(domain == domain.lower() and "@" not in domain for domain in preset.domains)
    assert all(pattern.startswith("*.") for pattern in preset.mx_patterns)
    if not preset.usable:
        assert "Smart Mail" in str(preset.login_notes)


def test_no_domain_belongs_to_two_presets():
    seen: dict[str, str] = {}
    for preset in PRESETS:
        for domain in preset.domains:
            assert domain not in seen, f"{domain} in {seen.get(domain)} and {preset.key}"
            seen[domain] = preset.key


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("gmail", "password per le app"),
        ("yahoo", "password per le app"),
        ("icloud", "password specifica per le app"),
        ("outlook", "Smart Mail"),
        ("microsoft365", "SMTP AUTH"),
        ("aruba_pec", "PEC"),
        ("legalmail", "6 messaggi al minuto"),
        ("proton", "Bridge"),
        ("libero", "login.libero.it"),
    ],
)
def test_login_notes_say_what_the_provider_needs(key, words):
    preset = presets.get_preset(key)
    assert preset is not None
    assert words in str(preset.login_notes)


def test_outlook_and_proton_are_marked_not_usable():
    assert not presets.get_preset("outlook").usable
    assert not presets.get_preset("proton").usable
    assert presets.get_preset("gmail").usable


def test_local_test_server_is_offered_only_in_development(settings):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {"host": "localhost", "port": 1025}
    local = presets.get_preset("local")
    assert local is not None
    assert (local.host, local.port, local.security) == ("localhost", 1025, "starttls")
    assert str(local.label) == "Server di test locale"
    assert ("local", local.label) in presets.preset_choices()

    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = None  # production
    assert presets.get_preset("local") is None
    assert "local" not in [key for key, _label in presets.preset_choices()]


def test_choices_follow_the_tuple(settings):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = None
    assert [key for key, _label in presets.preset_choices()] == [p.key for p in PRESETS]


@pytest.mark.parametrize(
    ("mx_host", "key"),
    [
        ("aspmx.l.google.com.", "google_workspace"),
        ("alt1.aspmx.l.googlemail.com", "google_workspace"),
        ("studio-it.mail.protection.outlook.com", "microsoft365"),
        ("hotmail-com.olc.protection.outlook.com", "outlook"),
        ("mx.aruba.it", "aruba"),
        ("mx1.mail.ovh.net", "ovh"),
        ("mx.zoho.eu", "zoho_eu"),
        ("mta7.am0.yahoodns.net", "yahoo"),
    ],
)
def test_mx_patterns_map_to_presets(mx_host, key):
    assert presets.preset_for_mx(mx_host).key == key


def test_unknown_mx_maps_to_nothing():
    assert presets.preset_for_mx("mail.example.org") is None
    assert presets.preset_for_mx("google.com.evil.example") is None
