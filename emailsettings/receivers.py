"""Receivers of anymail's normalised tracking webhooks (Smart Mail only).

The ESP posts events to anymail's webhook URLs (authenticated with ``ANYMAIL
["WEBHOOK_SECRET"]``); anymail sends the ``tracking`` signal, and the receiver here hands
it to :func:`emailsettings.backchannel.webhooks.record_tracking_event`, which matches it by the
ESP's message id. Only the delivery id travels in the metadata, so nothing here sees patient
data beyond the recipient address already stored.
"""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.core.cache import cache
from django.db import transaction
from django.dispatch import receiver

from emailsettings.backchannel.webhooks import record_tracking_event
from emailsettings.models import WebhookEvent
from emailsettings.outbox.publish import publish_task

# A hard bounce or a complaint: the practitioner's reputation is checked at once (the beat
# checks every practitioner every 5 minutes anyway).
BAD_NEWS = ("bounced", "complained")
# One early check per practitioner a minute: a flood of bounces is one task, not thousands.
CHECK_DEBOUNCE_SECONDS = 60


@receiver(tracking, dispatch_uid="emailsettings.tracking")
def on_tracking_event(
    sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any
) -> None:
    stored = record_tracking_event(esp=_esp_key(esp_name), event=event)
    if stored is not None and stored.event_type in BAD_NEWS and not stored.soft:
        check_reputation_soon(event_id=stored.pk)


def _esp_key(esp_name: str) -> str:
    """anymail's display name ("Amazon SES", "Postmark") as a key ("amazon_ses")."""
    return "_".join(str(esp_name or "").lower().split())


def check_reputation_soon(*, event_id: int) -> None:
    """The event's practitioner (once it is matched to a delivery) is checked at once."""
    practitioner_id = (
        WebhookEvent.objects.filter(pk=event_id, delivery__isnull=False)
        .values_list("delivery__practitioner_id", flat=True)
        .first()
    )
    if practitioner_id is None:
        return
    if cache.add(f"emailsettings:reputation-check:{practitioner_id}", 1, CHECK_DEBOUNCE_SECONDS):
        transaction.on_commit(
            lambda: publish_task("emailsettings.check_practitioner_reputation", [practitioner_id])
        )
