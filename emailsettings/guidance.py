"""Italian advice for a classified failure (see smtp-errors.md): what happened and what to do.

The failure is classified once, where it happens (``emailsettings.smtp.classify``, the Smart
Mail sender, the webhook mapping): :func:`advice` reads its class and only picks a variant
by provider or wording within that class. Provider facts (Google/Microsoft family, where an
app password is created, sending limits) live on the presets (``emailsettings/presets.py``).
``ErrorClass`` is re-exported here for the callers that know it from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from .failures import ErrorClass

if TYPE_CHECKING:
    from .presets import Preset

__all__ = ["Advice", "ErrorClass", "advice", "provider_name"]


@dataclass(frozen=True)
class Advice:
    title: str
    text: str
    steps: tuple[str, ...] = ()
    # The failure is one Smart Mail avoids (password logins refused, domain policy).
    suggest_smart_mail: bool = False
    # The provider ("google", "microsoft") whose "Accedi con …" button solves it.
    suggest_oauth: str = ""


SUSPICIOUS_LOGIN_EXPLANATION = _(
    "Il tentativo di accesso arriva dai server di PsicoGest, che si trovano a Francoforte "
    "(Germania): per questo il provider può segnalarti un accesso sospetto dalla Germania. "
    "È PsicoGest: dichiaralo lecito seguendo le istruzioni del provider, altrimenti le "
    "fatture non potranno partire dalla tua casella."
)


def _provider(preset_key: str | None, reply: str) -> Preset | None:
    """The provider, from the preset or, for a custom server, from the reply's wording."""
    from .presets import get_preset, provider_from_reply

    preset = get_preset(preset_key)
    if preset is not None and preset.key not in ("custom", "local"):
        return preset
    return provider_from_reply(reply)


def provider_name(preset_key: str | None) -> str:
    from .presets import get_preset

    preset = get_preset(preset_key)
    if preset is None or preset.key in ("custom", "local"):
        return str(_("il tuo provider"))
    return str(preset.label)


def _has(reply: str, *needles: str) -> bool:
    lowered = reply.lower()
    return any(needle.lower() in lowered for needle in needles)


def _family(provider: Preset | None) -> str:
    return provider.family if provider is not None else ""


def _with_google_login(advice: Advice, provider: Preset | None) -> Advice:
    """For a Google mailbox, "Accedi con Google" avoids the app password altogether."""
    if _family(provider) != "google":
        return advice
    step = str(_('Oppure premi "Accedi con Google" qui sotto: non serve la password per le app.'))
    return replace(advice, steps=(*advice.steps, step), suggest_oauth="google")


def _app_password(provider: Preset | None, name: str) -> Advice:
    place = (provider.app_password_place if provider else "") or _(
        "nelle impostazioni di sicurezza"
    )
    return Advice(
        title=str(_("%(provider)s chiede una password per le app") % {"provider": name}),
        text=str(
            _(
                "Sul tuo account è attiva la verifica in due passaggi, quindi %(provider)s "
                "non accetta la password normale da un programma come PsicoGest."
            )
            % {"provider": name}
        ),
        steps=(
            str(_("Crea una password per le app %(place)s.") % {"place": place}),
            str(_("Incollala nel campo Password qui sotto e salva.")),
            str(_('Premi di nuovo "Verifica connessione".')),
        ),
    )


def _auth_failed(provider: Preset | None, name: str) -> Advice:
    family = _family(provider)
    if family == "google":
        return Advice(
            title=str(_("Gmail non accetta nome utente e password")),
            text=str(
                _(
                    "Google non accetta più la password dell'account dai programmi di posta: "
                    "serve una password per le app."
                )
            ),
            steps=(
                str(_("Come nome utente usa l'indirizzo Gmail completo.")),
                str(_("Attiva la verifica in due passaggi sul tuo account Google.")),
                str(_("Crea una password per le app su myaccount.google.com/apppasswords.")),
                str(_("Incollala nel campo Password, salva e verifica di nuovo.")),
            ),
        )
    if provider is not None and provider.app_password_on_535:
        return _app_password(provider, name)
    if provider is not None and provider.key == "libero":
        return Advice(
            title=str(_("Libero ha rifiutato la password")),
            text=str(
                _(
                    "Dopo molti invii ravvicinati Libero può far scadere la password per "
                    "sicurezza, oppure la password è cambiata."
                )
            ),
            steps=(
                str(_("Accedi a login.libero.it e, se richiesto, cambia la password.")),
                str(_("Inserisci qui la nuova password, salva e verifica di nuovo.")),
            ),
        )
    if family == "microsoft":
        return Advice(
            title=str(_("Microsoft ha rifiutato l'accesso")),
            text=str(
                _(
                    "Indirizzo o password non corretti, oppure sull'account è attiva "
                    "l'autenticazione a più fattori, che non consente l'accesso con la sola "
                    "password."
                )
            ),
            steps=(
                str(_("Controlla indirizzo e password.")),
                str(
                    _(
                        "Con l'autenticazione a più fattori chiedi al reparto IT una soluzione, "
                        "oppure usa Smart Mail."
                    )
                ),
            ),
            suggest_smart_mail=True,
        )
    return Advice(
        title=str(_("%(provider)s ha rifiutato nome utente o password") % {"provider": name}),
        text=str(
            _(
                "Il server ha risposto che le credenziali non sono valide. Molti provider "
                "chiedono una password per le app quando è attiva la verifica in due passaggi."
            )
        ),
        steps=(
            str(_("Controlla il nome utente (di solito l'indirizzo email completo).")),
            str(_("Reinserisci la password, salva e verifica di nuovo.")),
            str(
                _("Se hai la verifica in due passaggi, crea una password per le app e usa quella.")
            ),
        ),
    )


