"""Smart Mail tracking: the ESP's webhook events (through anymail's ``tracking`` signal).

Each event is stored once (:class:`~emailsettings.models.WebhookEvent`, unique on anymail's
``event_id`` or, for ESPs that send none, ESP + message id + type + time) and matched to its
delivery by the ESP's message id — the only key an outsider cannot guess. The recipient and
the ``delivery_id`` metadata are cross-checks: a mismatch is logged and the event ignored.
An event for a message whose send is not recorded yet waits ``pending`` and is applied when
the worker records the ESP's message id (:func:`apply_pending`).

What an event does: ``delivered`` → delivered; a hard bounce → bounced and the address
suppressed; a complaint → complained and suppressed; ``rejected``/``failed`` → failed with
the reason; a soft bounce or a delay → a timeline entry only (never a suppression).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from emailsettings import conf
from emailsettings.covermail.message import header_value
from emailsettings.failures import ErrorClass, Failure
from emailsettings.models import (
    Channel,
    Delivery,
    WebhookEvent,
    WebhookState,
)
from emailsettings.outbox import lifecycle

logger = logging.getLogger(__name__)

HANDLED = ("delivered", "bounced", "complained", "rejected", "failed", "deferred")
# What a soft bounce looks like in each ESP's raw event, where anymail calls it "bounced".
_SOFT_MARKERS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    # Postmark: the bounce "Type" (HardBounce is the only permanent one we suppress on).
    "postmark": (("Type",), frozenset({"SoftBounce", "Transient", "DnsError", "AutoResponder"})),
    # Amazon SES: bounce.bounceType "Transient" (MailboxFull, General, …).
    "amazon_ses": (("bounce", "bounceType"), frozenset({"Transient", "Undetermined"})),
    # Brevo: the event name itself.
    "brevo": (("event",), frozenset({"soft_bounce", "softBounce", "soft_bounces"})),
    # Mailgun: failed events carry a severity.
    "mailgun": (("event-data", "severity"), frozenset({"temporary"})),
}


def _raw(event: Any, path: tuple[str, ...]) -> Any:
    value = event.esp_event
    for key in path:
        if hasattr(value, "get"):
            value = value.get(key)
        else:
            return None
    return value


def is_soft_bounce(esp: str, event: Any) -> bool:
    if event.event_type == "deferred":
        return True
    if event.event_type != "bounced":
        return False
    marker = _SOFT_MARKERS.get(esp)
    if marker is None:
        return False
    path, values = marker
    found = _raw(event, path)
    if found is None and esp == "mailgun":
        found = _raw(event, ("severity",))
    return str(found) in values


def _event_key(esp: str, event: Any, message_id: str) -> str:
    if event.event_id:
        key = f"{esp}:{event.event_id}"
    else:
        stamp = event.timestamp.isoformat() if event.timestamp else ""
        key = f"{esp}:{message_id}:{event.event_type}:{stamp}"
    if len(key) > 255:
        key = f"{esp}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def record_tracking_event(*, esp: str, event: Any) -> WebhookEvent | None:
    """Store and apply one anymail tracking event; ``None`` when it is not tracked (opens
    and clicks are off), has no message id, or is a replay."""
    event_type = str(event.event_type or "")
    message_id = str(event.message_id or "")[:255]
    if event_type not in HANDLED or not message_id:
        return None
    text = header_value(
        " ".join(str(part) for part in (event.description, event.mta_response) if part)
    )[:1000]
    metadata = event.metadata or {}
    try:
        with transaction.atomic():
            stored = WebhookEvent.objects.create(
                esp=esp[:40],
                event_key=_event_key(esp, event, message_id),
                event_type=event_type,
                esp_message_id=message_id,
                recipient=str(event.recipient or "")[:254],
                metadata_delivery_id=str(metadata.get("delivery_id") or "")[:40],
                soft=is_soft_bounce(esp, event),
                text=text,
                occurred_at=event.timestamp or timezone.now(),
            )
    except IntegrityError:
        logger.info("Tracking event %s from %s already received", event_type, esp)
        return None
    delivery = (
        Delivery.objects.filter(channel=Channel.SMART_MAIL, esp_message_id=message_id)
        .order_by("id")
        .first()
    )
    if delivery is None:
        # The send may not be recorded yet: the event waits for it (apply_pending).
        logger.info("Tracking event %s from %s waits for its delivery", event_type, esp)
        return stored
    _apply(stored, delivery)
    return stored


def apply_pending(delivery: Delivery) -> int:
    """Apply the events that arrived before the worker recorded ``delivery`` as sent."""
    return apply_pending_many([delivery])


def apply_pending_many(deliveries: Sequence[Delivery]) -> int:
    """:func:`apply_pending` for a batch's recorded sends, in one query (the worker calls it
    once a batch, not once a delivery)."""
    by_message_id = {d.esp_message_id: d for d in deliveries if d.esp_message_id}
    if not by_message_id:
        return 0
    waiting = list(
        WebhookEvent.objects.filter(
            state=WebhookState.PENDING, esp_message_id__in=list(by_message_id)
        ).order_by("occurred_at", "id")
    )
    for stored in waiting:
        _apply(stored, by_message_id[stored.esp_message_id])
    return len(waiting)


def apply_recorded_pending(limit: int = 1000) -> int:
    """Pending events whose send has been recorded since, applied now: the worker applies
    them when its batch ends, and a worker that died after recording a send but before
    that leaves them waiting (the sweeper calls this before :func:`prune_pending`)."""
    message_ids = set(
        WebhookEvent.objects.filter(state=WebhookState.PENDING).values_list(
            "esp_message_id", flat=True
        )[:limit]
    )
    if not message_ids:
        return 0
    recorded = Delivery.objects.filter(
        channel=Channel.SMART_MAIL, esp_message_id__in=list(message_ids)
    ).order_by("id")
    return apply_pending_many(list(recorded))


def purge_unmatched() -> int:
    """Delete the events that never matched a delivery once older than
    ``EMAILSETTINGS_WEBHOOK_RETENTION_DAYS``: anyone who knows the endpoint can post them.
    Events of a delivery stay with its timeline."""
    cutoff = timezone.now() - datetime.timedelta(days=conf.webhook_retention_days())
    deleted, _by_model = WebhookEvent.objects.filter(
        delivery__isnull=True, received_at__lt=cutoff
    ).delete()
    return deleted


def prune_pending() -> int:
    """Forget pending events older than ``EMAILSETTINGS_WEBHOOK_PENDING_SECONDS``."""
    cutoff = timezone.now() - datetime.timedelta(seconds=conf.webhook_pending_seconds())
    return WebhookEvent.objects.filter(state=WebhookState.PENDING, received_at__lt=cutoff).update(
        state=WebhookState.IGNORED
    )


def _matches(stored: WebhookEvent, delivery: Delivery) -> bool:
    if stored.recipient and stored.recipient.lower() != delivery.recipient.lower():
        return False
    return not stored.metadata_delivery_id or stored.metadata_delivery_id == str(delivery.pk)


def _news(stored: WebhookEvent) -> tuple[str, Failure | None]:
    """What the event says (for the after-send rule) and the failure it reports."""
    reply = stored.text
    if stored.event_type == "delivered":
        return lifecycle.News.DELIVERED, None
    if stored.soft:
        return lifecycle.News.NOTE, Failure(
            phase="", error_class=ErrorClass.SOFT_BOUNCE, reply=reply
        )
    if stored.event_type == "bounced":
        return lifecycle.News.BOUNCED, Failure(
            phase="", error_class=ErrorClass.BOUNCED, reply=reply
        )
    if stored.event_type == "complained":
        failure = Failure(phase="", error_class=ErrorClass.COMPLAINED, reply=reply)
        return lifecycle.News.COMPLAINED, failure
    if stored.event_type == "rejected":
        failure = Failure(phase="", error_class=ErrorClass.ESP_REJECTED, reply=reply)
        return lifecycle.News.FAILED, failure
    failure = Failure(phase="", error_class=ErrorClass.ESP_FAILED, reply=reply)
    return lifecycle.News.FAILED, failure


def _apply(stored: WebhookEvent, delivery: Delivery) -> None:
    if not _matches(stored, delivery):
        logger.warning(
            "Tracking event %s for delivery %s ignored: recipient or metadata mismatch",
            stored.pk,
            delivery.pk,
        )
        WebhookEvent.objects.filter(pk=stored.pk).update(state=WebhookState.IGNORED)
        return
    news, failure = _news(stored)
    if failure is None:
        text = stored.text or gettext_noop("Consegna confermata dal servizio di invio.")
    else:
        text = stored.text or str(dict(ErrorClass.choices).get(failure.error_class, ""))
    with transaction.atomic():
        effect = lifecycle.apply_news(
            delivery.pk, source=lifecycle.Source.WEBHOOK, news=news, text=text, failure=failure
        )
        WebhookEvent.objects.filter(pk=stored.pk).update(
            state=WebhookState.APPLIED if effect else WebhookState.IGNORED, delivery=delivery
        )
