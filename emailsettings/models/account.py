"""A practitioner's email settings and cover mail, their personal mailbox, and the domain
they send Smart Mail from."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from emailsettings.crypto import (
    OAUTH_ACCESS_TOKEN,
    OAUTH_REFRESH_TOKEN,
    SMTP_PASSWORD,
    decrypt_for,
    encrypt_for,
)
from emailsettings.failures import ErrorClass
from psicogest.models import InvoiceDelivery, OwnedQuerySet


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
    # The English version for patients whose card says English; empty: they get the Italian.
    subject_template_en = models.CharField(_("oggetto (inglese)"), max_length=1000, blank=True)
    body_template_en = models.TextField(_("testo (inglese)"), blank=True)
    # A separate message to the practitioner for every invoice mail (never Cc or Bcc).
    copy_to_self = models.BooleanField(_("ricevi una copia di ogni fattura"), default=False)
    # How invoices reach patients whose card does not choose (Patient.invoice_delivery).
    invoice_delivery = models.CharField(
        _("come ricevono le fatture i pazienti"),
        max_length=20,
        choices=InvoiceDelivery.choices,
        default=InvoiceDelivery.ATTACHMENT,
    )
    # The sending window (see emailsettings/outbox/schedule.py): weekdays as digits, Monday = 0
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
    # "google" | "microsoft" while connected with OAuth (emailsettings.mailbox.oauth.PROVIDERS).
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
        self.password_encrypted = (
            encrypt_for(raw_password, owner_id=self.practitioner_id, purpose=SMTP_PASSWORD)
            if raw_password
            else ""
        )

    def get_password(self) -> str:
        """The stored password; :class:`~emailsettings.crypto.DecryptionError` when no key
        decrypts it for this row's practitioner (a dropped key, or a copied token)."""
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


class SenderDomain(models.Model):
    """The domain of the practitioner's address, checked for Smart Mail's own-address From
    (SPF/DKIM/DMARC, see ``smartmail/senderdomain.py``). One row per practitioner; it only
    counts while ``domain`` is still the domain of the practitioner's address."""

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
