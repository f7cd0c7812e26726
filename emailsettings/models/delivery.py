"""The delivery outbox: one row per invoice email, its stored counters and its events.

The database is the source of truth for every delivery; Celery only executes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Count, Q, Sum, TextChoices
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from emailsettings.failures import ErrorClass
from emailsettings.models.account import Channel
from emailsettings.models.reminders import MAX_LEVELS
from psicogest.models import InvoiceDelivery, OwnedQuerySet


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", _("in coda")
    SENDING = "sending", _("in invio")
    SENT = "sent", _("inviata")
    DELIVERED = "delivered", _("consegnata")
    DEFERRED = "deferred", _("in attesa di nuovo tentativo")
    FAILED = "failed", _("non riuscita")
    BOUNCED = "bounced", _("rimbalzata")
    COMPLAINED = "complained", _("segnalata come spam")
    SUPPRESSED = "suppressed", _("bloccata (indirizzo sospeso)")
    HELD = "held", _("trattenuta (casella da correggere)")
    UNKNOWN = "unknown", _("esito sconosciuto")
    SCHEDULED = "scheduled", _("programmata")
    CANCELLED = "cancelled", _("annullata")


class RecipientRole(TextChoices):
    """Who a delivery goes to: each address is its own row and its own message."""

    PATIENT = "patient", _("paziente")
    EXTRA = "extra", _("altro destinatario")
    COPY = "copy", _("copia per te")


class Phase(models.TextChoices):
    """How far the last attempt got; decides whether a dead worker's row may be retried."""

    NONE = "", _("nessuna")
    CONNECT = "connect", _("connessione")
    TLS = "tls", _("TLS")
    AUTH = "auth", _("autenticazione")
    MAIL = "mail", _("mittente (MAIL FROM)")
    RCPT = "rcpt", _("destinatario (RCPT TO)")
    DATA = "data", _("invio del messaggio (DATA)")
    DATA_SENT = "data_sent", _("messaggio consegnato al server, in attesa di risposta")
    DONE = "done", _("completato")


def kind_label(level: int) -> str:
    if level:
        return gettext("Sollecito %(level)d") % {"level": level}
    return gettext("Fattura")


class DeliveryQuerySet(OwnedQuerySet):
    pass


