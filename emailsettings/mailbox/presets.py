"""Provider presets for the personal mailbox ("Configurazione SMTP personale").

Data from ``shared/reference/providers.md`` (Thunderbird's ISPDB plus the providers' help
pages). Each provider is one frozen :class:`Preset` in :data:`PRESETS`; the form's choices,
the auto-detection tables and the JavaScript that fills the form are all derived from it.
The database stores only the preset key and the user's own values (host, port, …).

To add a provider: append one ``Preset(...)`` to :data:`PRESETS` (before "custom") with a
unique ``key``, the address domains it serves, the MX host patterns of domains hosted there
(``"*.example.net"`` matches any host ending in ``.example.net``), the submission host, port
and security (``"ssl"`` on 465, ``"starttls"`` on 587), and — in Italian, translatable — what
the practitioner must know before the first try (app password, limits, …). Set
``usable=False`` when the provider refuses password logins from a server altogether.
``tests/emailsettings/test_presets.py`` checks every entry.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from emailsettings import conf

ALLOWED_PORTS = (465, 587, 2525, 25)
SECURITY_VALUES = ("ssl", "starttls")

# How the username is derived from the address.
USERNAME_EMAIL = "email"  # the full address (nearly everyone)
USERNAME_PROVIDER_ID = "provider_id"  # an id the provider issued, not necessarily the address


@dataclass(frozen=True)
class Preset:
    key: str
    label: str | Promise
    host: str
    port: int
    security: str
    domains: tuple[str, ...] = ()
    mx_patterns: tuple[str, ...] = ()
    username_rule: str = USERNAME_EMAIL
    login_notes: str | Promise = ""
    # A conservative pace for batches; the provider's own limit is usually per day.
    rate_limit_per_minute: int = 20
    usable: bool = True
    pec: bool = False
    # Where the practitioner creates an app password or changes the needed setting.
    help_url: str = ""
    # Provider facts the advice uses (guidance/), so adding a provider touches this file
    # only. ``family`` groups providers whose replies and advice are alike ("google",
    # "microsoft"); a 535 at AUTH means "use an app password" when ``app_password_on_535``;
    # ``app_password_place`` says where that password is created; ``rate_note`` explains the
    # provider's sending limit; ``reply_markers`` recognise the provider in a custom server's
    # reply (lower case).
    family: str = ""
    app_password_on_535: bool = False
    app_password_place: str | Promise = ""
    rate_note: str | Promise = ""
    reply_markers: tuple[str, ...] = ()

    def matches_mx(self, mx_host: str) -> bool:
        host = mx_host.rstrip(".").lower()
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.mx_patterns)

    def as_json(self) -> dict[str, Any]:
        """What the settings page's script needs (JSON-safe, no lazy strings)."""
        return {
            "key": self.key,
            "label": str(self.label),
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username_rule": self.username_rule,
            "login_notes": str(self.login_notes),
            "usable": self.usable,
            "help_url": self.help_url,
        }


_APP_PASSWORD_GOOGLE = _(
    'Il modo più semplice è "Accedi con Google", quando il pulsante è disponibile: niente '
    "password da copiare. Altrimenti serve una password per le app: attiva la verifica in "
    "due passaggi sull'account Google, "
    "poi crea una password per le app su myaccount.google.com/apppasswords e incollala qui. "
    "La normale password dell'account non è più accettata. Al primo accesso Google può "
    "segnalare un accesso sospetto dalla Germania: sono i server di PsicoGest (Francoforte), "
    "conferma che eri tu."
)

