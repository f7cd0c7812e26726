"""What anyone can post to the ESP webhooks costs little: a rate per client address, and
events that match no delivery are deleted after a while."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from emailsettings.backchannel.webhooks import purge_unmatched
from emailsettings.models import WebhookEvent, WebhookState
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db

URL = "/anymail/postmark/tracking/"


def _event(n: int, **fields) -> WebhookEvent:
    values = {
        "esp": "postmark",
        "event_key": f"postmark:evt-{n}",
        "event_type": "bounced",
        "esp_message_id": f"msg-{n}",
        "state": WebhookState.IGNORED,
        **fields,
    }
    return WebhookEvent.objects.create(**values)


def test_unmatched_events_are_deleted_after_the_retention_and_a_deliverys_stay(settings):
    settings.EMAILSETTINGS_WEBHOOK_RETENTION_DAYS = 30
    delivery = DeliveryFactory()
    with time_machine.travel(timezone.now() - datetime.timedelta(days=31)):
        old_unknown = _event(1)
        old_of_a_delivery = _event(2, delivery=delivery, state=WebhookState.APPLIED)
    recent_unknown = _event(3)

    assert purge_unmatched() == 1

    remaining = set(WebhookEvent.objects.values_list("pk", flat=True))
    assert remaining == {old_of_a_delivery.pk, recent_unknown.pk}
    assert old_unknown.pk not in remaining


def test_one_address_posting_too_fast_gets_429_and_others_do_not(settings):
    settings.EMAILSETTINGS_WEBHOOK_RATE_PER_MINUTE = 3
    settings.ANYMAIL = {**getattr(settings, "ANYMAIL", {}), "WEBHOOK_SECRET": "esp:segreto"}
    cache.clear()
    flooder, esp = Client(REMOTE_ADDR="198.51.100.7"), Client(REMOTE_ADDR="203.0.113.9")

    answers = [flooder.post(URL, "{}", content_type="application/json") for _ in range(4)]

    assert [a.status_code == 429 for a in answers] == [False, False, False, True]
    assert answers[-1]["Retry-After"] == "60"
    assert esp.post(URL, "{}", content_type="application/json").status_code != 429
    # The rest of the site is not counted.
    assert flooder.get("/accesso/").status_code == 200


def test_without_the_cache_the_esp_events_still_land(settings):
    """Redis down: the rate limit cannot count, and lets the ESP's posts through."""
    settings.ANYMAIL = {**getattr(settings, "ANYMAIL", {}), "WEBHOOK_SECRET": "esp:segreto"}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    client = Client(REMOTE_ADDR="198.51.100.7", raise_request_exception=False)

    answer = client.post(URL, "{}", content_type="application/json")

    assert answer.status_code not in (429, 500)
