"""ESP tracking webhooks: authenticated, they update the delivery the metadata names."""

import base64
import json

import pytest

from emailsettings.models import DeliveryStatus, SuppressedAddress
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

URL = "/anymail/postmark/tracking/"


@pytest.fixture
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "esp:segreto-webhook"}
    return "esp:segreto-webhook"


def post_event(client, payload, secret):
    auth = "Basic " + base64.b64encode(secret.encode()).decode()
    return client.post(
        URL, data=json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=auth
    )


def test_delivered_event_marks_the_delivery_delivered(client, webhook_secret):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, esp_message_id="pm-1")
    response = post_event(
        client,
        {
            "RecordType": "Delivery",
            "MessageID": "pm-1",
            "Recipient": delivery.recipient,
            "DeliveredAt": "2026-11-27T10:00:00Z",
            "Details": "Test delivery",
            "Metadata": {"delivery_id": str(delivery.pk)},
        },
        webhook_secret,
    )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_hard_bounce_suppresses_the_address(client, webhook_secret):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, esp_message_id="pm-2")
    response = post_event(
        client,
        {
            "RecordType": "Bounce",
            "Type": "HardBounce",
            "TypeCode": 1,
            "MessageID": "pm-2",
            "Email": delivery.recipient,
            "BouncedAt": "2026-11-27T10:00:00Z",
            "Description": "The server was unable to deliver your message",
            "Details": "smtp;550 5.1.1 user unknown",
            "Metadata": {"delivery_id": str(delivery.pk)},
        },
        webhook_secret,
    )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    assert SuppressedAddress.objects.filter(
        practitioner=delivery.practitioner, address=delivery.recipient
    ).exists()


def test_webhook_without_the_secret_is_refused_and_changes_nothing(client, webhook_secret):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, esp_message_id="pm-3")
    payload = {
        "RecordType": "Delivery",
        "MessageID": "pm-3",
        "Recipient": delivery.recipient,
        "DeliveredAt": "2026-11-27T10:00:00Z",
        "Metadata": {"delivery_id": str(delivery.pk)},
    }
    response = post_event(client, payload, "esp:sbagliato")
    assert response.status_code in (400, 401, 403)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
