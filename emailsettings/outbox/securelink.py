"""Secure links: an invoice sent without attachment, downloaded from a page of the platform
after a second factor the mail does not carry (the date of birth, or the last characters of
the codice fiscale).

- The token is 64 hex characters derived with HMAC-SHA256 from the server's secret, the
  delivery id and a random nonce: it is built again for every retry of the same delivery
  (the same message) and never stored; the row keeps only its SHA-256, which the page looks
  up. Rotating ``SECRET_KEY`` therefore ends every link sent before.
- A link expires ``EMAILSETTINGS_SECURE_LINK_DAYS`` after it is created (45, the Garante's
  limit for documents of this kind online), may be revoked by the practitioner, and after
  :data:`THROTTLE_AFTER` wrong factors in a row each new try waits :data:`THROTTLE_SECONDS`;
  at ``EMAILSETTINGS_SECURE_LINK_MAX_ATTEMPTS`` it is locked (a new link is sent from the
  delivery page).
- Each download is counted, and the first one is a timeline event ("scaricata il …").
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from enum import StrEnum
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_noop

from emailsettings import conf
from emailsettings.covermail.protection import (
    CODICE_FISCALE_FACTOR_LENGTH,
    second_factor_kind,
)
from emailsettings.exceptions import ActionNotAllowed
from emailsettings.models import Delivery, EventKind, SecureLink
from emailsettings.outbox import lifecycle
from emailsettings.outbox.lifecycle import EventText
from psicogest.formatting import format_datetime

if TYPE_CHECKING:
    from psicogest.models import Patient

_SALT = "emailsettings.securelink"
_TOKEN = re.compile(r"[0-9a-f]{64}\Z")
# Wrong factors in a row before each try has to wait, and how long.
THROTTLE_AFTER = 3
THROTTLE_SECONDS = 60


class LinkState(StrEnum):
    OPEN = "open"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"
    WAIT = "wait"


def _token(delivery_id: int, nonce: str) -> str:
    return salted_hmac(_SALT, f"{delivery_id}:{nonce}", algorithm="sha256").hexdigest()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def link_for(delivery: Delivery) -> tuple[SecureLink, str]:
    """The delivery's link and its token, created at the first build of its message; a
    retry gets the same token back."""
    link = SecureLink.objects.filter(delivery=delivery).first()
    if link is None:
        nonce = secrets.token_hex(16)
        token = _token(delivery.pk, nonce)
        now = timezone.now()
        link, _created = SecureLink.objects.get_or_create(
            delivery=delivery,
            defaults={
                "practitioner_id": delivery.practitioner_id,
                "nonce": nonce,
                "token_hash": _hash(token),
                "created_at": now,
                "expires_at": now + datetime.timedelta(days=conf.secure_link_days()),
            },
        )
    return link, _token(delivery.pk, link.nonce)


def link_url(token: str) -> str:
    return conf.site_url() + reverse("emailsettings:secure_link", kwargs={"token": token})


def find_link(token: str) -> SecureLink | None:
    """The link of ``token``, or ``None`` (a malformed or unknown token alike)."""
    if not _TOKEN.match(token or ""):
        return None
    return (
        SecureLink.objects.select_related("delivery__invoice", "delivery__patient")
        .filter(token_hash=_hash(token))
        .first()
    )


def state(link: SecureLink, *, now: datetime.datetime | None = None) -> LinkState:
    now = now or timezone.now()
    if link.revoked_at is not None:
        return LinkState.REVOKED
    if link.locked_at is not None:
        return LinkState.LOCKED
    if link.expires_at <= now:
        return LinkState.EXPIRED
    if link.retry_after is not None and link.retry_after > now:
        return LinkState.WAIT
    return LinkState.OPEN


def _normalise_date(value: str) -> str:
    """``YYYY-MM-DD`` from a date typed as 31/12/1980, 31-12-1980 or 1980-12-31; "" else."""
    text = (value or "").strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            return datetime.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return ""


def _expected(patient: Patient, kind: str) -> str:
    if kind == "birth_date" and patient.birth_date is not None:
        return patient.birth_date.isoformat()
    return (patient.codice_fiscale or "").upper()[-CODICE_FISCALE_FACTOR_LENGTH:]


def _given(value: str, kind: str) -> str:
    if kind == "birth_date":
        return _normalise_date(value)
    return "".join(char for char in (value or "") if char.isalnum()).upper()


def check_factor(*, link: SecureLink, value: str) -> tuple[bool, LinkState]:
    """Check the second factor: ``(True, OPEN)`` when right and the link usable, otherwise
    ``(False, state the link is left in)`` (a wrong factor is counted, throttled, then
    locks)."""
    with transaction.atomic():
        locked = (
            SecureLink.objects.select_for_update()
            .select_related("delivery__patient")
            .get(pk=link.pk)
        )
        now = timezone.now()
        current = state(locked, now=now)
        if current != LinkState.OPEN:
            return False, current
        patient = locked.delivery.patient
        kind = second_factor_kind(patient)
        expected = _expected(patient, kind)
        given = _given(value, kind)
        if expected and given and hmac.compare_digest(expected, given):
            if locked.failed_attempts:
                SecureLink.objects.filter(pk=locked.pk).update(failed_attempts=0, retry_after=None)
            return True, LinkState.OPEN
        failures = locked.failed_attempts + 1
        changes: dict[str, object] = {"failed_attempts": failures}
        if failures >= conf.secure_link_max_attempts():
            changes["locked_at"] = now
            result = LinkState.LOCKED
        elif failures >= THROTTLE_AFTER:
            changes["retry_after"] = now + datetime.timedelta(seconds=THROTTLE_SECONDS)
            result = LinkState.WAIT
        else:
            result = LinkState.OPEN
        SecureLink.objects.filter(pk=locked.pk).update(**changes)
    if result == LinkState.LOCKED:
        lifecycle.note(
            link.delivery,
            kind=EventKind.SECURE_LINK,
            text=gettext_noop("Link sicuro bloccato dopo troppi tentativi errati."),
        )
    return False, result


def attempts_left(link: SecureLink) -> int:
    return max(conf.secure_link_max_attempts() - link.failed_attempts, 0)


def record_download(*, link: SecureLink) -> None:
    """Count a download; the first one goes on the delivery's timeline."""
    now = timezone.now()
    first = SecureLink.objects.filter(pk=link.pk, downloaded_at__isnull=True).update(
        downloaded_at=now, downloads=F("downloads") + 1
    )
    if not first:
        SecureLink.objects.filter(pk=link.pk).update(downloads=F("downloads") + 1)
        return
    lifecycle.note(
        link.delivery,
        kind=EventKind.SECURE_LINK,
        text=EventText(
            gettext_noop("Fattura scaricata dal paziente il %(when)s."),
            {"when": format_datetime(now)},
        ),
    )


def revoke(*, delivery: Delivery) -> SecureLink:
    """End the delivery's link now; :class:`ActionNotAllowed` when it has none or it is
    already revoked."""
    link = SecureLink.objects.filter(delivery=delivery).first()
    if link is None or link.revoked_at is not None:
        raise ActionNotAllowed("no link to revoke")
    SecureLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
    lifecycle.note(
        delivery,
        kind=EventKind.SECURE_LINK,
        text=gettext_noop("Link sicuro revocato dal professionista."),
    )
    link.refresh_from_db()
    return link
