"""Advice for the failures of a practitioner's own mailbox over SMTP: its connection, and
what its server answered about the sender, the recipient and the message (the refused
logins are in :mod:`.login`).
Most of it depends on the provider (Google/Microsoft family, where an app password is
created, sending limits): the provider facts live on the presets (``presets.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from emailsettings.failures import ErrorClass
from emailsettings.guidance.base import Advice, family_of, has, sentence
from emailsettings.guidance.login import login_advice
from emailsettings.mailbox.presets import get_preset, provider_from_reply

if TYPE_CHECKING:
    from emailsettings.mailbox.presets import Preset


def provider_of(preset_key: str | None, reply: str) -> Preset | None:
    """The provider, from the preset or, for a custom server, from the reply's wording."""
    preset = get_preset(preset_key)
    if preset is not None and preset.key not in ("custom", "local"):
        return preset
    return provider_from_reply(reply)


def _certificate(provider: Preset | None) -> Advice:
    steps = [
        str(_("Controlla che il server SMTP sia scritto esattamente come lo indica il provider."))
    ]
    if provider is not None and provider.host:
        steps.append(str(_("Per questo provider il server è %(host)s.") % {"host": provider.host}))
    return Advice(
        title=str(_("Il certificato del server non è valido")),
        text=str(
            _(
                "Il server ha presentato un certificato che non corrisponde al suo nome o "
                "non è firmato da un'autorità riconosciuta: per proteggere la tua password "
                "PsicoGest non prosegue."
            )
        ),
        steps=tuple(steps),
    )


def _security_mismatch() -> Advice:
    return Advice(
        title=str(_("Porta e sicurezza non corrispondono")),
        text=str(
            _(
                "La connessione protetta non è riuscita: di solito la porta non corrisponde "
                "al tipo di sicurezza scelto."
            )
        ),
        steps=(
            str(_("Usa la porta 465 con SSL/TLS, oppure la porta 587 con STARTTLS.")),
            str(_("Salva e verifica di nuovo.")),
        ),
    )


def _destination_unusable(provider: Preset | None, name: str) -> Advice:
    """A name that does not exist and a name that points somewhere PsicoGest does not
    connect to read the same: the advice must not tell which internal names resolve."""
    steps = [str(_("Inserisci il server SMTP pubblico indicato dal tuo provider."))]
    if provider is not None and provider.host:
        steps.append(
            str(
                _("Per %(provider)s il server è %(host)s.")
                % {"provider": name, "host": provider.host}
            )
        )
    return Advice(
        title=str(_("Server non trovato o non consentito")),
        text=str(
            _(
                "PsicoGest non trova un server SMTP pubblico con questo nome: controlla di "
                "averlo scritto come lo indica il provider. Per sicurezza PsicoGest si collega "
                "solo a server pubblici, sulle porte 465, 587, 2525 o 25."
            )
        ),
        steps=tuple(steps),
    )


def _unreachable(error_class: str, provider: Preset | None, name: str, port: int | None) -> Advice:
    steps = [str(_("Controlla il nome del server SMTP e la porta."))]
    if provider is not None and provider.host:
        steps.append(
            str(
                _("Per %(provider)s il server è %(host)s.")
                % {"provider": name, "host": provider.host}
            )
        )
    if port == 25:
        steps.append(
            str(_("La porta 25 è spesso bloccata: usa la 587 (STARTTLS) o la 465 (SSL/TLS)."))
        )
    elif port is not None and port not in (465, 587):
        steps.append(str(_("Di solito la porta è 587 (STARTTLS) o 465 (SSL/TLS).")))
    if error_class == ErrorClass.TIMEOUT:
        steps.append(
            str(
                _(
                    "Se il server è corretto, potrebbe essere momentaneamente lento: "
                    "riprova più tardi."
                )
            )
        )
        return Advice(
            title=str(_("Il server non risponde")),
            text=str(_("Il server SMTP non ha risposto in tempo.")),
            steps=tuple(steps),
        )
    return Advice(
        title=str(_("Server non raggiungibile")),
        text=str(
            _(
                "Non è stato possibile collegarsi al server SMTP (connessione rifiutata o "
                "assente). PsicoGest riprova da solo più tardi."
            )
        ),
        steps=tuple(steps),
    )


