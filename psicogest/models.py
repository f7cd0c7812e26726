"""The host product's own models: the practitioner (the user), patients and invoices.

Every row belongs to one practitioner; pages reach rows only through
``Model.objects.owned_by(practitioner)``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from emailsettings.crypto import PATIENT_PDF_PASSWORD, decrypt_for, encrypt_for
from psicogest.fiscal import normalize_codice_fiscale, validate_codice_fiscale

# Other recipients a patient card may hold (a parent, a second payer): a few, not a mailing
# list. The form, the model's validation and the outbox (which caps what it sends) share it.
MAX_EXTRA_RECIPIENTS = 5


class PractitionerManager(BaseUserManager["Practitioner"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> Practitioner:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(
        self, email: str, password: str | None = None, **extra: Any
    ) -> Practitioner:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class Title(models.TextChoices):
    NONE = "", _("nessuno")
    DOTT = "Dott.", "Dott."
    DOTTSSA = "Dott.ssa", "Dott.ssa"
    DR = "Dr.", "Dr."


class Practitioner(AbstractBaseUser, PermissionsMixin):
    """A psychologist using PsicoGest; logs in with the email address."""

    email = models.EmailField(_("email"), unique=True)
    title = models.CharField(_("titolo"), max_length=10, choices=Title.choices, blank=True)
    first_name = models.CharField(_("nome"), max_length=80, blank=True)
    last_name = models.CharField(_("cognome"), max_length=80, blank=True)
    practice_name = models.CharField(_("nome dello studio"), max_length=120, blank=True)
    # Where patients pay; payment reminders may quote it (``${iban}``).
    iban = models.CharField(_("IBAN"), max_length=34, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = PractitionerManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("professionista")
        verbose_name_plural = _("professionisti")

    def __str__(self) -> str:
        return self.display_name or self.email

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def display_name(self) -> str:
        """Title and name, as signed at the bottom of a mail: "Dott.ssa Maria Rossi"."""
        return " ".join(part for part in (self.title, self.full_name) if part)


class OwnedQuerySet(models.QuerySet):
    def owned_by(self, practitioner: Practitioner) -> OwnedQuerySet:
        return self.filter(practitioner=practitioner)


class Salutation(models.TextChoices):
    GENTILE = "Gentile", "Gentile"
    GENTILE_SIG = "Gentile Sig.", "Gentile Sig."
    GENTILE_SIGRA = "Gentile Sig.ra", "Gentile Sig.ra"
    EGREGIO = "Egregio", "Egregio"
    SPETTLE = "Spett.le", "Spett.le"
    CARO = "Caro", "Caro"
    CARA = "Cara", "Cara"


class InvoiceAddress(models.TextChoices):
    """Which of the patient's addresses invoices go to."""

    EMAIL = "email", _("email")
    PEC = "pec", _("PEC")


class InvoiceDelivery(models.TextChoices):
    """How a patient receives the invoice PDF (the practice default, or the patient's own)."""

    ATTACHMENT = "attachment", _("PDF allegato")
    PROTECTED_PDF = "protected_pdf", _("PDF protetto da password")
    SECURE_LINK = "secure_link", _("Link sicuro")


# One sentence each, shown beside the choice (patient card and settings).
INVOICE_DELIVERY_HELP = {
    InvoiceDelivery.ATTACHMENT: _(
        "Il PDF della fattura è allegato alla mail: chiunque legga la mail può aprirlo."
    ),
    InvoiceDelivery.PROTECTED_PDF: _(
        "Il PDF è allegato ma cifrato (AES-256): si apre solo con il codice fiscale del "
        "paziente o con una password che gli consegni di persona; la mail non la contiene."
    ),
    InvoiceDelivery.SECURE_LINK: _(
        "Nessun allegato: la mail contiene un link a una pagina che chiede la data di "
        "nascita o le ultime cifre del codice fiscale; scade dopo 45 giorni."
    ),
}


class Language(models.TextChoices):
    """The language of the mails a patient receives (texts the practitioner wrote in it)."""

    IT = "it", _("italiano")
    EN = "en", _("inglese")


class PdfPasswordSource(models.TextChoices):
    """Which password opens a patient's protected PDF."""

    CODICE_FISCALE = "codice_fiscale", _("il codice fiscale del paziente, in maiuscolo")
    CUSTOM = "custom", _("una password che scegli tu e consegni di persona")


