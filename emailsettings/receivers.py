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
from django.dispatch import receiver

from emailsettings.backchannel.webhooks import record_tracking_event


@receiver(tracking, dispatch_uid="emailsettings.tracking")
def on_tracking_event(
    sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any
) -> None:
    record_tracking_event(esp=_esp_key(esp_name), event=event)


def _esp_key(esp_name: str) -> str:
    """anymail's display name ("Amazon SES", "Postmark") as a key ("amazon_ses")."""
    return "_".join(str(esp_name or "").lower().split())