class Delivery(models.Model):
    """One invoice mail to one recipient: the outbox row."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deliveries"
    )
    invoice = models.ForeignKey(
        "psicogest.Invoice", on_delete=models.CASCADE, related_name="deliveries"
    )
    patient = models.ForeignKey(
        "psicogest.Patient", on_delete=models.CASCADE, related_name="deliveries"
    )
    channel = models.CharField(max_length=20, choices=Channel.choices)
    status = models.CharField(
        max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED
    )
    recipient = models.EmailField(max_length=254)
    role = models.CharField(
        max_length=10, choices=RecipientRole.choices, default=RecipientRole.PATIENT
    )
    # Snapshot for the report, so the list needs no join to search by name.
    patient_name = models.CharField(max_length=200, blank=True)
    invoice_number = models.CharField(max_length=20, blank=True)
    subject = models.CharField(max_length=300)
    from_header = models.CharField(max_length=300, blank=True)
    reply_to = models.CharField(max_length=300, blank=True)
    message_id = models.CharField(max_length=255, unique=True)
    esp_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    body_purged_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Leases lost to a dead worker before the data was sent (capped: a poison row fails).
    crashes = models.PositiveSmallIntegerField(default=0)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.NONE, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When a ``scheduled`` row is released to the queue (a chosen time or the window).
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # End of the last wait for the Smart Mail daily quota: the retry max age counts from here
    # (not from created_at), so waiting for the quota never uses up the retry window.
    quota_wait_until = models.DateTimeField(null=True, blank=True)
    last_error_class = models.CharField(max_length=40, choices=ErrorClass.choices, blank=True)
    last_error_code = models.PositiveIntegerField(null=True, blank=True)
    last_error_enhanced = models.CharField(max_length=20, blank=True)
    last_error_text = models.TextField(blank=True)
    resend_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resends"
    )
    # The practitioner explicitly chose Smart Mail for a row held by a broken mailbox.
    fallback_to_smart_mail = models.BooleanField(default=False)
    # How the invoice travels in this message, fixed when queued (the report says it).
    protection = models.CharField(
        max_length=20, choices=InvoiceDelivery.choices, default=InvoiceDelivery.ATTACHMENT
    )
    # 0: the invoice mail; 1-3: a payment reminder of that level ("Sollecito 1").
    reminder_level = models.PositiveSmallIntegerField(default=0)
    # Whether the invoice PDF goes with the message (a reminder may leave it out).
    with_invoice = models.BooleanField(default=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("invio email")
        verbose_name_plural = _("invii email")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["practitioner", "-created_at", "-id"], name="delivery_report"),
            models.Index(
                fields=["practitioner", "status", "-created_at"], name="delivery_report_status"
            ),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["invoice", "-created_at"], name="delivery_invoice"),
            models.Index(
                fields=["invoice", "reminder_level"],
                condition=Q(reminder_level__gt=0),
                name="delivery_reminders",
            ),
            models.Index(
                fields=["scheduled_for"],
                condition=Q(status="scheduled"),
                name="delivery_scheduled_due",
            ),
            # The resends: the report folds a superseded failure under its successor.
            models.Index(
                fields=["practitioner"],
                condition=Q(resend_of__isnull=False),
                name="delivery_resent",
            ),
            # Smart Mail reputation: a practitioner's sends over the last days.
            models.Index(
                fields=["practitioner", "sent_at"],
                condition=Q(channel="smart_mail", sent_at__isnull=False),
                name="delivery_reputation",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[value for value, _label in DeliveryStatus.choices]),
                name="delivery_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=[value for value, _label in Channel.choices]),
                name="delivery_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(last_error_class="")
                | Q(last_error_class__in=[value for value, _label in ErrorClass.choices]),
                name="delivery_error_class_valid",
            ),
            models.CheckConstraint(
                condition=Q(role__in=[value for value, _label in RecipientRole.choices]),
                name="delivery_role_valid",
            ),
            models.CheckConstraint(
                condition=Q(protection__in=[value for value, _label in InvoiceDelivery.choices]),
                name="delivery_protection_valid",
            ),
            models.CheckConstraint(
                condition=Q(reminder_level__gte=0) & Q(reminder_level__lte=MAX_LEVELS),
                name="delivery_reminder_level_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_number} → {self.recipient} ({self.status})"

    @property
    def kind_label(self) -> str:
        """ "Fattura", or "Sollecito 2" for a payment reminder (the report's column)."""
        return kind_label(self.reminder_level)

    @property
    def last_reply(self) -> str:
        """The last error as the server said it: codes first, once ("550 5.1.1 …")."""
        text = self.last_error_text.strip()
        codes = " ".join(
            str(part) for part in (self.last_error_code, self.last_error_enhanced) if part
        )
        if not codes or text.startswith(codes.split()[0]):
            return text
        return f"{codes} {text}".strip()


class DeliveryCount(models.Model):
    """How many of a practitioner's deliveries are in each status, per channel.

    Kept by database triggers on ``Delivery`` (migration ``0015_perf_delivery_counts``: every
    insert, delete and change of status or channel, whoever writes it), so the report's
    "all time" counters read a few rows instead of counting a whole history. Never written
    by the application. A row being sent stays counted under ``queued`` (migration
    ``0023_counters_skip_sending``: a claim changes no counter); read them through
    :func:`stored_counts`, which tells the two apart."""

    # No foreign-key constraint in the database: the triggers' INSERT would otherwise take a
    # KEY SHARE lock on the practitioner's row, and a transaction holding that row FOR
    # UPDATE (the Smart Mail quota check) while waiting for a counter row deadlocks with it.
    # Django still deletes the counters with their practitioner.
    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    channel = models.CharField(max_length=20, choices=Channel.choices)
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["practitioner", "channel", "status"], name="delivery_count_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.practitioner_id} {self.channel} {self.status}: {self.n}"


class EventKind(models.TextChoices):
    QUEUED = "queued", _("messa in coda")
    ATTEMPT = "attempt", _("tentativo")
    WEBHOOK = "webhook", _("notifica del provider")
    MAILBOX = "mailbox", _("notifica nella casella")
    ACTION = "action", _("azione")
    SECURE_LINK = "secure_link", _("link sicuro")


class DeliveryEvent(models.Model):
    """Timeline of a delivery: each attempt with the server's reply, each webhook event."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, blank=True)
    phase = models.CharField(max_length=20, choices=Phase.choices, blank=True)
    reply_code = models.PositiveIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=20, blank=True)
    text = models.TextField(blank=True)
    # For a text with values: its Italian source ("_msgid", "_plural") and the values, so
    # the timeline shows it in the reader's language (see :attr:`display_text`).
    text_params = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["delivery", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}"

    @property
    def display_text(self) -> str:
        """The text in the active language: the product's own sentences are stored in
        Italian (the source language) and translated when shown; a server's reply matches
        no catalogue entry and stays as it was."""
        from django.utils.translation import gettext

        params = dict(self.text_params or {})
        msgid = str(params.pop("_msgid", "") or self.text)
        plural = str(params.pop("_plural", "") or "")
        if not msgid:
            return ""
        # Both forms are catalogue entries of their own (``gettext_noop``): the form is
        # chosen by the count, as in Italian and English (one, other).
        if plural and params.get("count") != 1:
            msgid = plural
        try:
            return gettext(msgid) % params if params else gettext(msgid)
        except (KeyError, TypeError, ValueError):
            return self.text


def stored_counts(
    *, practitioner_id: int | None = None, channel: str = ""
) -> dict[tuple[str, str], int]:
    """The stored counters by (channel, status), of one practitioner or all, of one channel
    or both. The rows being sent, kept under ``queued`` by the triggers, are counted live
    (a handful, through the ``delivery_report_status`` index) and moved to ``sending``."""
    counters = DeliveryCount.objects.all()
    sending = Delivery.objects.filter(status=DeliveryStatus.SENDING)
    if practitioner_id is not None:
        counters = counters.filter(practitioner_id=practitioner_id)
        sending = sending.filter(practitioner_id=practitioner_id)
    if channel:
        counters, sending = counters.filter(channel=channel), sending.filter(channel=channel)
    result: dict[tuple[str, str], int] = {
        (row_channel, status): int(n or 0)
        for row_channel, status, n in counters.order_by()
        .values_list("channel", "status")
        .annotate(n=Sum("n"))
    }
    for row_channel, n in sending.order_by().values_list("channel").annotate(n=Count("id")):
        queued = (row_channel, DeliveryStatus.QUEUED)
        result[queued] = result.get(queued, 0) - n
        result[(row_channel, DeliveryStatus.SENDING)] = n
    return result
