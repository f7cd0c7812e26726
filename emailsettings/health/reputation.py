"""The effects of the Smart Mail reputation guard (:mod:`emailsettings.smartmail.reputation`):

- *a rischio*: one email to the practitioner with the numbers and what to do (the banner
  reads the stored state);
- *sospeso*: their waiting Smart Mail deliveries are held
  (:mod:`emailsettings.outbox.reputationhold`) and they get an email saying so; invoices
  through their own mailbox are never limited;
- the operator's lift (Django admin, with a note): recorded as a
  :class:`~emailsettings.models.ReputationLift`, rates counted afresh, the held rows queued
  again.

:func:`check_reputation` runs from the periodic task; the notices leave through
:mod:`.notices` (their own stream), never through the practitioner's invoices' identity.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.guidance.reputation import COMPLAINTS, state_advice
from emailsettings.health.notices import notice_message
from emailsettings.models import Reputation, ReputationLift, ReputationState
from emailsettings.outbox import reputationhold
from emailsettings.smartmail import reputation
from emailsettings.smartmail.reputation import Change
from psicogest.models import Practitioner

logger = logging.getLogger(__name__)


def check_reputation(*, practitioner_ids: list[int] | None = None) -> list[Change]:
    """Measure every practitioner (or those given), store their states and act on the
    changes: hold a newly suspended practitioner's Smart Mail queue, email the
    practitioner once per state reached."""
    changes = reputation.refresh(practitioner_ids=practitioner_ids)
    for change in changes:
        if change.after == ReputationState.SUSPENDED:
            held = reputationhold.hold_smart_mail(practitioner_id=change.practitioner_id)
            logger.warning(
                "Smart Mail suspended for practitioner %s (%s): %s deliveries held",
                change.practitioner_id,
                change.verdict.reason,
                held,
            )
            _notify(change.practitioner_id)
        elif change.after == ReputationState.AT_RISK:
            logger.info("Smart Mail reputation at risk for practitioner %s", change.practitioner_id)
            if reputation.claim_warning(practitioner_id=change.practitioner_id):
                _notify(change.practitioner_id)
    return changes


def _notify(practitioner_id: int) -> bool:
    row = Reputation.objects.select_related("practitioner").get(practitioner_id=practitioner_id)
    practitioner = row.practitioner
    advice = state_advice(
        state=row.state,
        reason=row.reason,
        count=row.complained if row.reason == COMPLAINTS else row.bounced,
        recipients=row.recipients,
        days=row.window_days,
    )
    link = conf.site_url() + reverse("emailsettings:reputation")
    lines = [advice.text, "", _("Cosa fare:")]
    lines += [f"{number}. {step}" for number, step in enumerate(advice.steps, start=1)]
    lines += ["", _("I dettagli e i pulsanti sono qui: %(link)s") % {"link": link}]
    message = notice_message(
        to=practitioner.email, subject=f"PsicoGest: {advice.title}", body="\n".join(lines)
    )
    try:
        message.send()
    except Exception:  # logged; the banner still says it, and the state stays
        logger.exception("Reputation notice for practitioner %s could not be sent", practitioner_id)
        return False
    return True


def lift_suspension(*, practitioner: Practitioner, by: Practitioner | None, note: str) -> bool:
    """The operator lifts the practitioner's suspension, with a note: audited, rates counted
    afresh from now, the held Smart Mail deliveries queued again. False when the
    practitioner was not suspended."""
    note = note.strip()
    if not note:
        raise ValueError("a lift needs a note")
    with transaction.atomic():
        numbers = reputation.lift(practitioner_id=practitioner.pk)
        if numbers is None:
            return False
        ReputationLift.objects.create(
            practitioner=practitioner,
            lifted_by=by,
            note=note,
            numbers=numbers,
            created_at=timezone.now(),
        )
        released = reputationhold.release_held(practitioner_id=practitioner.pk)
    logger.warning(
        "Smart Mail suspension of practitioner %s lifted by %s; %s deliveries released",
        practitioner.pk,
        by.pk if by is not None else None,
        released,
    )
    return True
