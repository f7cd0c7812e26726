"""Italian advice for SMTP failures of the personal mailbox (see smtp-errors.md).

`ErrorClass` is the shared vocabulary: the network layer (emailsettings.smtp) classifies a
failure into one of these values, and `advice()` turns it into text for the practitioner.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _


class ErrorClass(models.TextChoices):
    # Configuration of the mailbox (permanent for the mailbox).
    AUTH_FAILED = "auth_failed", _("Credenziali rifiutate")
    APP_PASSWORD_REQUIRED = "app_password_required", _("Serve una password per le app")
    OAUTH_REQUIRED = "oauth_required", _("Accesso con password non consentito")
    SUSPICIOUS_LOGIN = "suspicious_login", _("Accesso bloccato come sospetto")
    TLS_FAILED = "tls_failed", _("Errore di sicurezza (TLS)")
    STARTTLS_MISSING = "starttls_missing", _("Impostazione di sicurezza errata")
    CERTIFICATE_INVALID = "certificate_invalid", _("Certificato del server non valido")
    CONNECTION_FAILED = "connection_failed", _("Server non raggiungibile")
    TIMEOUT = "timeout", _("Il server non risponde")
    SENDER_REFUSED = "sender_refused", _("Mittente non consentito")
    # The recipient (permanent for that message).
    RECIPIENT_REFUSED = "recipient_refused", _("Destinatario rifiutato")
    MAILBOX_FULL = "mailbox_full", _("Casella del destinatario piena")
    # Policy / domain authentication, e.g. DMARC 5.7.26 (permanent for that message).
    MESSAGE_REJECTED = "message_rejected", _("Messaggio rifiutato")
    # The configured host/port is not allowed (private address, blocked port): the
    # destination guard refused it before connecting.
    DESTINATION_REFUSED = "destination_refused", _("Server non consentito")
    # Rate / quota and other temporary conditions.
    RATE_LIMITED = "rate_limited", _("Troppi invii")
    GREYLISTED = "greylisted", _("Invio rimandato dal destinatario")
    TEMPORARY = "temporary", _("Errore temporaneo")
    UNKNOWN = "unknown", _("Errore sconosciuto")


@dataclass(frozen=True)
class Advice:
    title: str
    text: str
    steps: tuple[str, ...] = ()
    # The failure is one Smart Mail avoids (password logins refused, domain policy).
    suggest_smart_mail: bool = False


GOOGLE = ("gmail", "google_workspace")
MICROSOFT = ("outlook", "microsoft365")
_APP_PASSWORD_PLACES = {
    "gmail": _("su myaccount.google.com/apppasswords"),
    "google_workspace": _("su myaccount.google.com/apppasswords"),
    "yahoo": _("nella sicurezza dell'account Yahoo (Genera password per app)"),
    "icloud": _("su account.apple.com, in Password specifiche per le app"),
    "aruba_pec": _("nel pannello della PEC Aruba (password dedicata)"),
    "zoho": _("nelle impostazioni di sicurezza di Zoho"),
    "zoho_eu": _("nelle impostazioni di sicurezza di Zoho"),
}
SUSPICIOUS_LOGIN_EXPLANATION = _(
    "Il tentativo di accesso arriva dai server di PsicoGest, che si trovano a Francoforte "
    "(Germania): per questo il provider può segnalarti un accesso sospetto dalla Germania. "
    "È PsicoGest: dichiaralo lecito seguendo le istruzioni del provider, altrimenti le "
    "fatture non potranno partire dalla tua casella."
)


def _infer_provider(preset_key: str | None, reply: str) -> str | None:
    """The provider, from the preset or, for a custom server, from the reply's wording."""
    if preset_key and preset_key not in ("custom", "local"):
        return preset_key
    lowered = reply.lower()
    if "gsmtp" in lowered or "google" in lowered:
        return "gmail"
    if "outlook" in lowered or "office365" in lowered or "microsoft" in lowered:
        return "microsoft365"
    return preset_key


def provider_name(preset_key: str | None) -> str:
    from .presets import get_preset

    preset = get_preset(preset_key)
    if preset is None or preset.key in ("custom", "local"):
        return str(_("il tuo provider"))
    return str(preset.label)


def _has(reply: str, *needles: str) -> bool:
    lowered = reply.lower()
    return any(needle.lower() in lowered for needle in needles)


def _app_password(provider: str | None, name: str) -> Advice:
    place = _APP_PASSWORD_PLACES.get(provider or "", _("nelle impostazioni di sicurezza"))
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


def _auth_failed(provider: str | None, name: str, code: int | None, reply: str) -> Advice:
    if provider in GOOGLE:
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
    if provider == "yahoo":
        return _app_password(provider, name)
    if provider == "libero":
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
    if provider in MICROSOFT:
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


