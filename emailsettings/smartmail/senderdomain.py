"""SPF/DKIM/DMARC look-ups for Smart Mail's own-address From ("dominio del mittente").

Smart Mail puts the practitioner's own address in ``From`` only when their domain lets the
platform sign for it: ``psicogest._domainkey.<domain>`` is a CNAME to the platform's DKIM key
(:func:`conf.platform_dkim_target`). Otherwise it keeps the rewrite
``"Name via PsicoGest" <platform address>`` (see ``identity.py``).

What :func:`check_sender_domain` looks up, each giving a :class:`RecordCheck` with a state
(``ok`` / ``missing`` / ``wrong`` / ``error``) and Italian advice:

- **DKIM**: the CNAME above. This is the only record that gates verification.
- **SPF**: the domain's ``v=spf1`` TXT record and whether it has
  ``include:<platform include>``. *Recommended, not required*: Smart Mail's envelope sender
  (Return-Path) stays on the platform's bounce domain, so receivers evaluate SPF for the
  platform, not for the practitioner's domain; DMARC passes when either SPF or DKIM is
  aligned with the From domain (RFC 7489 §4.2), and the aligned DKIM signature is enough.
  The include is still advised (some filters check it, and it is needed if the ESP is later
  given a custom Return-Path on the practitioner's domain).
- **DMARC**: the ``v=DMARC1`` TXT record at ``_dmarc.<domain>`` and its policy
  (none / quarantine / reject). Informative: any policy passes with the aligned DKIM.

``verified`` is true only when DKIM is ``ok`` and no look-up ended in an error: a DNS
failure or timeout can never verify a domain, it counts as "rewrite". Free-mail and shared
provider domains (the presets' ``domains``: gmail.com, libero.it, outlook.com, …) are never
verified and not even looked up: the practitioner cannot add records there, and their
strict DMARC policies make mail sent in their name from other servers fail.

Look-ups reuse ``autodetect``'s resolver plumbing (same timeout; tests pass ``resolver=``
a fake, or replace ``autodetect._default_resolver``) but are not cached: "Verifica dominio"
is pressed right after adding a record. Nothing here touches the database except
:func:`verify_sender_domain` and :func:`sender_domain_verified`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from django.utils import timezone

from emailsettings import conf
from emailsettings.mailbox import autodetect, presets
from emailsettings.mailbox.autodetect import Resolver, domain_of
from emailsettings.models import SenderDomain

if TYPE_CHECKING:
    from emailsettings.models import SenderDomain
    from psicogest.models import Practitioner

logger = logging.getLogger(__name__)

DKIM_SELECTOR = "psicogest"
DMARC_POLICIES = ("none", "quarantine", "reject")

State = Literal["ok", "missing", "wrong", "error"]


def dkim_name(domain: str) -> str:
    return f"{DKIM_SELECTOR}._domainkey.{domain}"


def dmarc_name(domain: str) -> str:
    return f"_dmarc.{domain}"


def is_free_mail_domain(domain: str) -> bool:
    """A domain of a mail provider (the presets' ``domains``, and their subdomains such as
    ``studio.onmicrosoft.com``): never the practitioner's own."""
    domain = domain.rstrip(".").lower()
    return any(
        domain == known or domain.endswith("." + known)
        for preset in presets.PRESETS
        for known in preset.domains
    )


@dataclass(frozen=True)
class RecordCheck:
    """One record's state; ``found`` is what DNS returned (shown to the practitioner)."""

    kind: Literal["spf", "dkim", "dmarc"]
    state: State
    found: tuple[str, ...] = ()
    policy: str = ""  # DMARC only: none / quarantine / reject

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True)
class DomainCheck:
    domain: str
    free_mail: bool
    spf: RecordCheck | None
    dkim: RecordCheck | None
    dmarc: RecordCheck | None

    @property
    def records(self) -> tuple[RecordCheck, ...]:
        return tuple(check for check in (self.dkim, self.spf, self.dmarc) if check)

    @property
    def verified(self) -> bool:
        if self.free_mail or self.dkim is None or not self.dkim.ok:
            return False
        return all(check.state != "error" for check in self.records)

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "free_mail": self.free_mail,
            "verified": self.verified,
            "records": [{**asdict(check), "found": list(check.found)} for check in self.records],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainCheck:
        checks: dict[str, RecordCheck] = {}
        for item in data.get("records") or ():
            kind = item.get("kind")
            state = item.get("state")
            if kind in ("spf", "dkim", "dmarc") and state in ("ok", "missing", "wrong", "error"):
                checks[kind] = RecordCheck(
                    kind=kind,
                    state=state,
                    found=tuple(str(value) for value in item.get("found") or ()),
                    policy=str(item.get("policy") or ""),
                )
        return cls(
            domain=str(data.get("domain") or ""),
            free_mail=bool(data.get("free_mail")),
            spf=checks.get("spf"),
            dkim=checks.get("dkim"),
            dmarc=checks.get("dmarc"),
        )


# --- look-ups ------------------------------------------------------------------------------


class _LookupFailed(Exception):
    """Timeout, SERVFAIL, no nameservers, a malformed name: the state cannot be known."""


def _lookup(resolver: Resolver, name: str, rdtype: str) -> list[Any]:
    """The answer's records; ``[]`` when the name or the type does not exist."""
    import dns.exception
    import dns.resolver

    try:
        return list(resolver.resolve(name, rdtype, lifetime=autodetect.DNS_TIMEOUT))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError) as err:
        logger.info("%s look-up for %s failed: %s", rdtype, name, type(err).__name__)
        raise _LookupFailed(rdtype) from err