PRESETS: tuple[Preset, ...] = (
    Preset(
        key="gmail",
        label=_("Gmail"),
        domains=("gmail.com", "googlemail.com"),
        host="smtp.gmail.com",
        port=465,
        security="ssl",
        login_notes=_APP_PASSWORD_GOOGLE,
        help_url="https://myaccount.google.com/apppasswords",
        family="google",
        app_password_on_535=True,
        app_password_place=_("su myaccount.google.com/apppasswords"),
        rate_note=_("Google chiede di attendere almeno 10 minuti prima di riprovare."),
        reply_markers=("gsmtp", "google"),
    ),
    Preset(
        key="google_workspace",
        label=_("Google Workspace"),
        mx_patterns=("*.google.com", "*.googlemail.com"),
        host="smtp.gmail.com",
        port=465,
        security="ssl",
        login_notes=_(
            "Casella Google Workspace (dominio del tuo studio): dal 2024 Google non accetta più "
            'la password dell\'account dalle app. Usa "Accedi con Google" se disponibile, '
            "oppure attiva la verifica in due passaggi e crea una "
            "password per le app (se non compare, chiedi all'amministratore di Workspace di "
            "consentirla). Nome utente: l'indirizzo completo."
        ),
        help_url="https://myaccount.google.com/apppasswords",
        family="google",
        app_password_place=_("su myaccount.google.com/apppasswords"),
        rate_note=_("Google chiede di attendere almeno 10 minuti prima di riprovare."),
    ),
    Preset(
        key="outlook",
        label=_("Outlook.com / Hotmail / Live"),
        domains=(
            "outlook.com",
            "outlook.it",
            "hotmail.com",
            "hotmail.it",
            "live.com",
            "live.it",
            "msn.com",
        ),
        mx_patterns=("*.olc.protection.outlook.com",),
        host="smtp-mail.outlook.com",
        port=587,
        security="starttls",
        usable=False,
        login_notes=_(
            "Non utilizzabile con la password: dal 16 settembre 2024 Microsoft accetta per "
            "Outlook.com, Hotmail e Live solo l'accesso OAuth, e una password viene rifiutata "
            '(errore 535 5.7.139). Usa "Accedi con Microsoft"; se il pulsante non c\'è, usa '
            "Smart Mail: le risposte dei pazienti arrivano comunque alla tua casella."
        ),
        family="microsoft",
    ),
    Preset(
        key="microsoft365",
        label=_("Microsoft 365 (lavoro o scuola)"),
        domains=("onmicrosoft.com",),
        mx_patterns=("*.mail.protection.outlook.com",),
        host="smtp.office365.com",
        port=587,
        security="starttls",
        rate_limit_per_minute=30,
        login_notes=_(
            'Consigliato: "Accedi con Microsoft", se il pulsante è disponibile. Microsoft '
            "disattiva l'invio con password (SMTP AUTH di base) per impostazione predefinita "
            "dalla fine di dicembre 2026 e lo rimuoverà nel 2027; con l'autenticazione a più "
            "fattori la password già non basta. In ogni caso l'invio SMTP autenticato va "
            "abilitato per la singola casella e spesso l'amministratore lo tiene disattivato: "
            'se la verifica fallisce chiedi al reparto IT di abilitare "SMTP autenticato", '
            "oppure usa Smart Mail."
        ),
        family="microsoft",
        reply_markers=("outlook", "office365", "microsoft"),
    ),
    Preset(
        key="yahoo",
        label=_("Yahoo Mail"),
        domains=("yahoo.com", "yahoo.it", "ymail.com", "rocketmail.com"),
        mx_patterns=("*.yahoodns.net",),
        host="smtp.mail.yahoo.com",
        port=465,
        security="ssl",
        login_notes=_(
            "Serve una password per le app: nella sicurezza dell'account Yahoo attiva la "
            "verifica in due passaggi e genera una password per le app da usare qui."
        ),
        help_url="https://login.yahoo.com/account/security",
        app_password_on_535=True,
        app_password_place=_("nella sicurezza dell'account Yahoo (Genera password per app)"),
    ),
    Preset(
        key="icloud",
        label=_("iCloud Mail"),
        domains=("icloud.com", "me.com", "mac.com"),
        mx_patterns=("*.mail.icloud.com",),
        host="smtp.mail.me.com",
        port=587,
        security="starttls",
        login_notes=_(
            "Serve una password specifica per le app: con l'autenticazione a due fattori "
            "attiva, creala su account.apple.com (Accesso e sicurezza → Password specifiche "
            "per le app) e usala qui al posto della password dell'ID Apple."
        ),
        help_url="https://account.apple.com/",
        app_password_on_535=True,
        app_password_place=_("su account.apple.com, in Password specifiche per le app"),
    ),
    Preset(
        key="libero",
        label=_("Libero Mail"),
        domains=("libero.it", "iol.it", "inwind.it", "blu.it", "giallo.it"),
        host="smtp.libero.it",
        port=465,
        security="ssl",
        rate_limit_per_minute=10,
        login_notes=_(
            "Usa la password di Libero. Attenzione: dopo molti invii ravvicinati Libero può "
            "far scadere la password per sicurezza; in quel caso accedi a login.libero.it, "
            "cambiala e aggiornala qui."
        ),
    ),
    Preset(
        key="virgilio",
        label=_("Virgilio Mail"),
        domains=("virgilio.it",),
        host="out.virgilio.it",
        port=465,
        security="ssl",
        login_notes=_("Usa l'indirizzo completo e la password di Virgilio Mail."),
    ),
    Preset(
        key="tiscali",
        label=_("Tiscali Mail"),
        domains=("tiscali.it",),
        host="smtp.tiscali.it",
        port=465,
        security="ssl",
        login_notes=_("Usa l'indirizzo completo e la password di Tiscali Mail."),
    ),
    Preset(
        key="alice",
        label=_("Alice (TIM)"),
        domains=("alice.it",),
        host="out.alice.it",
        port=587,
        security="starttls",
        login_notes=_("Usa l'indirizzo completo e la password della casella Alice."),
    ),
    Preset(
        key="tim",
        label=_("TIM Mail"),
        domains=("tim.it",),
        host="smtp.tim.it",
        port=587,
        security="starttls",
        login_notes=_("Usa l'indirizzo completo e la password di TIM Mail."),
    ),
    Preset(
        key="fastweb",
        label=_("Fastweb"),
        domains=("fastwebnet.it",),
        host="smtp.fastwebnet.it",
        port=587,
        security="starttls",
        login_notes=_("Usa l'indirizzo completo e la password della casella Fastweb."),
    ),
    Preset(
        key="emailit",
        label=_("Email.it"),
        domains=("email.it",),
        host="out.email.it",
        port=465,
        security="ssl",
    ),
    Preset(
        key="aruba",
        label=_("Aruba (dominio personale)"),
        mx_patterns=("*.aruba.it",),
        host="smtps.aruba.it",
        port=465,
        security="ssl",
        rate_limit_per_minute=10,
        login_notes=_(
            "Il mittente deve essere la casella con cui accedi (o un alias autorizzato in "
            'Webmail Aruba). Aruba blocca con "policy violation" oltre circa 200–300 '
            "messaggi ogni 20 minuti: PsicoGest rallenta gli invii di conseguenza."
        ),
        rate_note=_("Aruba consente circa 200–300 messaggi ogni 20 minuti."),
    ),
    Preset(
        key="aruba_pec",
        label=_("Aruba PEC"),
        domains=("pec.it", "arubapec.it", "mypec.eu", "gigapec.it", "ingpec.eu"),
        host="smtps.pec.aruba.it",
        port=465,
        security="ssl",
        rate_limit_per_minute=10,
        pec=True,
        login_notes=_(
            "Casella PEC: ogni fattura parte come posta certificata e il mittente deve essere "
            "l'indirizzo PEC stesso. Con la verifica in due passaggi serve una password "
            "dedicata. Alcuni destinatari non PEC potrebbero non riceverla come una mail "
            "normale."
        ),
        app_password_place=_("nel pannello della PEC Aruba (password dedicata)"),
        rate_note=_("Aruba consente circa 200–300 messaggi ogni 20 minuti."),
    ),
    Preset(
        key="legalmail",
        label=_("Legalmail PEC (InfoCert)"),
        domains=("legalmail.it", "cert.legalmail.it"),
        host="sendm.cert.legalmail.it",
        port=465,
        security="ssl",
        username_rule=USERNAME_PROVIDER_ID,
        rate_limit_per_minute=6,
        pec=True,
        login_notes=_(
            "Casella PEC: il nome utente può essere il codice utente InfoCert e non "
            "l'indirizzo. Il contratto consente al massimo 6 messaggi al minuto (oltre, "
            '"Too much traffic from this sender"): PsicoGest rispetta questo limite. '
            "Server non confermato: controllalo nel tuo contratto."
        ),
        rate_note=_("Legalmail consente al massimo 6 messaggi al minuto."),
    ),
    Preset(
        key="postecert",
        label=_("Poste Italiane PEC"),
        domains=("postecert.it",),
        host="mail.postecert.it",
        port=465,
        security="ssl",
        rate_limit_per_minute=6,
        pec=True,
        login_notes=_(
            "Casella PEC: il mittente deve essere l'indirizzo PEC e gli invii sono più lenti "
            "di una casella normale."
        ),
        rate_note=_("Poste Italiane PEC consente al massimo 6 messaggi al minuto."),
    ),
    Preset(
        key="register",
        label=_("Register.it (dominio personale)"),
        mx_patterns=("*.register.it", "*.securemail.pro"),
        host="authsmtp.securemail.pro",
        port=465,
        security="ssl",
        login_notes=_(
            "Usa l'indirizzo completo e la password della casella. Server non confermato: "
            "controllalo nel pannello di Register.it."
        ),
    ),
    Preset(
        key="ovh",
        label=_("OVH"),
        domains=("ovh.net",),
        mx_patterns=("*.ovh.net",),
        host="ssl0.ovh.net",
        port=465,
        security="ssl",
        login_notes=_("Usa l'indirizzo completo e la password della casella OVH."),
    ),
    Preset(
        key="zoho",
        label=_("Zoho Mail"),
        domains=("zoho.com", "zohomail.com"),
        mx_patterns=("*.zoho.com",),
        host="smtp.zoho.com",
        port=465,
        security="ssl",
        login_notes=_(
            "Con l'autenticazione a due fattori attiva serve una password specifica per "
            "l'applicazione, da generare nelle impostazioni di sicurezza di Zoho."
        ),
        app_password_place=_("nelle impostazioni di sicurezza di Zoho"),
    ),
    Preset(
        key="zoho_eu",
        label=_("Zoho Mail (Europa)"),
        domains=("zoho.eu", "zohomail.eu"),
        mx_patterns=("*.zoho.eu",),
        host="smtp.zoho.eu",
        port=465,
        security="ssl",
        login_notes=_(
            "Con l'autenticazione a due fattori attiva serve una password specifica per "
            "l'applicazione, da generare nelle impostazioni di sicurezza di Zoho."
        ),
        app_password_place=_("nelle impostazioni di sicurezza di Zoho"),
    ),
    Preset(
        key="gmx",
        label=_("GMX"),
        domains=("gmx.com", "gmx.it"),
        host="mail.gmx.com",
        port=465,
        security="ssl",
        login_notes=_("Abilita l'accesso POP3/IMAP/SMTP nelle impostazioni di GMX."),
    ),
    Preset(
        key="posteo",
        label=_("Posteo"),
        domains=("posteo.it", "posteo.de"),
        host="posteo.de",
        port=465,
        security="ssl",
    ),
    Preset(
        key="proton",
        label=_("Proton Mail"),
        domains=("proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
        mx_patterns=("*.protonmail.ch",),
        host="smtp.protonmail.ch",
        port=587,
        security="starttls",
        usable=False,
        login_notes=_(
            "Non utilizzabile da un server: Proton Mail invia via SMTP solo tramite Proton "
            "Bridge installato sul tuo computer (o con i token SMTP dei piani business, da "
            'inserire con "Altro provider"). Usa Smart Mail.'
        ),
    ),
    Preset(
        key="custom",
        label=_("Altro provider"),
        host="",
        port=587,
        security="starttls",
        login_notes=_(
            "Inserisci i dati del server SMTP (posta in uscita) che il tuo provider indica per "
            "i programmi di posta: di solito porta 587 con STARTTLS o 465 con SSL/TLS."
        ),
    ),
)

CUSTOM_KEY = "custom"
LOCAL_KEY = "local"


def local_preset() -> Preset | None:
    """The "Server di test locale" preset: only while a local test server is configured
    (development, tests), never in production."""
    server = conf.local_test_server()
    if not isinstance(server, dict):
        return None
    return Preset(
        key=LOCAL_KEY,
        label=_("Server di test locale"),
        host=str(server.get("host", "localhost")),
        port=int(server.get("port", 1025)),
        security="starttls",
        rate_limit_per_minute=600,
        login_notes=_(
            'Solo per provare PsicoGest: il server di test avviato da "make run" accetta '
            "qualsiasi nome utente e password e conserva i messaggi senza consegnarli; i "
            "destinatari @rifiuta.test vengono rifiutati, per vedere anche un errore. Con "
            '"Rimbalzi e posta inviata (IMAP)" attivo, gli invii a @rimbalza.test tornano '
            "indietro poco dopo e quelli agli indirizzi PEC ricevono le ricevute PEC."
        ),
    )


def reads_pec_receipts(key: str) -> bool:
    """Whether a mailbox of preset ``key`` receives PEC receipts: a PEC provider's, or the
    local test server (its "Gestore PEC di prova" answers PEC recipients)."""
    preset = get_preset(key)
    return preset is not None and (preset.pec or preset.key == LOCAL_KEY)


def available_presets() -> tuple[Preset, ...]:
    """The presets to offer now: PRESETS, plus the local test server in development."""
    local = local_preset()
    return (local, *PRESETS) if local else PRESETS


def get_preset(key: str | None) -> Preset | None:
    for preset in available_presets():
        if preset.key == key:
            return preset
    return None


def preset_choices() -> list[tuple[str, str | Promise]]:
    return [(preset.key, preset.label) for preset in available_presets()]


def preset_for_domain(domain: str) -> Preset | None:
    domain = domain.rstrip(".").lower()
    for preset in PRESETS:
        if domain in preset.domains:
            return preset
    return None


def pec_domains() -> frozenset[str]:
    """The address domains of the PEC presets (``pec.it``, ``postecert.it``, …)."""
    return frozenset(domain for preset in PRESETS if preset.pec for domain in preset.domains)


def is_pec_address(address: str) -> bool:
    """Whether ``address`` is at a PEC provider's domain (or a subdomain of one)."""
    domain = address.rpartition("@")[2].strip().rstrip(".").lower()
    return any(domain == pec or domain.endswith("." + pec) for pec in pec_domains())


def provider_from_reply(reply: str) -> Preset | None:
    """The provider a custom server's reply names (``gsmtp`` → Gmail), if any."""
    lowered = reply.lower()
    for preset in PRESETS:
        if any(marker in lowered for marker in preset.reply_markers):
            return preset
    return None


def preset_for_mx(mx_host: str) -> Preset | None:
    for preset in PRESETS:
        if preset.matches_mx(mx_host):
            return preset
    return None


# Where each provider's mailbox is read (IMAP), for bounces and PEC receipts:
# (host, port, security). Same credentials as SMTP.
IMAP_SERVERS: dict[str, tuple[str, int, str]] = {
    "gmail": ("imap.gmail.com", 993, "ssl"),
    "google_workspace": ("imap.gmail.com", 993, "ssl"),
    "outlook": ("outlook.office365.com", 993, "ssl"),
    "microsoft365": ("outlook.office365.com", 993, "ssl"),
    "yahoo": ("imap.mail.yahoo.com", 993, "ssl"),
    "icloud": ("imap.mail.me.com", 993, "ssl"),
    "libero": ("imapmail.libero.it", 993, "ssl"),
    "virgilio": ("in.virgilio.it", 993, "ssl"),
    "tiscali": ("imap.tiscali.it", 993, "ssl"),
    "alice": ("in.alice.it", 143, "starttls"),
    "tim": ("imap.tim.it", 143, "starttls"),
    "fastweb": ("imap.fastwebnet.it", 993, "ssl"),
    "emailit": ("in.email.it", 993, "ssl"),
    "aruba": ("imaps.aruba.it", 993, "ssl"),
    "aruba_pec": ("imaps.pec.aruba.it", 993, "ssl"),
    "legalmail": ("imaps.cert.legalmail.it", 993, "ssl"),
    "postecert": ("mail.postecert.it", 993, "ssl"),
    "ovh": ("ssl0.ovh.net", 993, "ssl"),
    "zoho": ("imap.zoho.com", 993, "ssl"),
    "zoho_eu": ("imap.zoho.eu", 993, "ssl"),
    "gmx": ("imap.gmx.com", 993, "ssl"),
    "posteo": ("posteo.de", 993, "ssl"),
}


def imap_server(preset_key: str | None) -> tuple[str, int, str] | None:
    """The provider's IMAP server, or ``None`` (a custom server: the practitioner types it;
    the local test server: its own IMAP side, when it has one)."""
    if preset_key == LOCAL_KEY:
        local = conf.local_test_server() or {}
        if not local.get("imap_port"):
            return None
        return (str(local.get("host", "localhost")), int(local["imap_port"]), "ssl")
    return IMAP_SERVERS.get(preset_key or "")