def _microsoft_oauth(reply: str) -> Advice:
    if _has(reply, "SmtpClientAuthentication is disabled"):
        return Advice(
            title=str(_("L'invio da programmi è disattivato per la tua organizzazione")),
            text=str(
                _(
                    "L'amministratore di Microsoft 365 ha disattivato l'invio con SMTP "
                    "autenticato (SmtpClientAuthentication) per il tenant o per la casella."
                )
            ),
            steps=(
                str(_('Chiedi al reparto IT di abilitare "SMTP autenticato" per la tua casella.')),
                str(_("Nel frattempo puoi inviare con Smart Mail.")),
            ),
            suggest_smart_mail=True,
        )
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
                str(_("Chiedi al reparto IT di consentire SMTP autenticato per la casella.")),
                str(_("Oppure usa Smart Mail.")),
            ),
            suggest_smart_mail=True,
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
            str(_("Scegli Smart Mail come modalità di invio: funziona senza la tua password.")),
            str(
                _(
                    "Per una casella aziendale Microsoft 365 puoi anche chiedere al reparto IT di "
                    "abilitare SMTP autenticato."
                )
            ),
        ),
        suggest_smart_mail=True,
    )


def _tls(error_class: str, reply: str, preset_host: str) -> Advice:
    if error_class == ErrorClass.CERTIFICATE_INVALID or _has(
        reply, "certificate", "CERTIFICATE_VERIFY_FAILED", "hostname mismatch"
    ):
        steps = [
            str(
                _(
                    "Controlla che il server SMTP sia scritto esattamente come lo indica "
                    "il provider."
                )
            )
        ]
        if preset_host:
            steps.append(
                str(_("Per questo provider il server è %(host)s.") % {"host": preset_host})
            )
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


def advice(
    *,
    error_class: str,
    preset_key: str | None,
    code: int | None = None,
    enhanced: str | None = None,
    reply: str = "",
) -> Advice:
    """Italian advice for a classified SMTP failure, naming the provider."""
    from .presets import get_preset

    enhanced = enhanced or ""
    reply = reply or ""
    provider = _infer_provider(preset_key, reply)
    name = provider_name(provider)
    preset = get_preset(provider)
    preset_host = preset.host if preset else ""

    # Specific wordings first: they decide whatever the generic class says.
    if (
        enhanced.startswith("5.7.139")
        or enhanced == "5.7.30"
        or _has(reply, "basic authentication is disabled", "Basic authentication is not supported")
    ):
        return _microsoft_oauth(reply)
    if error_class == ErrorClass.OAUTH_REQUIRED:
        return (
            _microsoft_oauth(reply)
            if provider in MICROSOFT
            else Advice(
                title=str(
                    _("%(provider)s non consente l'accesso con password") % {"provider": name}
                ),
                text=str(
                    _(
                        "Questo provider accetta solo l'accesso OAuth dai programmi di posta, che "
                        "l'invio SMTP personale non usa."
                    )
                ),
                steps=(str(_("Usa Smart Mail come modalità di invio.")),),
                suggest_smart_mail=True,
            )
        )
    if (
        error_class == ErrorClass.APP_PASSWORD_REQUIRED
        or enhanced in ("5.7.9", "5.7.90")
        or _has(reply, "Application-specific password required")
    ):
        return _app_password(provider, name)
    if (
        error_class == ErrorClass.SUSPICIOUS_LOGIN
        or enhanced == "5.7.14"
        or _has(reply, "log in via your web browser", "Please log in through your web browser")
    ):
        first = (
            str(_('Apri Gmail nel browser e conferma l\'avviso di sicurezza ("Sì, ero io").'))
            if provider in GOOGLE
            else str(
                _("Apri la posta di %(provider)s nel browser e conferma l'avviso di accesso.")
                % {"provider": name}
            )
        )
        return Advice(
            title=str(_("%(provider)s ha bloccato l'accesso come sospetto") % {"provider": name}),
            text=str(SUSPICIOUS_LOGIN_EXPLANATION),
            steps=(first, str(_('Torna qui e premi di nuovo "Verifica connessione".'))),
        )
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
    if error_class == ErrorClass.AUTH_FAILED:
        return _auth_failed(provider, name, code, reply)
    if error_class == ErrorClass.STARTTLS_MISSING or _has(reply, "Must issue a STARTTLS"):
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
    if error_class in (ErrorClass.TLS_FAILED, ErrorClass.CERTIFICATE_INVALID):
        return _tls(error_class, reply, preset_host)
    if error_class in (ErrorClass.CONNECTION_FAILED, ErrorClass.TIMEOUT):
        steps = [
            str(_("Controlla il nome del server SMTP e la porta.")),
            str(_("La porta 25 è spesso bloccata: usa la 587 (STARTTLS) o la 465 (SSL/TLS).")),
        ]
        if preset_host:
            steps.insert(
                1,
                str(
                    _("Per %(provider)s il server è %(host)s.")
                    % {"provider": name, "host": preset_host}
                ),
            )
        if error_class == ErrorClass.TIMEOUT:
            steps.append(
                str(
                    _(
                        "Se il server è corretto, potrebbe essere momentaneamente lento: "
                        "riprova più tardi."
                    )
                )
            )
            title = str(_("Il server non risponde"))
            text = str(_("Il server SMTP non ha risposto in tempo."))
        else:
            title = str(_("Server non raggiungibile"))
            text = str(
                _(
                    "Non è stato possibile collegarsi al server SMTP: nome sconosciuto o "
                    "porta chiusa."
                )
            )
        return Advice(title=title, text=text, steps=tuple(steps))
    if error_class == ErrorClass.DESTINATION_REFUSED:
        return Advice(
            title=str(_("Server non consentito")),
            text=str(
                _(
                    "Per sicurezza PsicoGest si collega solo a server SMTP pubblici sulle porte "
                    "465, 587, 2525 o 25."
                )
            ),
            steps=(str(_("Inserisci il server SMTP pubblico indicato dal tuo provider.")),),
        )
    if error_class == ErrorClass.SENDER_REFUSED:
        return _sender_refused(provider, name, enhanced, reply)
    if error_class == ErrorClass.RECIPIENT_REFUSED:
        return Advice(
            title=str(_("Indirizzo del destinatario inesistente")),
            text=str(
                _("Il server ha risposto che la casella del destinatario non esiste (%(code)s).")
                % {"code": " ".join(filter(None, (str(code or ""), enhanced))) or "550"}
            ),
            steps=(str(_("Controlla l'indirizzo email nella scheda del paziente.")),),
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
        return _rate_limited(provider, name, enhanced, reply)
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
                % {"provider": name}
            ),
        )
    return Advice(
        title=str(_("Invio non riuscito")),
        text=str(
            _(
                "%(provider)s ha rifiutato l'operazione con una risposta non riconosciuta. Trovi "
                "la risposta esatta nei dettagli tecnici."
            )
            % {"provider": name}
        ),
        steps=(
            str(_("Controlla le impostazioni e verifica di nuovo.")),
            str(_("Se l'errore persiste, usa Smart Mail.")),
        ),
    )


