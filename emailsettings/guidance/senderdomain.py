"""Advice for the domain of the practitioner's address ("Il tuo indirizzo come mittente"):
what each SPF / DKIM / DMARC state means and what to add, and why a free-mail domain cannot
be used."""

from __future__ import annotations

from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.smartmail.senderdomain import RecordCheck, dkim_name, dmarc_name


def record_advice(check: RecordCheck, domain: str) -> str:
    """Italian advice for a record's state (translated when shown, not when checked)."""
    values = {
        "domain": domain,
        "dkim_name": dkim_name(domain),
        "dkim_target": conf.platform_dkim_target(),
        "include": conf.platform_spf_include(),
        "dmarc_name": dmarc_name(domain),
        "policy": check.policy,
    }
    if check.state == "error":
        return _(
            "Non è stato possibile leggere il record (errore DNS o tempo scaduto): finché non "
            "si riesce, le fatture partono con l'indirizzo di PsicoGest. Riprova tra qualche "
            "minuto."
        )
    if check.kind == "dkim":
        messages = {
            "ok": _("Firma DKIM attiva: PsicoGest può firmare le mail a nome di %(domain)s."),
            "missing": _(
                "Manca il record CNAME %(dkim_name)s → %(dkim_target)s: aggiungilo presso chi "
                "gestisce il DNS del dominio (spesso il registrar). Può servire fino a qualche "
                "ora perché sia visibile."
            ),
            "wrong": _(
                "Il record %(dkim_name)s esiste ma non punta a %(dkim_target)s: correggi il "
                "valore del CNAME."
            ),
        }
    elif check.kind == "spf":
        messages = {
            "ok": _("SPF corretto: il record include %(include)s."),
            "missing": _(
                "Nessun record SPF: consigliato aggiungere il TXT «v=spf1 include:%(include)s "
                "~all» (non indispensabile per usare il tuo indirizzo)."
            ),
            "wrong": _(
                "Il record SPF non include %(include)s, oppure ce n'è più di uno: aggiungi "
                "«include:%(include)s» al record esistente, prima di «~all» o «-all» (un solo "
                "record v=spf1 per dominio)."
            ),
        }
    else:
        messages = {
            "ok": _("Politica DMARC «%(policy)s»: la firma DKIM di PsicoGest la rispetta."),
            "missing": _(
                "Nessun record DMARC: non è obbligatorio, ma Gmail e Yahoo lo chiedono. "
                "Aggiungi almeno il TXT %(dmarc_name)s «v=DMARC1; p=none»."
            ),
            "wrong": _(
                "Il record DMARC non è valido (manca la politica p=none, quarantine o reject, "
                "oppure ci sono più record): i server lo ignorano. Correggilo."
            ),
        }
        if check.state == "ok" and check.policy == "none":
            return _(
                "Politica DMARC «none» (solo monitoraggio): va bene. Quando le fatture "
                "arrivano regolarmente puoi passare a «quarantine» per proteggere il dominio."
            )
    return messages[check.state] % values


def free_mail_advice(domain: str) -> str:
    return _(
        "%(domain)s è un dominio di un provider di posta: non puoi aggiungervi record DNS e la "
        "sua politica DMARC farebbe rifiutare o finire nello spam le mail inviate a tuo nome "
        "dai server di PsicoGest. Le fatture partono quindi sempre con l'indirizzo di "
        "PsicoGest e le risposte arrivano a te. Per usare il tuo indirizzo serve un dominio "
        "tuo (es. studiorossi.it)."
    ) % {"domain": domain}