def _oauth_required(provider: Preset | None, name: str, reply: str) -> Advice:
    if _family(provider) == "google":
        return Advice(
            title=str(_("Google non consente l'accesso con password")),
            text=str(_("Google accetta da PsicoGest solo l'accesso con il tuo account Google.")),
            steps=(str(_('Premi "Accedi con Google" qui sotto e conferma l\'accesso.')),),
            suggest_oauth="google",
        )
    if _family(provider) != "microsoft" and provider is not None:
        return Advice(
            title=str(_("%(provider)s non consente l'accesso con password") % {"provider": name}),
            text=str(
                _(
                    "Questo provider accetta solo l'accesso OAuth dai programmi di posta, che "
                    "l'invio SMTP personale non usa."
                )
            ),
            steps=(str(_("Usa Smart Mail come modalità di invio.")),),
            suggest_smart_mail=True,
        )
    if _has(reply, "SmtpClientAuthentication is disabled"):
        return _smtp_auth_disabled()
    if _has(reply, "security defaults"):
        return Advice(
            title=str(_("La tua organizzazione blocca l'accesso con password")),
            text=str(
                _(
                    "Le impostazioni di sicurezza predefinite di Microsoft 365 della tua "
                    "organizzazione non consentono l'accesso con la sola password."
                )
            ),
            steps=(
                str(_('Premi "Accedi con Microsoft" qui sotto: non serve la password.')),
                str(_("Chiedi al reparto IT di consentire SMTP autenticato per la casella.")),
                str(_("Oppure usa Smart Mail.")),
            ),
            suggest_smart_mail=True,
            suggest_oauth="microsoft",
        )
    return Advice(
        title=str(_("Microsoft non consente più l'accesso con password")),
        text=str(
            _(
                "Per questa casella Microsoft ha disattivato l'autenticazione con password "
                '("basic authentication"): per Outlook.com, Hotmail e Live è così dal '
                "settembre 2024."
            )
        ),
        steps=(
            str(
                _(
                    'Premi "Accedi con Microsoft" qui sotto e conferma l\'accesso: la casella '
                    "si collega senza password."
                )
            ),
            str(_("Oppure scegli Smart Mail come modalità di invio.")),
        ),
        suggest_smart_mail=True,
        suggest_oauth="microsoft",
    )


def _smtp_auth_disabled() -> Advice:
    """Microsoft 5.7.139 "SmtpClientAuthentication is disabled": with a password or with
    OAuth alike, only the organisation's administrator can turn SMTP AUTH on again."""
    return Advice(
        title=str(_("L'invio da programmi è disattivato per la tua organizzazione")),
        text=str(
            _(
                "L'amministratore di Microsoft 365 ha disattivato l'invio con SMTP autenticato "
                "(SmtpClientAuthentication) per l'organizzazione o per la tua casella: "
                "nessun programma può inviare dalla casella, nemmeno con l'accesso Microsoft."
            )
        ),
        steps=(
            str(
                _(
                    'Chiedi al reparto IT di abilitare "SMTP autenticato" solo per la tua '
                    "casella: interfaccia di amministrazione di Microsoft 365 → Utenti → Utenti "
                    "attivi → la tua casella → Posta → Gestisci app di posta elettronica → "
                    '"SMTP autenticato".'
                )
            ),
            str(
                _(
                    "In PowerShell l'amministratore può usare: Set-CASMailbox -Identity "
                    "<indirizzo> -SmtpClientAuthenticationDisabled $false (vale anche se "
                    "l'organizzazione lo tiene disattivato per tutti gli altri)."
                )
            ),
            str(
                _(
                    'Poi premi di nuovo "Verifica connessione". Nel frattempo puoi inviare con '
                    "Smart Mail."
                )
            ),
        ),
        suggest_smart_mail=True,
    )