def _sender_refused(provider: str | None, name: str, enhanced: str, reply: str) -> Advice:
    if enhanced == "5.7.57" or _has(reply, "Client not authenticated"):
        return Advice(
            title=str(_("Il server chiede l'autenticazione")),
            text=str(_("Microsoft non ha ricevuto l'accesso prima dell'invio.")),
            steps=(
                str(_("Usa il server smtp.office365.com, porta 587, STARTTLS.")),
                str(_("Inserisci nome utente e password e verifica di nuovo.")),
            ),
        )
    if _has(reply, "Relay Disabled") or (provider == "libero" and _has(reply, "relay")):
        return Advice(
            title=str(_("Server sbagliato per questo indirizzo")),
            text=str(_("Il server non accetta di inviare per il tuo indirizzo (Relay Disabled).")),
            steps=(str(_("Per un indirizzo Libero usa il server smtp.libero.it.")),),
        )
    steps = [
        str(_("Come indirizzo email usa la stessa casella con cui accedi.")),
    ]
    if provider in ("aruba", "aruba_pec"):
        steps.append(str(_("Oppure autorizza l'alias nella Webmail di Aruba.")))
    elif provider in MICROSOFT:
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


def _rate_limited(provider: str | None, name: str, enhanced: str, reply: str) -> Advice:
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
    if _has(reply, "Too much traffic") or provider == "legalmail":
        detail = _("Legalmail consente al massimo 6 messaggi al minuto.")
    elif _has(reply, "policy violation") or provider == "aruba":
        detail = _("Aruba consente circa 200–300 messaggi ogni 20 minuti.")
    elif enhanced == "4.7.28" or provider in GOOGLE:
        detail = _("Google chiede di attendere almeno 10 minuti prima di riprovare.")
    else:
        detail = _("Il provider limita il numero di messaggi in un certo intervallo.")
    return Advice(
        title=str(_("Troppi invii in poco tempo")),
        text=str(detail),
        steps=(str(_("PsicoGest rallenta e riprova da solo più tardi.")),),
    )
