"""The secure link of a delivery sent without attachment: where the patient downloads the
invoice after a second factor (see ``emailsettings.outbox.securelink``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from psicogest.models import OwnedQuerySet


class SecureLink(models.Model):
    """One link per delivery. The token itself is never stored: it is derived from the
    server's secret and ``nonce`` when the mail is built, and found again by its SHA-256
    (``token_hash``), so a copy of the database alone opens nothing."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secure_links"
    )
    delivery = models.OneToOneField(
        "emailsettings.Delivery", on_delete=models.CASCADE, related_name="secure_link"
    )
    nonce = models.CharField(max_length=64)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Wrong second factors in a row: a pause after a few, then the link is locked.
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    downloads = models.PositiveIntegerField(default=0)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("link sicuro")
        verbose_name_plural = _("link sicuri")
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("created_at")),
                name="secure_link_expires_after_creation",
            )
        ]

    def __str__(self) -> str:
        return f"link {self.pk} (delivery {self.delivery_id})"
