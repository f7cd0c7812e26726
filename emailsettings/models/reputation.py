"""Smart Mail reputation per practitioner: the state the guard keeps, and the operator's
lifts of a suspension (the audit trail).

The rates behind a state are measured by :mod:`emailsettings.smartmail.reputation` from the
deliveries (their ``bounced`` and ``complained`` statuses, set by the ESP's webhooks through
the after-send rule); this row keeps the worst window's numbers so pages, the worker and the
metrics read one row instead of counting again.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ReputationState(models.TextChoices):
    REGULAR = "regular", _("regolare")
    AT_RISK = "at_risk", _("a rischio")
    SUSPENDED = "suspended", _("sospeso")


class Reputation(models.Model):
    """One practitioner's Smart Mail standing; no row means *regolare*.

    *Sospeso* is sticky: only the operator lifts it (:class:`ReputationLift`); rates are then
    counted again from the lift (``counted_since``), so the old bounces do not suspend the
    practitioner again at the next check."""

    practitioner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="smart_mail_reputation"
    )
    state = models.CharField(
        max_length=20, choices=ReputationState.choices, default=ReputationState.REGULAR
    )
    # The worst window: its length and what it held (unique recipients and addresses).
    window_days = models.PositiveSmallIntegerField(default=0)
    recipients = models.PositiveIntegerField(default=0)
    bounced = models.PositiveIntegerField(default=0)
    complained = models.PositiveIntegerField(default=0)
    # Which rate decided the state: "bounces" or "complaints" ("" when regular).
    reason = models.CharField(max_length=20, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now)
    # The one "a rischio" email: claimed with a conditional update, cleared when regular.
    warned_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    counted_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("reputazione Smart Mail")
        verbose_name_plural = _("reputazione Smart Mail")
        ordering = ["-state", "-changed_at"]
        indexes = [models.Index(fields=["state"], name="reputation_state")]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=[value for value, _label in ReputationState.choices]),
                name="reputation_state_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.practitioner_id}: {self.state}"

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.recipients if self.recipients else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.recipients if self.recipients else 0.0


class ReputationLift(models.Model):
    """The operator lifted a practitioner's suspension: who, when, why, and the numbers at
    that moment. Written once, never changed."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reputation_lifts"
    )
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    note = models.TextField(_("nota"))
    created_at = models.DateTimeField(default=timezone.now)
    # The suspension as it was (window, recipients, bounced, complained, reason).
    numbers = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("revoca di sospensione")
        verbose_name_plural = _("revoche di sospensione")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.practitioner_id} @ {self.created_at:%Y-%m-%d %H:%M}"
