"""The "your mailbox needs attention" email to the practitioner.

Sent through the platform's own sender (Smart Mail: ``EMAIL_BACKEND`` and
``EMAILSETTINGS_PLATFORM_FROM``), never through the mailbox that is failing, to the
practitioner's own address, at most once a day per mailbox (``SmtpAccount.alerted_at``,
claimed with a conditional update so two workers never both send it). It says what is
wrong in plain Italian, what to do, and links to the settings page; it carries no patient
data and no secret.
"""

from __future__ import annotations

import datetime
import logging

from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.guidance import Advice
from emailsettings.models import SmtpAccount

logger = logging.getLogger(__name__)

ALERT_EVERY = datetime.timedelta(days=1)


def _claim(account: SmtpAccount, now: datetime.datetime) -> bool:
    cutoff = now - ALERT_EVERY
    claimed = (
        SmtpAccount.objects.filter(pk=account.pk)
        .filter(Q(alerted_at__isnull=True) | Q(alerted_at__lte=cutoff))
        .update(alerted_at=now)
    )
    return bool(claimed)


def alert_practitioner(account: SmtpAccount, *, advice: Advice, lead: str) -> bool:
    """Email the practitioner about ``account`` unless already done in the last day."""
    now = timezone.now()
    if not _claim(account, now):
        return False
    practitioner = account.practitioner
    link = conf.site_url() + reverse("emailsettings:settings") + "#smtp"
    lines = [lead, "", advice.title, advice.text]
    lines += [f"{number}. {step}" for number, step in enumerate(advice.steps, start=1)]
    lines += [
        "",
        _("Apri le impostazioni email: %(link)s") % {"link": link},
        "",
        _("Ricevi questo avviso al massimo una volta al giorno per questa casella."),
    ]
    message = EmailMessage(
        subject=_("La tua casella %(email)s ha bisogno di attenzione") % {"email": account.email},
        body="\n".join(lines),
        from_email=conf.platform_from(),
        to=[practitioner.email],
        connection=get_connection(),
    )
    try:
        message.send()
    except Exception:  # logged; the next day's check tries again
        logger.exception("Mailbox alert for account %s could not be sent", account.pk)
        SmtpAccount.objects.filter(pk=account.pk, alerted_at=now).update(alerted_at=None)
        return False
    logger.info("Mailbox alert sent for account %s", account.pk)
    return True
