"""The "your mailbox needs attention" email to the practitioner, and the notice that a
recipient refused an invoice (the mailbox is fine then: the address is not).

Sent through the platform's own sender as a notice (:mod:`.notices`: ``EMAIL_BACKEND``,
``EMAILSETTINGS_NOTICE_FROM`` and the notices' own ESP stream), never through the mailbox
that is failing, to the practitioner's own address, at most once a day per mailbox
(``SmtpAccount.alerted_at``, claimed with a conditional update so two workers never both
send it). It says what is
wrong in plain Italian, what to do, and links to the settings page; it carries no patient
data and no secret.
"""

from __future__ import annotations

import datetime
import logging

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.guidance import Advice
from emailsettings.health.notices import notice_message
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


def _send(*, to: str, subject: str, lines: list[str]) -> None:
    notice_message(to=to, subject=subject, body="\n".join(lines)).send()


def _advice_lines(lead: str, advice: Advice) -> list[str]:
    lines = [lead, "", advice.title, advice.text]
    lines += [f"{number}. {step}" for number, step in enumerate(advice.steps, start=1)]
    return lines


def alert_practitioner(account: SmtpAccount, *, advice: Advice, lead: str) -> bool:
    """Email the practitioner about ``account`` unless already done in the last day."""
    now = timezone.now()
    if not _claim(account, now):
        return False
    link = conf.site_url() + reverse("emailsettings:settings") + "#smtp"
    lines = _advice_lines(lead, advice) + [
        "",
        _("Apri le impostazioni email: %(link)s") % {"link": link},
        "",
        _("Ricevi questo avviso al massimo una volta al giorno per questa casella."),
    ]
    try:
        _send(
            to=account.practitioner.email,
            subject=_("La tua casella %(email)s ha bisogno di attenzione")
            % {"email": account.email},
            lines=lines,
        )
    except Exception:  # logged; the next day's check tries again
        logger.exception("Mailbox alert for account %s could not be sent", account.pk)
        SmtpAccount.objects.filter(pk=account.pk, alerted_at=now).update(alerted_at=None)
        return False
    logger.info("Mailbox alert sent for account %s", account.pk)
    return True


def notify_refused_recipients(*, practitioner_email: str, advice: Advice, lead: str) -> bool:
    """Tell the practitioner that invoices of a batch did not go because of their recipients'
    addresses: the mailbox works, so it neither says it does not nor uses up its daily alert.
    One per batch; no patient data (the report names them)."""
    link = conf.site_url() + reverse("emailsettings:deliveries") + "?status=failed&status=bounced"
    lines = _advice_lines(lead, advice) + [
        "",
        _("Apri l'Elenco invii email: %(link)s") % {"link": link},
    ]
    try:
        _send(
            to=practitioner_email,
            subject=_("Un indirizzo email da correggere: la fattura non è partita"),
            lines=lines,
        )
    except Exception:  # logged; the report shows the failure anyway
        logger.exception("Refused-recipient notice could not be sent")
        return False
    return True
