"""Advice for what happened to a delivery rather than to a mailbox: the answers and
tracking events of Smart Mail, bounces read back, the outbox's own outcomes (suppressed,
expired, a worker that crashed…), and a reply nobody recognised."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from emailsettings.failures import ErrorClass
from emailsettings.guidance.base import Advice, sentence
from emailsettings.guidance.reputation import held_advice


def smart_mail(error_class: str, code: int | None) -> Advice | None:
    """The outcomes only Smart Mail has (the ESP's answer and its tracking events, bounces
    aside), and the Smart Mail wording of the shared ones; ``None`` for the rest."""
    if error_class == ErrorClass.REPUTATION_HOLD:
        return held_advice()
    if error_class == ErrorClass.COMPLAINED:
        return Advice(
            title=str(_("Il destinatario l'ha segnalata come spam")),
            text=str(
                _(
                    "Il paziente, o il suo programma di posta, ha segnalato il messaggio come "
                    "spam. Per proteggere la reputazione degli invii l'indirizzo è stato sospeso."
                )
            ),
            steps=(
                str(_("Senti il paziente prima di inviargli altre fatture per email.")),
                str(_("Se è d'accordo, riattiva l'indirizzo.")),
            ),
        )
    if error_class in (ErrorClass.ESP_REJECTED, ErrorClass.RECIPIENT_REFUSED):
        return Advice(
            title=str(_("Rifiutata dal servizio di invio")),
            text=str(
                _(
                    "Il servizio di invio di Smart Mail non ha spedito il messaggio a questo "
                    "indirizzo: di solito perché l'indirizzo è stato bloccato dopo un rimbalzo "
                    "o rifiutato dalla politica del dominio del destinatario."
                )
            ),
            steps=(str(_("Controlla l'indirizzo email nella scheda del paziente.")),),
        )
    if error_class == ErrorClass.ESP_FAILED:
        return Advice(
            title=str(_("Il servizio di invio non è riuscito a spedirla")),
            text=str(
                _(
                    "Il servizio di invio di Smart Mail ha segnalato un errore nello spedire il "
                    "messaggio. La risposta esatta è nei dettagli tecnici."
                )
            ),
            steps=(str(_("Reinvia la fattura; se l'errore si ripete, contatta l'assistenza.")),),
        )
    if error_class in (ErrorClass.TEMPORARY, ErrorClass.RATE_LIMITED, ErrorClass.TIMEOUT):
        return Advice(
            title=str(_("Servizio di invio momentaneamente non disponibile")),
            text=str(
                _(
                    "Il servizio di invio di Smart Mail ha segnalato un problema temporaneo: "
                    "PsicoGest riproverà da solo."
                )
            ),
        )
    if error_class == ErrorClass.CONNECTION_FAILED:
        return Advice(
            title=str(_("Servizio di invio non raggiungibile")),
            text=str(
                _(
                    "PsicoGest non è riuscito a collegarsi al servizio di invio di Smart Mail: "
                    "riproverà da solo."
                )
            ),
        )
    return None


def bounce(error_class: str) -> Advice | None:
    """A bounce: reported by Smart Mail's service, or read from the practitioner's own
    mailbox (a delivery status notification), worded alike."""
    if error_class == ErrorClass.BOUNCED:
        return Advice(
            title=str(_("Rimbalzata: il destinatario non accetta il messaggio")),
            text=str(
                _(
                    "Il server del destinatario ha risposto che l'indirizzo non esiste o non "
                    "accetta posta. L'indirizzo è stato sospeso: le prossime fatture non gli "
                    "verranno inviate finché non lo correggi o lo riattivi."
                )
            ),
            steps=(
                str(_("Controlla l'indirizzo email nella scheda del paziente.")),
                str(_("Poi riattiva l'indirizzo e reinvia la fattura.")),
            ),
        )
    if error_class == ErrorClass.SOFT_BOUNCE:
        return Advice(
            title=str(_("Rimbalzo temporaneo")),
            text=str(
                _(
                    "Il server del destinatario non ha accettato il messaggio per un motivo "
                    "temporaneo, per esempio la casella piena. L'indirizzo non è stato sospeso."
                )
            ),
            steps=(str(_("Se il problema continua, avvisa il paziente.")),),
        )
    return None


def outbox(error_class: str, *, channel: str | None) -> Advice | None:
    """Outcomes decided by the outbox itself, the same on both channels."""
    found = bounce(error_class)
    if found is not None:
        return found
    if error_class == ErrorClass.SUPPRESSED:
        return Advice(
            title=str(_("Indirizzo sospeso")),
            text=str(
                _(
                    "Questo indirizzo in passato è rimbalzato o ha segnalato una fattura come "
                    "spam: PsicoGest non gli invia altre fatture finché non lo riattivi."
                )
            ),
            steps=(
                str(_("Controlla l'indirizzo nella scheda del paziente.")),
                str(_("Poi riattivalo e reinvia.")),
            ),
        )
    if error_class == ErrorClass.EXPIRED:
        return Advice(
            title=str(_("Tentativi esauriti")),
            text=str(
                _(
                    "Per troppo tempo il server ha risposto solo con errori temporanei: "
                    "PsicoGest ha smesso di riprovare. L'ultima risposta è nei dettagli tecnici."
                )
            ),
            steps=(str(_("Quando il problema è risolto, usa «Reinvia».")),),
            suggest_smart_mail=channel == "smtp",
        )
    if error_class == ErrorClass.INTERNAL_ERROR:
        return Advice(
            title=str(_("Errore interno di PsicoGest")),
            text=str(
                _(
                    "Un errore imprevisto ha interrotto l'invio prima che il messaggio partisse: "
                    "è stato segnalato all'assistenza e PsicoGest riprova per qualche volta."
                )
            ),
        )
    if error_class == ErrorClass.LOCAL_STORAGE:
        return Advice(
            title=str(_("Disco del servizio pieno")),
            text=str(
                _(
                    "Il disco del servizio PsicoGest non ha più spazio (o non è scrivibile): il "
                    "messaggio non è partito. Non dipende dalla tua casella né dal paziente: "
                    "PsicoGest riprova da solo appena c'è spazio."
                )
            ),
            steps=(str(_("Se il problema dura, avvisa l'assistenza o chi gestisce il server.")),),
        )
    if error_class == ErrorClass.WORKER_CRASHED:
        return Advice(
            title=str(_("Invio interrotto più volte")),
            text=str(
                _(
                    "L'invio di questo messaggio si è interrotto più volte prima che partisse: "
                    "PsicoGest ha smesso di riprovare e lo ha segnalato all'assistenza. Il "
                    "messaggio non è partito."
                )
            ),
            steps=(str(_("Puoi riprovare con «Reinvia».")),),
        )
    if error_class == ErrorClass.NO_MAILBOX:
        return Advice(
            title=str(_("Nessuna casella SMTP configurata")),
            text=str(_("La fattura doveva partire dalla tua casella, che non è più configurata.")),
            steps=(
                str(_("Configura la casella in Impostazioni email, oppure invia con Smart Mail.")),
            ),
            suggest_smart_mail=True,
        )
    return None


def unknown(name: str, *, after_data: bool) -> Advice:
    if after_data:
        return Advice(
            title=str(_("Esito sconosciuto")),
            text=str(
                _(
                    "Il messaggio è stato consegnato al server ma la risposta non è arrivata: "
                    "potrebbe essere partito. Non viene reinviato da solo."
                )
            ),
            steps=(str(_("Chiedi al paziente se l'ha ricevuto prima di reinviarlo.")),),
        )
    return Advice(
        title=str(_("Invio non riuscito")),
        text=sentence(
            str(
                _(
                    "%(provider)s ha rifiutato l'operazione con una risposta non riconosciuta. "
                    "Trovi la risposta esatta nei dettagli tecnici."
                )
                % {"provider": name}
            )
        ),
        steps=(
            str(_("Controlla le impostazioni e verifica di nuovo.")),
            str(_("Se l'errore persiste, usa Smart Mail.")),
        ),
    )
