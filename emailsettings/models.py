"""The email module's rows: per-practitioner settings and cover mail, the personal mailbox,
the delivery outbox with its events, and suppressed addresses.

The database is the source of truth for every delivery; Celery only executes.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q, TextChoices
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
    # A separate message to the practitioner for every invoice mail (never Cc or Bcc).
    copy_to_self = models.BooleanField(_("ricevi una copia di ogni fattura"), default=False)
    # The sending window (see emailsettings/schedule.py): weekdays as digits, Monday = 0
    # ("01234" = Monday to Friday), hours in the practice's time zone; no days, no window.
    window_days = models.CharField(_("giorni di invio"), max_length=7, blank=True)
    window_start = models.TimeField(_("dalle"), null=True, blank=True)
    window_end = models.TimeField(_("alle"), null=True, blank=True)
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


class AuthMethod(models.TextChoices):
    PASSWORD = "password", _("password")
    OAUTH = "oauth", _("accesso con Google o Microsoft (OAuth)")


class MailboxStatus(models.TextChoices):
    UNVERIFIED = "unverified", _("non verificata")
    OK = "ok", _("funzionante")
    BROKEN = "broken", _("da correggere")


class SmtpAccount(models.Model):
    """The practitioner's own mailbox. It logs in with a password or, for Google and
    Microsoft mailboxes, with OAuth 2.0 (``auth_method``); the password and the tokens are
    stored only encrypted, bound to the practitioner (``emailsettings.crypto``)."""

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
    auth_method = models.CharField(
        _("accesso"), max_length=10, choices=AuthMethod.choices, default=AuthMethod.PASSWORD
    )
    # "google" | "microsoft" while connected with OAuth (emailsettings.oauth.PROVIDERS).
    oauth_provider = models.CharField(max_length=20, blank=True, editable=False)
    oauth_refresh_token_encrypted = models.TextField(blank=True, editable=False)
    oauth_access_token_encrypted = models.TextField(blank=True, editable=False)
    oauth_access_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
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
    # Reading bounces back from the same mailbox (IMAP, same credentials): opt-in.
    imap_enabled = models.BooleanField(_("leggi le risposte dalla casella"), default=False)
    imap_host = models.CharField(_("server IMAP"), max_length=255, blank=True)
    imap_port = models.PositiveIntegerField(_("porta IMAP"), default=993)
    imap_security = models.CharField(
        _("sicurezza IMAP"), max_length=10, choices=Security.choices, default="ssl"
    )
    imap_read_at = models.DateTimeField(null=True, blank=True)
    imap_next_read_at = models.DateTimeField(null=True, blank=True)
    imap_failures = models.PositiveSmallIntegerField(default=0)
    imap_error = models.CharField(max_length=300, blank=True)
    # A copy of each invoice mail in the mailbox's Sent folder (IMAP APPEND); never for
    # Gmail, which files what its SMTP server sends by itself.
    sent_copy = models.BooleanField(_("salva una copia nella posta inviata"), default=True)
    # The last "your mailbox needs attention" email to the practitioner (at most one a day).
    alerted_at = models.DateTimeField(null=True, blank=True)
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
            models.CheckConstraint(
                condition=Q(auth_method__in=["password", "oauth"]), name="smtp_auth_method_valid"
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

    @property
    def uses_oauth(self) -> bool:
        return self.auth_method == AuthMethod.OAUTH

    @property
    def has_credentials(self) -> bool:
        """A password, or an OAuth connection: the mailbox can try to log in."""
        if self.uses_oauth:
            return bool(self.oauth_refresh_token_encrypted)
        return self.has_password

    @property
    def needs_reconnect(self) -> bool:
        """The OAuth grant was refused (revoked, expired): "da ricollegare"."""
        return (
            self.uses_oauth
            and self.status == MailboxStatus.BROKEN
            and (self.last_error or {}).get("error_class") == ErrorClass.OAUTH_RECONNECT
        )

    @property
    def status_label(self) -> str:
        """The state's badge text: "da ricollegare" for a refused OAuth grant."""
        if self.needs_reconnect:
            return str(_("da ricollegare"))
        return str(self.get_status_display())

    def set_oauth_tokens(
        self, *, access_token: str, expires_at: datetime | None, refresh_token: str | None
    ) -> None:
        """Store the tokens encrypted and bound to the practitioner; ``refresh_token=None``
        keeps the stored one (Google sends it only at the first consent)."""
        from .crypto import OAUTH_ACCESS_TOKEN, OAUTH_REFRESH_TOKEN, encrypt_for

        owner = self.practitioner_id
        self.oauth_access_token_encrypted = (
            encrypt_for(access_token, owner_id=owner, purpose=OAUTH_ACCESS_TOKEN)
            if access_token
            else ""
        )
        self.oauth_access_token_expires_at = expires_at
        if refresh_token is not None:
            self.oauth_refresh_token_encrypted = (
                encrypt_for(refresh_token, owner_id=owner, purpose=OAUTH_REFRESH_TOKEN)
                if refresh_token
                else ""
            )

    def get_oauth_tokens(self) -> tuple[str, str]:
        """(access token, refresh token), "" for a missing one;
        :class:`~emailsettings.crypto.DecryptionError` when a key was dropped."""
        from .crypto import OAUTH_ACCESS_TOKEN, OAUTH_REFRESH_TOKEN, decrypt_for

        owner = self.practitioner_id
        access = self.oauth_access_token_encrypted
        refresh = self.oauth_refresh_token_encrypted
        return (
            decrypt_for(access, owner_id=owner, purpose=OAUTH_ACCESS_TOKEN) if access else "",
            decrypt_for(refresh, owner_id=owner, purpose=OAUTH_REFRESH_TOKEN) if refresh else "",
        )

    def clear_oauth(self) -> None:
        self.auth_method = AuthMethod.PASSWORD
        self.oauth_provider = ""
        self.oauth_refresh_token_encrypted = ""
        self.oauth_access_token_encrypted = ""
        self.oauth_access_token_expires_at = None


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
                fields=["scheduled_for"],
                condition=Q(status="scheduled"),
                name="delivery_scheduled_due",
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

    Kept by database triggers on ``Delivery`` (migration ``0015_perf_delivery_counts``: every
    insert, delete and change of status or channel, whoever writes it), so the report's
    "all time" counters read a few rows instead of counting a whole history. Never written
    by the application."""

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