def _sender_refused(provider: Preset | None, name: str, enhanced: str, reply: str) -> Advice:
    family = family_of(provider)
    if enhanced == "5.7.57" or has(reply, "Client not authenticated"):
        return Advice(
            title=str(_("Il server chiede l'autenticazione")),
            text=str(_("Microsoft non ha ricevuto l'accesso prima dell'invio.")),
            steps=(
                str(_("Usa il server smtp.office365.com, porta 587, STARTTLS.")),
                str(_("Inserisci nome utente e password e verifica di nuovo.")),
            ),
        )
    if has(reply, "Relay Disabled") or (
        provider is not None and provider.key == "libero" and has(reply, "relay")
    ):
        return Advice(
            title=str(_("Server sbagliato per questo indirizzo")),
            text=str(_("Il server non accetta di inviare per il tuo indirizzo (Relay Disabled).")),
            steps=(str(_("Per un indirizzo Libero usa il server smtp.libero.it.")),),
        )
    steps = [str(_("Come indirizzo email usa la stessa casella con cui accedi."))]
    if provider is not None and provider.key in ("aruba", "aruba_pec"):
        steps.append(str(_("Oppure autorizza l'alias nella Webmail di Aruba.")))
    elif family == "microsoft":
        steps.append(str(_('Oppure chiedi al reparto IT il permesso "Invia come" (Send As).')))
    return Advice(
        title=str(_("Mittente non consentito")),
        text=str(
            _(
                "%(provider)s non consente di inviare con questo indirizzo come mittente: di "
                "solito deve coincidere con la casella con cui accedi."
            )
            % {"provider": name}
        ),
        steps=tuple(steps),
    )


def _message_rejected(enhanced: str, reply: str) -> Advice:
    if enhanced in ("5.7.26", "5.7.515") or has(reply, "DMARC", "SPF", "DKIM"):
        return Advice(
            title=str(_("Il destinatario rifiuta il dominio del mittente")),
            text=str(
                _(
                    "Il server del destinatario non riconosce il tuo dominio come autorizzato a "
                    "usare questo provider: mancano o sono errati i record SPF, DKIM o DMARC."
                )
            ),
            steps=(
                str(_("Chiedi a chi gestisce il tuo dominio di configurare SPF, DKIM e DMARC.")),
                str(_("Nel frattempo invia con Smart Mail.")),
            ),
            suggest_smart_mail=True,
        )
    return Advice(
        title=str(_("Messaggio rifiutato")),
        text=str(
            _("Il server ha rifiutato il messaggio. La risposta esatta è nei dettagli tecnici.")
        ),
        steps=(str(_("Se l'errore persiste, invia con Smart Mail.")),),
        suggest_smart_mail=True,
    )


def _rate_limited(provider: Preset | None, name: str, enhanced: str, reply: str) -> Advice:
    if has(reply, "Too many login attempts"):
        return Advice(
            title=str(_("Troppi tentativi di accesso")),
            text=str(
                _("%(provider)s ha bloccato temporaneamente gli accessi dopo troppi tentativi.")
                % {"provider": name}
            ),
            steps=(
                str(_("Nel frattempo controlla che la password sia corretta.")),
                str(_("Riprova tra qualche minuto.")),
            ),
        )
    if enhanced == "5.4.5" or has(reply, "Daily user sending limit"):
        return Advice(
            title=str(_("Raggiunto il limite giornaliero di %(provider)s") % {"provider": name}),
            text=str(_("Oggi la tua casella ha inviato il numero massimo di messaggi consentito.")),
            steps=(
                str(_("Le fatture rimanenti possono partire domani.")),
                str(_("Oppure invia questo gruppo con Smart Mail.")),
            ),
            suggest_smart_mail=True,
        )
    detail = (provider.rate_note if provider is not None else "") or _(
        "Il provider limita il numero di messaggi in un certo intervallo."
    )
    return Advice(
        title=str(_("Troppi invii in poco tempo")),
        text=str(detail),
        steps=(str(_("PsicoGest rallenta e riprova da solo più tardi.")),),
    )


