"""The Italian words of the Smart Mail reputation guard: the numbers as a sentence («3
indirizzi su 41 rimbalzati negli ultimi 7 giorni»), what a state means and what to do. The
banner, the page, the emails and the report's advice for a held row all read them here."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from emailsettings.guidance.base import Advice
from emailsettings.models import ReputationState

COMPLAINTS = "complaints"


def percent(count: int, total: int) -> str:
    """``7,3%``: Italian decimal comma, one decimal."""
    value = 100 * count / total if total else 0.0
    return f"{value:.1f}".replace(".", ",") + "%"


def numbers_sentence(*, reason: str, count: int, recipients: int, days: int) -> str:
    """«3 indirizzi su 41 rimbalzati negli ultimi 7 giorni (7,3%)»."""
    if reason == COMPLAINTS:
        text = ngettext(
            "%(count)d destinatario su %(total)d ha segnalato le tue email come spam negli "
            "ultimi %(days)d giorni (%(rate)s)",
            "%(count)d destinatari su %(total)d hanno segnalato le tue email come spam negli "
            "ultimi %(days)d giorni (%(rate)s)",
            count,
        )
    else:
        text = ngettext(
            "%(count)d indirizzo su %(total)d rimbalzato negli ultimi %(days)d giorni (%(rate)s)",
            "%(count)d indirizzi su %(total)d rimbalzati negli ultimi %(days)d giorni (%(rate)s)",
            count,
        )
    return text % {
        "count": count,
        "total": recipients,
        "days": days,
        "rate": percent(count, recipients),
    }


def steps(reason: str) -> tuple[str, ...]:
    if reason == COMPLAINTS:
        return (
            _("Invia le fatture solo ai pazienti che le aspettano per email."),
            _(
                "Nel testo della mail di accompagnamento scrivi chiaramente chi sei e per "
                "quale prestazione è la fattura: una mail riconoscibile non viene segnalata."
            ),
            _("Senti i pazienti che hanno segnalato la mail prima di inviargliene altre."),
        )
    return (
        _(
            "Apri l'Elenco invii email, filtra per «rimbalzata» e correggi nella scheda del "
            "paziente gli indirizzi sbagliati o non più in uso."
        ),
        _("Non reinviare a caselle che non esistono più: chiedi al paziente l'indirizzo giusto."),
        _(
            "Se hai importato un vecchio elenco di pazienti, controlla gli indirizzi prima di "
            "inviare altre fatture."
        ),
    )


def state_advice(*, state: str, reason: str, count: int, recipients: int, days: int) -> Advice:
    """What the practitioner reads on the banner's page and in the email."""
    numbers = numbers_sentence(reason=reason, count=count, recipients=recipients, days=days)
    if state == ReputationState.SUSPENDED:
        return Advice(
            title=_("Smart Mail è sospeso per il tuo account"),
            text=_(
                "%(numbers)s. Smart Mail invia le fatture di tutti i professionisti dallo "
                "stesso servizio, che blocca tutti gli invii quando i rimbalzi o le "
                "segnalazioni superano una soglia: per proteggere anche gli altri, le tue "
                "fatture con Smart Mail sono trattenute (non perse). Puoi inviarle subito con "
                "la tua casella email personale, che non ha questo limite. Lo staff di "
                "PsicoGest riattiva Smart Mail dopo aver verificato con te gli indirizzi."
            )
            % {"numbers": numbers},
            steps=steps(reason),
        )
    return Advice(
        title=_("Troppi invii di Smart Mail non vanno a buon fine"),
        text=_(
            "%(numbers)s. Se la percentuale continua a salire Smart Mail verrà sospeso per il "
            "tuo account, per proteggere le consegne di tutti. Le fatture inviate con la tua "
            "casella personale non sono limitate."
        )
        % {"numbers": numbers},
        steps=steps(reason),
    )


def held_advice() -> Advice:
    """The report's advice for a row held by the suspension."""
    return Advice(
        title=_("Trattenuta: Smart Mail è sospeso per il tuo account"),
        text=_(
            "Troppi indirizzi sono rimbalzati o hanno segnalato le tue email come spam. La "
            "fattura non è persa: partirà quando Smart Mail sarà riattivato, oppure subito "
            "con la tua casella personale dalla pagina «Reputazione Smart Mail»."
        ),
    )