def _txt(record: Any) -> str:
    strings = getattr(record, "strings", None)
    if strings is not None:  # one TXT record may be split into several strings
        return b"".join(strings).decode("utf-8", "replace")
    return str(record).strip('"')


def _host(value: Any) -> str:
    return str(getattr(value, "target", value)).rstrip(".").lower()


def _check_dkim(resolver: Resolver, domain: str) -> RecordCheck:
    try:
        targets = tuple(_host(record) for record in _lookup(resolver, dkim_name(domain), "CNAME"))
    except _LookupFailed:
        return RecordCheck(kind="dkim", state="error")
    if not targets:
        return RecordCheck(kind="dkim", state="missing")
    state: State = "ok" if targets == (conf.platform_dkim_target(),) else "wrong"
    return RecordCheck(kind="dkim", state=state, found=targets)


def _check_spf(resolver: Resolver, domain: str) -> RecordCheck:
    try:
        texts = [_txt(record) for record in _lookup(resolver, domain, "TXT")]
    except _LookupFailed:
        return RecordCheck(kind="spf", state="error")
    spf = tuple(text for text in texts if re.match(r"(?i)v=spf1(\s|$)", text.strip()))
    if not spf:
        return RecordCheck(kind="spf", state="missing")
    if len(spf) > 1:  # more than one SPF record is a permanent error (RFC 7208 §4.5)
        return RecordCheck(kind="spf", state="wrong", found=spf)
    include = conf.platform_spf_include()
    terms = [term.lower().lstrip("+") for term in spf[0].split()]
    state: State = "ok" if f"include:{include}" in terms else "wrong"
    return RecordCheck(kind="spf", state=state, found=spf)


def _check_dmarc(resolver: Resolver, domain: str) -> RecordCheck:
    try:
        texts = [_txt(record) for record in _lookup(resolver, dmarc_name(domain), "TXT")]
    except _LookupFailed:
        return RecordCheck(kind="dmarc", state="error")
    dmarc = tuple(text for text in texts if re.match(r"(?i)v\s*=\s*DMARC1\s*(;|$)", text.strip()))
    if not dmarc:
        return RecordCheck(kind="dmarc", state="missing")
    if len(dmarc) > 1:  # receivers ignore DMARC when there are several records
        return RecordCheck(kind="dmarc", state="wrong", found=dmarc)
    tags = dict(
        (key.strip().lower(), value.strip().lower())
        for key, _sep, value in (part.partition("=") for part in dmarc[0].split(";"))
        if key.strip()
    )
    policy = tags.get("p", "")
    if policy not in DMARC_POLICIES:
        return RecordCheck(kind="dmarc", state="wrong", found=dmarc)
    return RecordCheck(kind="dmarc", state="ok", found=dmarc, policy=policy)


def check_sender_domain(*, domain: str, resolver: Resolver | None = None) -> DomainCheck:
    """Look up ``domain``'s DKIM, SPF and DMARC records (see the module docstring)."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or is_free_mail_domain(domain):
        return DomainCheck(domain=domain, free_mail=bool(domain), spf=None, dkim=None, dmarc=None)
    resolver = autodetect.resolver_or_default(resolver)
    return DomainCheck(
        domain=domain,
        free_mail=False,
        dkim=_check_dkim(resolver, domain),
        spf=_check_spf(resolver, domain),
        dmarc=_check_dmarc(resolver, domain),
    )


# --- what to add, and advice ----------------------------------------------------------------


@dataclass(frozen=True)
class DnsRecord:
    """A record the practitioner adds at their DNS provider."""

    name: str
    rdtype: str
    value: str


def records_to_add(domain: str) -> tuple[DnsRecord, ...]:
    include = conf.platform_spf_include()
    return (
        DnsRecord(name=dkim_name(domain), rdtype="CNAME", value=conf.platform_dkim_target() + "."),
        DnsRecord(name=domain, rdtype="TXT", value=f"v=spf1 include:{include} ~all"),
    )


# --- the practitioner's row -----------------------------------------------------------------


def verify_sender_domain(
    *, practitioner: Practitioner, resolver: Resolver | None = None
) -> SenderDomain:
    """Check the domain of the practitioner's address now and record the result."""
    domain = domain_of(practitioner.email)
    check = check_sender_domain(domain=domain, resolver=resolver)  # no transaction open
    now = timezone.now()
    row = SenderDomain.objects.filter(practitioner=practitioner).first()
    if row is None:
        row = SenderDomain(practitioner=practitioner)
    keep_since = row.verified_at if row.domain == check.domain else None
    row.domain = check.domain
    row.verified_at = (keep_since or now) if check.verified else None
    row.last_checked_at = now
    row.last_result = check.as_json()
    row.save()
    return row


def is_current(row: SenderDomain | None, *, email: str) -> bool:
    """``row`` verifies the domain of ``email``: verified, last check ok, same domain."""
    if row is None or row.verified_at is None:
        return False
    domain = domain_of(email)
    return (
        row.domain == domain
        and not is_free_mail_domain(domain)
        and bool((row.last_result or {}).get("verified"))
    )


def sender_domain_verified(*, practitioner: Practitioner) -> bool:
    """Smart Mail may put the practitioner's own address in From (see ``identity.py``)."""
    row = SenderDomain.objects.filter(practitioner=practitioner).first()
    return is_current(row, email=practitioner.email)


def recheck_verified_domains(*, resolver: Resolver | None = None) -> int:
    """Check again every domain verified so far, so a DKIM record removed later stops
    Smart Mail from using the practitioner's address (beat, daily). Returns how many."""
    rows = SenderDomain.objects.filter(verified_at__isnull=False).select_related("practitioner")
    checked = 0
    for row in rows.iterator():
        verify_sender_domain(practitioner=row.practitioner, resolver=resolver)
        checked += 1
    return checked
