"""Advice for a mailbox that refuses PsicoGest's login: a wrong or app password, a login
the provider blocked as suspicious, password logins turned off in favour of OAuth, an
OAuth connection to renew. The provider's family decides the variant (Google, Microsoft)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from emailsettings.failures import ErrorClass
from emailsettings.guidance.base import Advice, family_of, has
from emailsettings.mailbox.oauth import provider_for_preset

if TYPE_CHECKING:
    from emailsettings.mailbox.presets import Preset


SUSPICIOUS_LOGIN_EXPLANATION = _(
    "Il tentativo di accesso arriva dai server di PsicoGest, che si trovano a Francoforte "
    "(Germania): per questo il provider può segnalarti un accesso sospetto dalla Germania. "
    "È PsicoGest: dichiaralo lecito seguendo le istruzioni del provider, altrimenti le "
    "fatture non potranno partire dalla tua casella."
)


def _with_google_login(advice: Advice, provider: Preset | None) -> Advice:
    """For a Google mailbox, "Accedi con Google" avoids the app password altogether."""
    if family_of(provider) != "google":
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
    family = family_of(provider)
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
    if family_of(provider) == "google":
        return Advice(
            title=str(_("Google non consente l'accesso con password")),
            text=str(_("Google accetta da PsicoGest solo l'accesso con il tuo account Google.")),
            steps=(str(_('Premi "Accedi con Google" qui sotto e conferma l\'accesso.')),),
            suggest_oauth="google",
        )
    if family_of(provider) != "microsoft" and provider is not None:
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
    if has(reply, "SmtpClientAuthentication is disabled"):
        return _smtp_auth_disabled()
    if has(reply, "security defaults"):
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


def login_advice(
    error_class: str, *, provider: Preset | None, name: str, title_name: str, reply: str
) -> Advice | None:
    """The advice for a refused login of ``error_class``; ``None`` for another class."""
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
            if family_of(provider) == "google"
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
    return None
