"""Receivers of anymail's normalised tracking webhooks (Smart Mail only).

The ESP posts events to anymail's webhook URLs (authenticated with ``ANYMAIL
["WEBHOOK_SECRET"]``); anymail sends the ``tracking`` signal, and the receiver here hands
it to :func:`emailsettings.delivery.record_tracking_event`. Only the delivery id travels in
the metadata, so nothing here sees patient data beyond the recipient address already stored.
"""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.dispatch import receiver


@receiver(tracking, dispatch_uid="emailsettings.tracking")
def on_tracking_event(
    sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any
) -> None:
    from .delivery import record_tracking_event

    metadata = event.metadata or {}
    record_tracking_event(
        event_type=str(event.event_type or ""),
        delivery_id=metadata.get("delivery_id"),
        esp_message_id=event.message_id,
        description=str(event.description or ""),
        mta_response=str(event.mta_response or ""),
        occurred_at=event.timestamp,
    )
