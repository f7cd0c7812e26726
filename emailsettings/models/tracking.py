"""What comes back after sending: Smart Mail's webhook events, suppressed addresses, and
from the practitioner's own mailbox its folders read, PEC receipts and Sent copies."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from emailsettings.models.account import SmtpAccount
from emailsettings.models.delivery import Delivery
from psicogest.models import OwnedQuerySet


class WebhookState(models.TextChoices):
    PENDING = "pending", _("in attesa dell'invio")
    APPLIED = "applied", _("applicato")
    IGNORED = "ignored", _("ignorato")


class WebhookEvent(models.Model):
    """A tracking event an ESP posted, kept once (``event_key``: anymail's ``event_id``, or
    ESP + message id + type + time when the ESP sends none). It is matched to its delivery
    by the ESP's message id; one for a message not yet recorded as sent waits ``pending``
    and is applied when the worker records the ESP's message id."""

    esp = models.CharField(max_length=40)
    event_key = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=40)
    esp_message_id = models.CharField(max_length=255, db_index=True)
    recipient = models.CharField(max_length=254, blank=True)
    # The delivery id the event's metadata names: a cross-check only, never a lookup key.
    metadata_delivery_id = models.CharField(max_length=40, blank=True)
    soft = models.BooleanField(default=False)
    text = models.TextField(blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(
        max_length=20, choices=WebhookState.choices, default=WebhookState.PENDING
    )
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_events"
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["esp_message_id"],
                condition=Q(state="pending"),
                name="webhook_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} {self.esp_message_id}"


class SuppressedAddress(models.Model):
    """An address that hard-bounced or complained: not mailed again until reactivated."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suppressed_addresses"
    )
    address = models.EmailField()
    reason = models.CharField(max_length=20)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["practitioner", "address"], name="suppressed_address_unique"
            )
        ]

    def __str__(self) -> str:
        return self.address


class MailboxFolderState(models.Model):
    """How far a mailbox folder has been read for bounces: UIDs up to ``last_uid`` of this
    ``uidvalidity`` were looked at once and are never read again."""

    account = models.ForeignKey(SmtpAccount, on_delete=models.CASCADE, related_name="folders")
    folder = models.CharField(max_length=255)
    uidvalidity = models.BigIntegerField(default=0)
    last_uid = models.BigIntegerField(default=0)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "folder"], name="mailbox_folder_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.folder}"


class PecReceipt(models.Model):
    """A PEC receipt for a delivery, kept as received: the practitioner's legal proof of
    acceptance or delivery (or the notice of non-delivery)."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pec_receipts"
    )
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="receipts")
    kind = models.CharField(max_length=40)
    # The receipt's own Message-ID: the same receipt read twice is stored once.
    message_id = models.CharField(max_length=255)
    recipient = models.CharField(max_length=254, blank=True)
    issued_at = models.DateTimeField()
    raw = models.BinaryField()
    # Who signed it: the accredited provider whose signature was verified.
    signer = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["practitioner", "message_id"], name="pec_receipt_unique"
            )
        ]
        ordering = ["issued_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.delivery_id}"


class SentCopyState(models.TextChoices):
    PENDING = "pending", _("da salvare")
    FILED = "filed", _("salvata")
    FAILED = "failed", _("non salvata")


class SentCopy(models.Model):
    """The exact bytes of a sent invoice mail, kept until they are filed in the mailbox's
    Sent folder (then dropped)."""

    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, related_name="sent_copy")
    account = models.ForeignKey(SmtpAccount, on_delete=models.CASCADE, related_name="sent_copies")
    raw = models.BinaryField(blank=True)
    state = models.CharField(
        max_length=10, choices=SentCopyState.choices, default=SentCopyState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["account", "state", "next_attempt_at"], name="sent_copy_due")
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id}:{self.state}"
