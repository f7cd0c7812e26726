"""After "Riattiva indirizzo" on a Smart Mail row that hard-bounced: lift the ESP's own
suppression of the address too (:mod:`emailsettings.smartmail.espsuppression`) and tell the
practitioner, in Italian, what happened there — cleared, failed, or not possible from
PsicoGest with this ESP."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.utils.translation import gettext as _

from emailsettings.models import Channel, Delivery, DeliveryStatus
from emailsettings.smartmail.espsuppression import Outcome, clear_bounce


def reactivate_at_esp(request: HttpRequest, delivery: Delivery) -> Outcome | None:
    """Only for a Smart Mail row that hard-bounced: a complaint stays suppressed at the ESP,
    and a personal-mailbox bounce was never the ESP's."""
    if delivery.channel != Channel.SMART_MAIL or delivery.status != DeliveryStatus.BOUNCED:
        return None
    result = clear_bounce(address=delivery.recipient)
    if result.outcome is Outcome.CLEARED:
        messages.info(
            request,
            _("Riattivato anche presso il servizio di invio di Smart Mail (%(esp)s).")
            % {"esp": result.esp_label},
        )
    elif result.outcome is Outcome.FAILED:
        messages.warning(
            request,
            _(
                "Il servizio di invio di Smart Mail (%(esp)s) non ha risposto: l'indirizzo "
                "potrebbe essere ancora bloccato lì. Riprova tra qualche minuto."
            )
            % {"esp": result.esp_label},
        )
    elif result.outcome is Outcome.NOT_SUPPORTED:
        messages.warning(
            request,
            _(
                "Il servizio di invio di Smart Mail (%(esp)s) non permette di riattivare "
                "l'indirizzo da PsicoGest: se la prossima fattura non parte, invia questa con "
                "la tua casella personale o chiedi allo staff di PsicoGest di sbloccarlo."
            )
            % {"esp": result.esp_label},
        )
    return result.outcome