def _oauth_reconnect(provider: Preset | None) -> Advice:
    from .oauth import provider_for_preset

    oauth_provider = provider_for_preset(provider.key if provider else None)
    title = (
        _("Ricollega il tuo account %(provider)s") % {"provider": oauth_provider.label}
        if oauth_provider
        else _("Ricollega il tuo account")
    )
    return Advice(
        title=str(title),
        text=str(
            _(
                "L'accesso di PsicoGest alla tua casella è scaduto o è stato revocato (ad "
                "esempio dopo un cambio di password o dalla pagina di sicurezza "
                "dell'account): le fatture in coda sono trattenute, nessuna è andata persa."
            )
        ),
        steps=(
            str(
                _('Premi "%(button)s" qui sotto e conferma l\'accesso.')
                % {"button": oauth_provider.button if oauth_provider else _("Accedi")}
            ),
            str(_("Dopo la verifica le fatture trattenute ripartono da sole.")),
        ),
        suggest_oauth=oauth_provider.key if oauth_provider else "",
    )


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
    family = _family(provider)
    if enhanced == "5.7.57" or _has(reply, "Client not authenticated"):
        return Advice(
            title=str(_("Il server chiede l'autenticazione")),
            text=str(_("Microsoft non ha ricevuto l'accesso prima dell'invio.")),
            steps=(
                str(_("Usa il server smtp.office365.com, porta 587, STARTTLS.")),
                str(_("Inserisci nome utente e password e verifica di nuovo.")),
            ),
        )
    if _has(reply, "Relay Disabled") or (
        provider is not None and provider.key == "libero" and _has(reply, "relay")
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
    if enhanced in ("5.7.26", "5.7.515") or _has(reply, "DMARC", "SPF", "DKIM"):
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
    if _has(reply, "Too many login attempts"):
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
    if enhanced == "5.4.5" or _has(reply, "Daily user sending limit"):
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


def _sentence(text: str) -> str:
    """``text`` with its first letter in upper case ("il tuo provider …" → "Il tuo …")."""
    return text[:1].upper() + text[1:]


def _smart_mail(error_class: str, code: int | None) -> Advice | None:
    """The outcomes only Smart Mail has (the ESP's answer and its tracking events, bounces
    aside), and the Smart Mail wording of the shared ones; ``None`` for the rest."""
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


def _bounce(error_class: str) -> Advice | None:
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


def _outbox(error_class: str, *, channel: str | None) -> Advice | None:
    """Outcomes decided by the outbox itself, the same on both channels."""
    found = _bounce(error_class)
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


def _unknown(name: str, *, after_data: bool) -> Advice:
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
        text=_sentence(
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


def advice(
    *,
    error_class: str,
    preset_key: str | None,
    code: int | None = None,
    enhanced: str | None = None,
    reply: str = "",
    channel: str | None = None,
    port: int | None = None,
    after_data: bool = False,
) -> Advice:
    """Italian advice for a classified failure on ``channel`` ("smtp", "smart_mail", or
    ``None`` for a mailbox check), naming the provider. ``port`` is the mailbox's port
    when known (the advice about port 25 is only for port 25)."""
    enhanced = enhanced or ""
    reply = reply or ""
    found = _outbox(error_class, channel=channel)
    if found is not None:
        return found
    if channel == "smart_mail":
        found = _smart_mail(error_class, code)
        if found is not None:
            return found
        if error_class == ErrorClass.UNKNOWN:
            return _unknown(str(_("il servizio di invio")), after_data=after_data)
    provider = _provider(preset_key, reply)
    name = (
        str(provider.label)
        if provider is not None and provider.key not in ("custom", "local")
        else str(_("il tuo provider"))
    )
    title_name = _sentence(name)

    if error_class == ErrorClass.OAUTH_RECONNECT:
        return _oauth_reconnect(provider)
    if error_class == ErrorClass.SMTP_AUTH_DISABLED:
        return _smtp_auth_disabled()
    if error_class == ErrorClass.OAUTH_REQUIRED:
        return _oauth_required(provider, title_name, reply)
    if error_class == ErrorClass.APP_PASSWORD_REQUIRED:
        return _with_google_login(_app_password(provider, title_name), provider)
    if error_class == ErrorClass.SUSPICIOUS_LOGIN:
        first = (
            str(_('Apri Gmail nel browser e conferma l\'avviso di sicurezza ("Sì, ero io").'))
            if _family(provider) == "google"
            else str(
                _("Apri la posta di %(provider)s nel browser e conferma l'avviso di accesso.")
                % {"provider": name}
            )
        )
        return Advice(
            title=str(
                _("%(provider)s ha bloccato l'accesso come sospetto") % {"provider": title_name}
            ),
            text=str(SUSPICIOUS_LOGIN_EXPLANATION),
            steps=(first, str(_('Torna qui e premi di nuovo "Verifica connessione".'))),
        )
    if error_class == ErrorClass.AUTH_FAILED:
        return _with_google_login(_auth_failed(provider, title_name), provider)
    if error_class == ErrorClass.AUTH_UNAVAILABLE:
        return Advice(
            title=str(_("Il server non offre l'accesso con nome utente e password")),
            text=str(
                _(
                    "Il server non propone l'autenticazione (AUTH): di solito non è il server di "
                    "invio (SMTP) del provider, oppure la porta è sbagliata (la 25 serve ai "
                    "server tra provider, non all'invio dalla tua casella)."
                )
            ),
            steps=(
                str(_("Controlla il nome del server SMTP indicato dal provider.")),
                str(_("Usa la porta 587 con STARTTLS, oppure la porta 465 con SSL/TLS.")),
            ),
        )
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
    return _unknown(name, after_data=after_data)
