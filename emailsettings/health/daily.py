"""The daily health check of the practitioners' own mailboxes, and the notice after a batch.

Once a day (beat) every mailbox in use (the practitioner sends through it) is checked as
"Verifica connessione" does (log in, sender and recipient, nothing sent), and read over IMAP
when "Leggi le risposte" is on. A configuration failure marks the mailbox "da correggere"
before an invoice fails (its pending invoices are held, the banner shows it) and the
practitioner gets one email a day about it (:mod:`emailsettings.health.alerts`). The same email,
by the same rule, follows a batch that ended with held or failed invoices — unless what failed
is a recipient's address (refused, bounced, suspended): then the notice says the mailbox works
and the patient card's address is what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from emailsettings.exceptions import ImapError
from emailsettings.failures import ErrorClass
from emailsettings.guidance import Advice, advice
from emailsettings.health.alerts import alert_practitioner, notify_refused_recipients
from emailsettings.health.verify import verify_mailbox
from emailsettings.mailbox.imap import open_for_account
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings, SmtpAccount

logger = logging.getLogger(__name__)


def accounts_in_use() -> list[int]:
    """Mailboxes their practitioner sends invoices through."""
    practitioners = EmailSettings.objects.filter(channel=Channel.SMTP).values("practitioner_id")
    return list(
        SmtpAccount.objects.filter(practitioner_id__in=practitioners).values_list("pk", flat=True)
    )


def _imap_problem(account: SmtpAccount) -> str:
    try:
        client = open_for_account(account)
    except ImapError as err:
        return str(err)
    client.logout()
    return ""


def check_account(account: SmtpAccount) -> bool:
    """Check one mailbox; whether it is fine. Alerts the practitioner when it is not."""
    result = verify_mailbox(account=account)
    failure = result.failure
    if failure is not None and failure.is_configuration_error:
        tip = advice(
            error_class=failure.error_class,
            preset_key=account.preset,
            code=failure.code,
            enhanced=failure.enhanced,
            reply=failure.reply,
            port=account.port,
        )
        alert_practitioner(
            account,
            advice=tip,
            lead=_(
                "Il controllo giornaliero della tua casella %(email)s non è riuscito: le "
                "fatture che la usano restano in attesa finché non la correggi."
            )
            % {"email": account.email},
        )
        return False
    if account.imap_enabled:
        problem = _imap_problem(account)
        if problem:
            SmtpAccount.objects.filter(pk=account.pk).update(imap_error=problem[:300])
            alert_practitioner(
                account,
                advice=Advice(
                    title=_("La lettura della casella non riesce"),
                    text=problem,
                    steps=(_("Controlla il server IMAP e la password nelle impostazioni."),),
                ),
                lead=_(
                    "PsicoGest non riesce a leggere gli avvisi di mancata consegna dalla tua "
                    "casella %(email)s."
                )
                % {"email": account.email},
            )
            return False
    return result.ok or failure is None or not failure.is_configuration_error


# A recipient's address is wrong: the patient card is what needs attention, not the mailbox.
RECIPIENT_CLASSES = frozenset(
    {
        ErrorClass.RECIPIENT_REFUSED,
        ErrorClass.ADDRESS_UNSUPPORTED,
        ErrorClass.MAILBOX_FULL,
        ErrorClass.BOUNCED,
        ErrorClass.SUPPRESSED,
    }
)


def after_batch(delivery_ids: list[int], *, attempted: Collection[int] = ()) -> None:
    """A batch ended with held or failed invoices of a personal mailbox: the practitioner is
    told what needs attention — the mailbox (a refused login, a held queue: the daily alert)
    or the recipients' addresses (a 5.1.1 refusal: the patient card, not the mailbox). An
    address is told about once: only for the rows this batch attempted (``attempted``), not
    for a refusal an earlier batch already reported."""
    stuck = list(
        Delivery.objects.filter(
            pk__in=delivery_ids,
            channel=Channel.SMTP,
            status__in=(DeliveryStatus.HELD, DeliveryStatus.FAILED),
        ).values_list("pk", "practitioner_id", "invoice_id", "status", "last_error_class")
    )
    if not stuck:
        return
    account = SmtpAccount.objects.filter(practitioner_id=stuck[0][1]).first()
    if account is None:
        return
    tried = set(attempted)
    refused = {
        invoice
        for pk, _p, invoice, status, error in stuck
        if error in RECIPIENT_CLASSES and pk in tried
    }
    mailbox = {
        invoice for _pk, _p, invoice, status, error in stuck if error not in RECIPIENT_CLASSES
    }
    if mailbox:
        count = len(mailbox)
        alert_practitioner(
            account,
            advice=Advice(
                title=ngettext(
                    "%(count)s fattura non è partita", "%(count)s fatture non sono partite", count
                )
                % {"count": count},
                text=_("Nell'Elenco invii email trovi il motivo di ciascuna e cosa fare."),
                steps=(),
            ),
            lead=_("Alcune fatture inviate con la tua casella %(email)s non sono partite.")
            % {"email": account.email},
        )
    if refused:
        count = len(refused)
        notify_refused_recipients(
            practitioner_email=account.practitioner.email,
            advice=Advice(
                title=ngettext(
                    "%(count)s fattura non è partita: il server del destinatario ha rifiutato "
                    "l'indirizzo",
                    "%(count)s fatture non sono partite: il server dei destinatari ha rifiutato "
                    "gli indirizzi",
                    count,
                )
                % {"count": count},
                text=_(
                    "La tua casella %(email)s funziona: è l'indirizzo email del paziente (o di "
                    "un altro destinatario) a non esistere o a non accettare posta."
                )
                % {"email": account.email},
                steps=(
                    _("Apri l'invio nell'Elenco invii email e premi «Correggi l'indirizzo»."),
                    _("Scrivi l'indirizzo giusto (chiedilo al paziente se serve) e reinvia."),
                ),
            ),
            lead=_("Alcune fatture non sono partite per un indirizzo del destinatario."),
        )
