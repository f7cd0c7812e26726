"""The email module's rows: per-practitioner settings and cover mail, the personal mailbox,
the delivery outbox with its events, and suppressed addresses.

The database is the source of truth for every delivery; Celery only executes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from psicogest.models import OwnedQuerySet

from .failures import ErrorClass


class Channel(models.TextChoices):
    SMART_MAIL = "smart_mail", _("Smart Mail")
    SMTP = "smtp", _("SMTP personale")


class EmailSettings(models.Model):
    """One row per practitioner: the chosen channel and the cover-mail templates."""

    practitioner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_settings"
    )
    channel = models.CharField(
        _("canale di invio"), max_length=20, choices=Channel.choices, default=Channel.SMART_MAIL
    )
    subject_template = models.CharField(_("oggetto"), max_length=1000, blank=True)
    body_template = models.TextField(_("testo"), blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("impostazioni email")
        verbose_name_plural = _("impostazioni email")

    def __str__(self) -> str:
        return f"{self.practitioner}"


class Security(models.TextChoices):
    SSL = "ssl", _("SSL/TLS (porta 465)")
    STARTTLS = "starttls", _("STARTTLS (porta 587)")


class MailboxStatus(models.TextChoices):
    UNVERIFIED = "unverified", _("non verificata")
    OK = "ok", _("funzionante")
    BROKEN = "broken", _("da correggere")


class SmtpAccount(models.Model):
    """The practitioner's own mailbox. The password is stored only encrypted."""

    practitioner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="smtp_account"
    )
    email = models.EmailField(_("indirizzo email"))
    sender_name = models.CharField(_("nome mittente"), max_length=120, blank=True)
    preset = models.CharField(_("provider"), max_length=40, default="custom")
    host = models.CharField(_("server SMTP"), max_length=255)
    port = models.PositiveIntegerField(_("porta"))
    security = models.CharField(_("sicurezza"), max_length=10, choices=Security.choices)
    username = models.CharField(_("nome utente"), max_length=255)
    password_encrypted = models.TextField(blank=True, editable=False)
    status = models.CharField(
        max_length=20, choices=MailboxStatus.choices, default=MailboxStatus.UNVERIFIED
    )
    last_verified_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Since when sends have found the server unreachable (refused, unknown host, no answer);
    # cleared by any successful session. Long enough, and the mailbox becomes "broken".
    unreachable_since = models.DateTimeField(null=True, blank=True)
    # The classified failure: {"phase", "code", "enhanced", "error_class", "reply"}.
    last_error = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("casella SMTP personale")
        verbose_name_plural = _("caselle SMTP personali")
        constraints = [
            models.CheckConstraint(
                condition=Q(security__in=["ssl", "starttls"]), name="smtp_security_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["unverified", "ok", "broken"]), name="smtp_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def set_password(self, raw_password: str) -> None:
        """Store ``raw_password`` encrypted and bound to this row's practitioner (set it
        first): the token decrypts for no other practitioner's row."""
        from .crypto import SMTP_PASSWORD, encrypt_for

        self.password_encrypted = (
            encrypt_for(raw_password, owner_id=self.practitioner_id, purpose=SMTP_PASSWORD)
            if raw_password
            else ""
        )

    def get_password(self) -> str:
        """The stored password; :class:`~emailsettings.crypto.DecryptionError` when no key
        decrypts it for this row's practitioner (a dropped key, or a copied token)."""
        from .crypto import SMTP_PASSWORD, decrypt_for

        if not self.password_encrypted:
            return ""
        return decrypt_for(
            self.password_encrypted, owner_id=self.practitioner_id, purpose=SMTP_PASSWORD
        )

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)


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


class DeliveryQuerySet(OwnedQuerySet):
    def in_flight(self) -> DeliveryQuerySet:
        from .delivery.lifecycle import IN_FLIGHT

        return self.filter(status__in=IN_FLIGHT)


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
        ]

    def __str__(self) -> str:
        return f"{self.invoice_number} → {self.recipient} ({self.status})"

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

    Kept by database triggers on ``Delivery`` (migration ``0007_perf_delivery_counts``: every
    insert, delete and change of status or channel, whoever writes it), so the report's
    "all time" counters read a few rows instead of counting a whole history. Never written
    by the application."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
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
    ACTION = "action", _("azione")


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

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["delivery", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}"


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


class SenderDomain(models.Model):
    """The domain of the practitioner's address, checked for Smart Mail's own-address From
    (SPF/DKIM/DMARC, see ``emailsettings/dns.py``). One row per practitioner; it only counts
    while ``domain`` is still the domain of the practitioner's address."""

    practitioner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sender_domain"
    )
    domain = models.CharField(_("dominio"), max_length=253)
    # Set while the last check verified the domain; cleared by a failing check.
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    # ``DomainCheck.as_json()`` of the last check: states and what DNS returned.
    last_result = models.JSONField(default=dict, blank=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("dominio del mittente")
        verbose_name_plural = _("domini del mittente")

    def __str__(self) -> str:
        return self.domain
