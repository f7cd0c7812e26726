"""anymail's own webhook payloads reach the tracking signal as the events the samples claim.

The samples (tests/support/webhook_samples.py) are copied from django-anymail's test suite; these
tests pin what anymail makes of them with the project's webhook security (basic auth, the
Mailgun signing key), so code built on ``event.event_type`` / ``metadata`` has real inputs.
The project's own receiver is covered by test_webhooks.py and is kept out of the way here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from anymail.signals import tracking

from tests.support import webhook_samples
from tests.support.webhook_samples import ESPS, EXPECTED, KINDS, SAMPLES, available, build, post

pytestmark = [
    pytest.mark.django_db,
    # anymail's SendGrid view warns on every request that SendGrid support was dropped.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]

SECRET = "esp:segreto"
SIGNING_KEY = "chiave-firma-mailgun"
WHEN = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
RECIPIENT = "paziente.rossi@example.test"

# Message ids in the shape each ESP's send API returns them (what anymail's backend stores).
MESSAGE_IDS = {
    "postmark": "0a5b1c9e-4d1f-4c55-9a0e-6c2f7d2b8e11",
    "mailgun": "<20261127100000.1.A1B2C3D4E5F60718@mg.psicogest.test>",
    "sendgrid": "6f2a0b7e-3f4e-4a3c-9a56-1d2e3f405162",
    "amazon_ses": "0100019a6b7c8d9e-1f2a3b4c-5d6e-4f70-8192-a3b4c5d6e7f8-000000",
    "brevo": "<202611271000.12345678901@smtp-relay.mailin.fr>",
}

CASES = [(esp, kind) for esp in ESPS for kind in available(esp)]


@pytest.fixture(autouse=True)
def webhook_security(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }


@pytest.fixture
def events():
    """The tracking events anymail sends, with the project's receiver disconnected."""
    from emailsettings.receivers import on_tracking_event

    captured = []

    def capture(sender, event, esp_name, **kwargs):
        captured.append((esp_name, event))

    was_connected = tracking.disconnect(dispatch_uid="emailsettings.tracking")
    tracking.connect(capture, dispatch_uid="tests.support.webhook_samples.capture")
    try:
        yield captured
    finally:
        tracking.disconnect(dispatch_uid="tests.support.webhook_samples.capture")
        if was_connected:
            tracking.connect(on_tracking_event, dispatch_uid="emailsettings.tracking")


def sample_request(esp, kind, **overrides):
    arguments = {
        "message_id": MESSAGE_IDS[esp],
        "recipient": RECIPIENT,
        "delivery_id": "4242",
        "timestamp": WHEN,
        "basic_auth": SECRET,
        "mailgun_signing_key": SIGNING_KEY if esp == "mailgun" else None,
    }
    return build(esp, kind, **{**arguments, **overrides})


@pytest.mark.parametrize("delivery_id", ["4242", None])
@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_sample_is_one_event_of_the_expected_type_for_our_message(
    client, events, esp, kind, delivery_id
):
    response = post(client, sample_request(esp, kind, delivery_id=delivery_id))

    assert response.status_code == 200
    assert len(events) == 1
    _, event = events[0]
    assert event.event_type == EXPECTED[esp, kind]
    assert event.message_id == MESSAGE_IDS[esp]
    assert event.recipient == RECIPIENT
    assert event.metadata.get("delivery_id") == delivery_id
    if delivery_id is None:
        assert event.metadata == {}
    assert event.timestamp == WHEN
    assert event.event_id == SAMPLES[esp, kind].event_id


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_raw_field_tells_soft_from_hard_bounce(client, events, esp, kind):
    post(client, sample_request(esp, kind))

    _, event = events[0]
    expected = {"soft_bounce": "soft", "hard_bounce": "hard"}.get(kind)
    assert webhook_samples.raw_bounce_kind(esp, event.esp_event) == expected


@pytest.mark.parametrize(
    ("esp", "kind"), [case for case in CASES if SAMPLES[case].event_id is not None]
)
def test_event_id_can_be_replaced_where_the_payload_has_one(client, events, esp, kind):
    post(client, sample_request(esp, kind, event_id="777"))

    _, event = events[0]
    assert event.event_id == "777"


@pytest.mark.parametrize("basic_auth", ["esp:sbagliato", None])
@pytest.mark.parametrize("esp", ESPS)
def test_wrong_or_missing_webhook_secret_is_refused(client, events, esp, basic_auth):
    response = post(client, sample_request(esp, "delivered", basic_auth=basic_auth))

    assert response.status_code in (400, 401, 403)
    assert events == []


@pytest.mark.parametrize("signing_key", ["chiave-sbagliata", None])
def test_mailgun_payload_without_a_valid_signature_is_refused(client, events, signing_key):
    response = post(client, sample_request("mailgun", "delivered", mailgun_signing_key=signing_key))

    assert response.status_code == 400
    assert events == []


def test_amazon_ses_without_basic_auth_asks_for_it_as_sns_needs(client, events):
    """SNS sends credentials only after a 401 with WWW-Authenticate."""
    response = post(client, sample_request("amazon_ses", "delivered", basic_auth=None))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="Anymail WEBHOOK_SECRET"'
    assert events == []


def test_every_sample_has_a_known_esp_and_kind_and_missing_kinds_are_refused():
    assert {esp for esp, _ in SAMPLES} == set(ESPS)
    assert {kind for _, kind in SAMPLES} <= set(KINDS)
    assert set(EXPECTED) == set(SAMPLES)
    with pytest.raises(ValueError, match="no anymail sample"):
        build("postmark", "soft_bounce", message_id="x", recipient=RECIPIENT, delivery_id=None)
