"""Payment reminders ("solleciti"): the practitioner's rules and the levels they send, and the
levels skipped by hand for one invoice.

A reminder itself is a :class:`~emailsettings.models.Delivery` with ``reminder_level`` ≥ 1:
it leaves through the same outbox as an invoice mail. ``emailsettings.outbox.reminders``
decides when.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from psicogest.models import OwnedQuerySet

# Up to three levels: a courteous reminder, a firmer one, a last one. A formal notice
# ("messa in mora") is the practitioner's own letter, never a template here.
MAX_LEVELS = 3
# Days before (negative) or after the due date, bounded to something a reminder means.
MIN_DAYS = -30
MAX_DAYS = 365


class ReminderRules(models.Model):
    """One row per practitioner: whether reminders are on, and for which invoices."""

    practitioner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reminder_rules"
    )
    enabled = models.BooleanField(_("invia i solleciti di pagamento"), default=False)
    minimum_amount = models.DecimalField(
        _("importo minimo da sollecitare"),
        max_digits=10,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
    )
    attach_invoice = models.BooleanField(_("allega la fattura al sollecito"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("regole dei solleciti")
        verbose_name_plural = _("regole dei solleciti")

    def __str__(self) -> str:
        return f"{self.practitioner}"


class ReminderLevel(models.Model):
    """One level of the rules: when it is due (days from the due date) and its texts. Empty
    texts mean "the default text"; empty English texts mean "the Italian one"."""

    rules = models.ForeignKey(ReminderRules, on_delete=models.CASCADE, related_name="levels")
    level = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LEVELS)]
    )
    enabled = models.BooleanField(_("attivo"), default=True)
    days = models.SmallIntegerField(
        _("giorni dalla scadenza"),
        validators=[MinValueValidator(MIN_DAYS), MaxValueValidator(MAX_DAYS)],
    )
    subject_template = models.CharField(_("oggetto"), max_length=1000, blank=True)
    body_template = models.TextField(_("testo"), blank=True)
    subject_template_en = models.CharField(_("oggetto (inglese)"), max_length=1000, blank=True)
    body_template_en = models.TextField(_("testo (inglese)"), blank=True)

    class Meta:
        ordering = ["level"]
        constraints = [
            models.UniqueConstraint(fields=["rules", "level"], name="reminder_level_unique"),
            models.CheckConstraint(
                condition=Q(level__gte=1) & Q(level__lte=MAX_LEVELS), name="reminder_level_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rules_id} #{self.level}"


class ReminderSkip(models.Model):
    """A level the practitioner chose not to send for one invoice («Salta»): it counts as
    used, so the invoice moves on to the next level."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    invoice = models.ForeignKey(
        "psicogest.Invoice", on_delete=models.CASCADE, related_name="reminder_skips"
    )
    level = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "level"], name="reminder_skip_unique")
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id} #{self.level}"
