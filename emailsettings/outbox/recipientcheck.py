"""Before an invoice leaves: is this the right address? The confirmation page (one invoice or
a batch) and the patient card show these warnings, each with the address; sending a flagged
invoice needs an explicit tick.

- ``changed`` — the address differs from the one the last invoice that reached this patient
  went to (sent or delivered);
- ``typo`` — the domain is one edit away from a common provider's (``gmial.com``,
  ``libero.ti``, ``hotmial.it``), or two for a long one, and is not itself one of them;
- ``shared`` — another patient of the same practitioner has the same address (a family
  address: the other patient would read this invoice);
- ``no_mail_server`` — DNS says for sure that the domain receives no mail
  (:func:`emailsettings.mailbox.autodetect.has_no_mail_server`); a timeout says nothing.

Domains reserved for examples and tests (RFC 2606: ``.test``, ``.example``, ``.invalid``,
``.localhost``) are never looked up. To add a provider to the typo check, add its domain to
:data:`COMMON_DOMAINS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Q
from django.utils.translation import gettext as _

from emailsettings.mailbox import autodetect
from emailsettings.mailbox.autodetect import Resolver
from emailsettings.models import Delivery, DeliveryStatus, RecipientRole
from psicogest.models import Patient

if TYPE_CHECKING:
    from psicogest.models import Practitioner

# The mailbox providers Italian patients use most, and their real neighbours (so that
# "tim.it" is not taken for a typo of "tin.it").
COMMON_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "libero.it",
        "virgilio.it",
        "alice.it",
        "tin.it",
        "tim.it",
        "tiscali.it",
        "hotmail.it",
        "hotmail.com",
        "outlook.it",
        "outlook.com",
        "live.it",
        "live.com",
        "msn.com",
        "yahoo.it",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "email.it",
        "fastwebnet.it",
        "inwind.it",
        "iol.it",
        "aruba.it",
        "pec.it",
        "legalmail.it",
        "gmx.com",
        "gmx.it",
        "proton.me",
        "protonmail.com",
    }
)
RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})
# A long domain may carry two slips ("hotmial.con") and still be a typo.
_LONG_DOMAIN = 10

REACHED = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)


@dataclass(frozen=True)
class RecipientWarning:
    code: str
    address: str
    text: str


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    two neighbours ("gmial" → "gmail") each count one."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def likely_typo_of(domain: str) -> str:
    """The common provider's domain ``domain`` looks like a typo of, or ""."""
    domain = domain.lower().rstrip(".")
    if not domain or domain in COMMON_DOMAINS:
        return ""
    allowed = 2 if len(domain) >= _LONG_DOMAIN else 1
    best, best_distance = "", allowed + 1
    for common in sorted(COMMON_DOMAINS):
        if abs(len(common) - len(domain)) > allowed:
            continue
        distance = _distance(domain, common)
        if distance < best_distance:
            best, best_distance = common, distance
    return best if best_distance <= allowed else ""


def default_resolver() -> Resolver:
    """The resolver of the "no mail server" check (the system's; the test suite replaces it
    with its fake, as it never queries public DNS)."""
    return autodetect.resolver_or_default(None)


def _is_reserved(domain: str) -> bool:
    return domain.rsplit(".", 1)[-1] in RESERVED_TLDS


def address_warnings(
    *,
    practitioner: Practitioner,
    address: str,
    patient: Patient | None = None,
    history: bool = True,
    resolver: Resolver | None = None,
) -> list[RecipientWarning]:
    """The warnings for sending to ``address`` of ``patient`` (another patient with the same
    address is said for both; "the address changed" only with ``history``, for the patient's
    own address rather than the card's other recipients)."""
    address = (address or "").strip()
    if not address or "@" not in address:
        return []
    warnings: list[RecipientWarning] = []
    domain = autodetect.domain_of(address)
    if history and patient is not None and patient.pk:
        last = (
            Delivery.objects.filter(patient=patient, role=RecipientRole.PATIENT, status__in=REACHED)
            .order_by("-sent_at", "-created_at", "-id")
            .values_list("recipient", flat=True)
            .first()
        )
        if last and last.lower() != address.lower():
            warnings.append(
                RecipientWarning(
                    "changed",
                    address,
                    _(
                        "L'indirizzo %(address)s è cambiato: l'ultima fattura arrivata a "
                        "questo paziente era andata a %(previous)s."
                    )
                    % {"address": address, "previous": last},
                )
            )
    typo = likely_typo_of(domain)
    if typo:
        warnings.append(
            RecipientWarning(
                "typo",
                address,
                _(
                    "L'indirizzo %(address)s sembra avere un errore di battitura: forse "
                    "«%(domain)s»?"
                )
                % {"address": address, "domain": typo},
            )
        )
    others = _patients_with(practitioner=practitioner, address=address, patient=patient)
    if others:
        warnings.append(
            RecipientWarning(
                "shared",
                address,
                _(
                    "L'indirizzo %(address)s è anche nella scheda di %(names)s: chi legge "
                    "quella casella vede le fatture di entrambi."
                )
                % {"address": address, "names": ", ".join(others)},
            )
        )
    if not _is_reserved(domain) and autodetect.has_no_mail_server(
        domain, resolver=resolver or default_resolver()
    ):
        warnings.append(
            RecipientWarning(
                "no_mail_server",
                address,
                _(
                    "Il dominio di %(address)s non riceve posta (nessun server di posta "
                    "risulta nel DNS): controlla l'indirizzo."
                )
                % {"address": address},
            )
        )
    return warnings


def _patients_with(
    *, practitioner: Practitioner, address: str, patient: Patient | None
) -> list[str]:
    """The names of the practitioner's other patients whose card has ``address``."""
    rows = Patient.objects.owned_by(practitioner).filter(
        Q(email__iexact=address) | Q(pec__iexact=address) | Q(extra_emails__icontains=address)
    )
    if patient is not None and patient.pk:
        rows = rows.exclude(pk=patient.pk)
    names = []
    for other in rows[:5]:
        addresses = {other.email.lower(), other.pec.lower()} | {
            extra.lower() for extra in other.extra_recipients
        }
        if address.lower() in addresses:
            names.append(other.display_name or _("un altro paziente"))
    return names