class Patient(models.Model):
    """The patient card ("scheda paziente")."""

    practitioner = models.ForeignKey(
        Practitioner, on_delete=models.CASCADE, related_name="patients"
    )
    # One of Salutation or free text typed by the practitioner.
    salutation = models.CharField(_("saluto"), max_length=40, blank=True)
    first_name = models.CharField(_("nome"), max_length=80, blank=True)
    last_name = models.CharField(_("cognome"), max_length=80, blank=True)
    company_name = models.CharField(_("ragione sociale"), max_length=160, blank=True)
    email = models.EmailField(_("email"), blank=True)
    pec = models.EmailField(_("PEC"), blank=True)
    invoice_address = models.CharField(
        _("invia le fatture a"),
        max_length=10,
        choices=InvoiceAddress.choices,
        default=InvoiceAddress.EMAIL,
    )
    # More addresses that each get their own copy of every invoice (a parent, a second
    # payer): a list of strings, each its own delivery, never in Cc of one another.
    extra_emails = models.JSONField(_("altri destinatari"), default=list, blank=True)
    codice_fiscale = models.CharField(
        _("codice fiscale"), max_length=16, blank=True, validators=[validate_codice_fiscale]
    )
    birth_date = models.DateField(_("data di nascita"), null=True, blank=True)
    # "" follows the practice default (EmailSettings.invoice_delivery).
    invoice_delivery = models.CharField(
        _("come riceve le fatture"),
        max_length=20,
        blank=True,
        choices=InvoiceDelivery.choices,
    )
    pdf_password_source = models.CharField(
        _("password del PDF"),
        max_length=20,
        choices=PdfPasswordSource.choices,
        default=PdfPasswordSource.CODICE_FISCALE,
    )
    # The practitioner's own password for this patient's PDFs, encrypted and bound to this
    # patient (emailsettings.crypto): shown only to the practitioner, never mailed.
    pdf_password_encrypted = models.TextField(blank=True, editable=False)
    # «Non inviare solleciti»: no payment reminder ever goes to this patient.
    no_reminders = models.BooleanField(_("non inviare solleciti"), default=False)
    language = models.CharField(
        _("lingua delle email"), max_length=5, choices=Language.choices, default=Language.IT
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("paziente")
        verbose_name_plural = _("pazienti")
        ordering = ["last_name", "first_name", "company_name", "id"]
        indexes = [models.Index(fields=["practitioner", "last_name"])]

    def __str__(self) -> str:
        return self.display_name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.codice_fiscale = normalize_codice_fiscale(self.codice_fiscale)
        super().save(*args, **kwargs)

    @property
    def invoice_recipient(self) -> str:
        """The address invoices go to: the PEC when chosen, otherwise the email."""
        chosen = self.pec if self.invoice_address == InvoiceAddress.PEC else self.email
        return (chosen or "").strip()

    @property
    def extra_recipients(self) -> list[str]:
        values = self.extra_emails if isinstance(self.extra_emails, list) else []
        return [str(value).strip() for value in values if str(value).strip()]

    def clean(self) -> None:
        """The card's other recipients, whatever wrote them (the admin edits the raw JSON):
        a list of addresses, at most :data:`MAX_EXTRA_RECIPIENTS` different ones."""
        super().clean()
        values = self.extra_emails
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationError(
                {"extra_emails": _('Scrivi un elenco di indirizzi email, come ["a@b.it"].')}
            )
        if len({v.strip().lower() for v in values if v.strip()}) > MAX_EXTRA_RECIPIENTS:
            raise ValidationError(
                {
                    "extra_emails": _("Puoi aggiungere al massimo %(max)d altri destinatari.")
                    % {"max": MAX_EXTRA_RECIPIENTS}
                }
            )

    def set_pdf_password(self, raw_password: str) -> None:
        """Store the practitioner's password for this patient's PDFs, encrypted and bound to
        this patient (save the patient first)."""
        self.pdf_password_encrypted = (
            encrypt_for(raw_password, owner_id=self.pk, purpose=PATIENT_PDF_PASSWORD)
            if raw_password
            else ""
        )

    def get_pdf_password(self) -> str:
        """The stored password, "" when none; ``DecryptionError`` when no key decrypts it for
        this patient."""
        if not self.pdf_password_encrypted:
            return ""
        return decrypt_for(
            self.pdf_password_encrypted, owner_id=self.pk, purpose=PATIENT_PDF_PASSWORD
        )

    @property
    def has_pdf_password(self) -> bool:
        return bool(self.pdf_password_encrypted)

    @property
    def is_company(self) -> bool:
        return bool(self.company_name)

    @property
    def display_name(self) -> str:
        """The company for companies, otherwise "Nome Cognome"."""
        if self.company_name:
            return self.company_name
        return " ".join(part for part in (self.first_name, self.last_name) if part)


def invoice_pdf_path(instance: Invoice, filename: str) -> str:
    return f"invoices/{instance.practitioner_id}/{filename}"


class Invoice(models.Model):
    practitioner = models.ForeignKey(
        Practitioner, on_delete=models.CASCADE, related_name="invoices"
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(_("numero"), max_length=20)
    issue_date = models.DateField(_("data"))
    due_date = models.DateField(_("scadenza"), null=True, blank=True)
    total = models.DecimalField(
        _("totale"), max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal(0))]
    )
    pdf = models.FileField(_("PDF"), upload_to=invoice_pdf_path, blank=True)
    last_emailed_at = models.DateTimeField(_("ultimo invio email"), null=True, blank=True)
    # Payment state: paid in full once ``paid_at`` is set; ``amount_paid`` counts partial
    # payments (the amount still due is the difference).
    paid_at = models.DateTimeField(_("pagata il"), null=True, blank=True)
    amount_paid = models.DecimalField(
        _("importo incassato"),
        max_digits=10,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
    )
    # A pause of its payment reminders, until a date (included), and why.
    reminders_paused_until = models.DateField(_("solleciti sospesi fino al"), null=True, blank=True)
    reminders_pause_reason = models.CharField(
        _("motivo della sospensione"), max_length=200, blank=True
    )

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("fattura")
        verbose_name_plural = _("fatture")
        ordering = ["-issue_date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["practitioner", "number"], name="invoice_number_unique_per_practitioner"
            )
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None or self.amount_due <= 0

    @property
    def amount_due(self) -> Decimal:
        """What the patient still has to pay: nothing once paid."""
        if self.paid_at is not None:
            return Decimal(0)
        return max(Decimal(0), (self.total or Decimal(0)) - (self.amount_paid or Decimal(0)))


class WorkerHeartbeat(models.Model):
    """Last time each Celery worker ran the heartbeat task."""

    hostname = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.hostname
