"""Section "Il tuo indirizzo come mittente" of the settings page: the domain of the
practitioner's address, the DNS records to add for Smart Mail's own-address From, the last
SPF/DKIM/DMARC check and the "Verifica dominio" button (a synchronous look-up with the short
DNS timeout of ``autodetect``). The practitioner's own row only:
``SenderDomain.objects.owned_by(request.user)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from emailsettings.covermail.identity import smart_mail_identity
from emailsettings.guidance.senderdomain import free_mail_advice, record_advice
from emailsettings.limits import fixed_window_retry_after, retry_after_text, within_fixed_window
from emailsettings.mailbox.autodetect import domain_of
from emailsettings.models import SenderDomain
from emailsettings.smartmail.senderdomain import (
    DomainCheck,
    check_sender_domain,
    is_current,
    is_free_mail_domain,
    records_to_add,
    verify_sender_domain,
)
from emailsettings.views.cards import card_message

if TYPE_CHECKING:
    from psicogest.models import Practitioner

# "10 per 10 minutes per practitioner": each press is three DNS queries.
RATE_LIMIT_COUNT = 10
RATE_LIMIT_WINDOW = 600

RECORD_LABELS = {"dkim": "DKIM", "spf": "SPF", "dmarc": "DMARC"}
# A record just added shows up within minutes: the open page checks again once by itself.
RECHECK_AFTER_SECONDS = 180


def _row(request: HttpRequest) -> SenderDomain | None:
    return SenderDomain.objects.owned_by(request.user).first()  # type: ignore[arg-type]


def section_context(request: HttpRequest, **_overrides: Any) -> dict[str, Any]:
    email = request.user.email  # type: ignore[union-attr]
    domain = domain_of(email)
    row = _row(request)
    verified = is_current(row, email=email)
    check: DomainCheck | None = None
    if row is not None and row.domain == domain and row.last_result:
        check = DomainCheck.from_json(row.last_result)
    elif is_free_mail_domain(domain):
        check = check_sender_domain(domain=domain)  # no look-up for free mail
    states = []
    for record in check.records if check else ():
        states.append(
            {
                "kind": record.kind,
                "label": RECORD_LABELS[record.kind],
                "state": record.state,
                "found": record.found,
                "advice": record_advice(record, domain),
            }
        )
    return {
        "sender_domain": {
            "domain": domain,
            "free_mail": is_free_mail_domain(domain),
            "free_mail_advice": free_mail_advice(domain) if is_free_mail_domain(domain) else "",
            "records": records_to_add(domain),
            "row": row if row is not None and row.domain == domain else None,
            "verified": verified,
            "states": states,
            # A look-up that failed is not a missing record: said apart.
            "dns_error": any(state["state"] == "error" for state in states),
            # Seconds after the page opens before it checks again by itself.
            "recheck_after": RECHECK_AFTER_SECONDS,
            "patients_see": smart_mail_identity(
                request.user,  # type: ignore[arg-type]
                own_domain_verified=verified,
            ).from_header,
        }
    }


def _rate_key(practitioner_id: int) -> str:
    return f"emailsettings:sender-domain-checks:{practitioner_id}"


def _consume_rate_limit(practitioner_id: int) -> bool:
    return within_fixed_window(
        _rate_key(practitioner_id), limit=RATE_LIMIT_COUNT, window=RATE_LIMIT_WINDOW
    )


@login_required
@require_POST
def verify(request: HttpRequest) -> HttpResponse:
    target = reverse("emailsettings:settings") + "#sender-domain"
    practitioner = cast("Practitioner", request.user)
    if is_free_mail_domain(domain_of(practitioner.email)):
        card_message(
            request,
            "sender_domain",
            messages.INFO,
            _("Con un indirizzo di un provider di posta non c'è nulla da verificare."),
        )
        return redirect(target)
    if not _consume_rate_limit(practitioner.pk):
        card_message(
            request,
            "sender_domain",
            messages.ERROR,
            _(
                "Hai già verificato il dominio %(count)s volte negli ultimi 10 minuti: le "
                "modifiche al DNS possono richiedere tempo, %(retry)s."
            )
            % {
                "count": RATE_LIMIT_COUNT,
                "retry": retry_after_text(
                    fixed_window_retry_after(_rate_key(practitioner.pk), window=RATE_LIMIT_WINDOW)
                ),
            },
        )
        return redirect(target)
    row = verify_sender_domain(practitioner=practitioner)
    if is_current(row, email=practitioner.email):
        card_message(
            request,
            "sender_domain",
            messages.SUCCESS,
            _("Dominio verificato: le fatture con Smart Mail partiranno dal tuo indirizzo."),
        )
    elif row is not None and any(
        item.get("state") == "error" for item in (row.last_result or {}).get("records", [])
    ):
        card_message(
            request,
            "sender_domain",
            messages.WARNING,
            _(
                "Non è stato possibile leggere il DNS del dominio (errore o tempo scaduto): non "
                "significa che i record manchino. Riprova tra qualche minuto; intanto le fatture "
                "partono con l'indirizzo di PsicoGest."
            ),
        )
    else:
        card_message(
            request,
            "sender_domain",
            messages.WARNING,
            _(
                "Dominio non ancora verificato: le fatture continuano a partire con "
                "l'indirizzo di PsicoGest. Vedi i dettagli qui sotto."
            ),
        )
    return redirect(target)