def smtp_advice(
    error_class: str,
    *,
    provider: Preset | None,
    name: str,
    code: int | None,
    enhanced: str,
    reply: str,
    port: int | None,
) -> Advice | None:
    """The advice for a mailbox failure of ``error_class`` with ``provider`` (``name``: how
    the text calls it); ``None`` for a class that is not a mailbox's."""
    title_name = sentence(name)
    found = login_advice(
        error_class, provider=provider, name=name, title_name=title_name, reply=reply
    )
    if found is not None:
        return found
    if error_class == ErrorClass.STARTTLS_MISSING:
        return Advice(
            title=str(_("Il server non offre una connessione protetta su questa porta")),
            text=str(
                _(
                    "Il server non ha proposto STARTTLS, quindi PsicoGest non ha inviato la "
                    "password (non viene mai trasmessa in chiaro)."
                )
            ),
            steps=(
                str(_("Usa la porta 587 con STARTTLS, oppure la porta 465 con SSL/TLS.")),
                str(_("Salva e verifica di nuovo.")),
            ),
        )
    if error_class == ErrorClass.CERTIFICATE_INVALID:
        return _certificate(provider)
    if error_class == ErrorClass.TLS_FAILED:
        return _security_mismatch()
    if error_class in (ErrorClass.CONNECTION_FAILED, ErrorClass.TIMEOUT):
        return _unreachable(error_class, provider, name, port)
    if error_class in (ErrorClass.DESTINATION_REFUSED, ErrorClass.HOST_NOT_FOUND):
        return _destination_unusable(provider, name)
    if error_class == ErrorClass.SENDER_REFUSED:
        return _sender_refused(provider, title_name, enhanced, reply)
    if error_class == ErrorClass.RECIPIENT_REFUSED:
        return Advice(
            title=str(_("Indirizzo del destinatario inesistente")),
            text=str(
                _("Il server ha risposto che la casella del destinatario non esiste (%(code)s).")
                % {"code": " ".join(filter(None, (str(code or ""), enhanced))) or "550"}
            ),
            steps=(str(_("Controlla l'indirizzo email nella scheda del paziente.")),),
        )
    if error_class == ErrorClass.ADDRESS_UNSUPPORTED:
        return Advice(
            title=str(_("Indirizzo non supportato dalla tua casella")),
            text=str(
                _(
                    "L'indirizzo del destinatario ha lettere accentate o caratteri speciali "
                    "prima della @, e il server della tua casella non accetta questi indirizzi "
                    "(manca il supporto SMTPUTF8)."
                )
            ),
            steps=(
                str(_("Controlla l'indirizzo email nella scheda del paziente.")),
                str(_("Se è corretto, invia questa fattura con Smart Mail.")),
            ),
            suggest_smart_mail=True,
        )
    if error_class == ErrorClass.MAILBOX_FULL:
        temporary = (code or 0) < 500 and not enhanced.startswith("5.")
        return Advice(
            title=str(_("Casella del destinatario piena")),
            text=str(
                _("La casella del destinatario è piena: PsicoGest riproverà automaticamente.")
                if temporary
                else _("La casella del destinatario è piena e non accetta altri messaggi.")
            ),
            steps=(str(_("Avvisa il paziente o invia la fattura in un altro modo.")),),
        )
    if error_class == ErrorClass.MESSAGE_REJECTED:
        return _message_rejected(enhanced, reply)
    if error_class == ErrorClass.RATE_LIMITED:
        return _rate_limited(provider, title_name, enhanced, reply)
    if error_class == ErrorClass.GREYLISTED:
        return Advice(
            title=str(_("Invio rimandato dal destinatario")),
            text=str(
                _(
                    "Il server del destinatario chiede di riprovare più tardi (greylisting): è "
                    "normale con i mittenti nuovi. PsicoGest riprova da solo."
                )
            ),
        )
    if error_class == ErrorClass.TEMPORARY:
        return Advice(
            title=str(_("Errore temporaneo")),
            text=str(
                _("%(provider)s ha segnalato un problema temporaneo: PsicoGest riproverà da solo.")
                % {"provider": title_name}
            ),
        )
    return None
