"""Guess the SMTP settings from an email address, the way mail clients do.

Order: the address's domain in the preset table; else the domain's MX records (dnspython)
mapped through the presets' MX patterns (Google → Google Workspace, Microsoft 365, Aruba,
OVH, …); else "custom" prefilled with ``smtp.<domain>``, 587, STARTTLS and marked as a guess.
A DNS failure or timeout is never presented as certain: it falls back to the guess.

Look-ups use a short timeout and are cached in-process for :data:`CACHE_TTL` seconds.
Tests pass ``resolver=`` an object with ``resolve(name, "MX", lifetime=…)`` returning
records with an ``exchange`` attribute; no real DNS.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from emailsettings.mailbox import presets

logger = logging.getLogger(__name__)

DNS_TIMEOUT = 2.0  # seconds, for the whole MX look-up
CACHE_TTL = 3600.0  # seconds
CACHE_MAX = 2048

Source = Literal["domain", "mx", "guess"]


class MxResolver(Protocol):
    def resolve(self, qname: str, rdtype: str, *, lifetime: float) -> Any: ...


# The same interface serves every record type (TXT and CNAME in ``dns.py``).
Resolver = MxResolver


@dataclass(frozen=True)
class Detection:
    preset_key: str
    host: str
    port: int
    security: str
    guessed: bool
    source: Source

    @property
    def preset(self) -> presets.Preset | None:
        return presets.get_preset(self.preset_key)


# domain -> (expiry, MX hosts or None when the look-up failed, whether the domain has
# definitely no mail server: NXDOMAIN, no MX record, or the null MX of RFC 7505).
_cache: dict[str, tuple[float, tuple[str, ...] | None, bool]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _default_resolver() -> MxResolver:
    import dns.resolver

    return dns.resolver.Resolver()


def resolver_or_default(resolver: Resolver | None) -> Resolver:
    """``resolver`` if given, else the system resolver (tests replace
    :func:`_default_resolver`)."""
    return resolver or _default_resolver()


def _mx_lookup(domain: str, resolver: MxResolver | None) -> tuple[tuple[str, ...] | None, bool]:
    """(the domain's MX hosts by preference or None when the look-up failed, whether the
    domain definitely has no mail server), cached."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(domain)
        if cached and cached[0] > now:
            return cached[1], cached[2]
    import dns.exception
    import dns.resolver

    no_mail = False
    try:
        answer = resolver_or_default(resolver).resolve(domain, "MX", lifetime=DNS_TIMEOUT)
        records = sorted(answer, key=lambda record: getattr(record, "preference", 0))
        hosts: tuple[str, ...] | None = tuple(
            str(record.exchange).rstrip(".").lower() for record in records
        )
        # RFC 7505: a single MX of "." says the domain accepts no mail.
        no_mail = not hosts or hosts == ("",)
    except dns.resolver.NXDOMAIN:
        # The domain is not logged: it may be a patient's (the recipient checks).
        logger.debug("MX look-up: no such domain")
        hosts, no_mail = None, True
    except dns.resolver.NoAnswer:
        # No MX: mail goes to the domain's own address when it has one (RFC 5321, 5.1).
        hosts, no_mail = None, not _has_address(domain, resolver)
    except (dns.exception.DNSException, OSError) as err:
        # Timeout, no nameservers: "cannot tell". The domain is not logged: it may be a
        # patient's (the recipient checks).
        logger.info("MX look-up failed: %s", type(err).__name__)
        hosts = None
    with _cache_lock:
        if len(_cache) >= CACHE_MAX:
            _cache.clear()
        _cache[domain] = (now + CACHE_TTL, hosts, no_mail)
    return hosts, no_mail


def _has_address(domain: str, resolver: MxResolver | None) -> bool:
    """Whether ``domain`` has an A or AAAA record; a failure counts as "yes" (not sure)."""
    import dns.exception
    import dns.resolver

    for rdtype in ("A", "AAAA"):
        try:
            if list(resolver_or_default(resolver).resolve(domain, rdtype, lifetime=DNS_TIMEOUT)):
                return True
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except (dns.exception.DNSException, OSError):
            return True
    return False


def _mx_hosts(domain: str, resolver: MxResolver | None) -> tuple[str, ...] | None:
    """The domain's MX hosts by preference, or None when the look-up failed (a domain
    without MX included: for a guess, all of these mean "cannot tell")."""
    hosts, _no_mail = _mx_lookup(domain, resolver)
    return hosts


def has_no_mail_server(domain: str, *, resolver: MxResolver | None = None) -> bool:
    """Whether DNS says for sure that ``domain`` receives no mail: it does not exist, has no
    MX record, or publishes the null MX. A timeout or a resolver failure is not sure."""
    if not domain:
        return False
    _hosts, no_mail = _mx_lookup(domain.rstrip(".").lower(), resolver)
    return no_mail


def _from_preset(preset: presets.Preset, source: Source) -> Detection:
    return Detection(
        preset_key=preset.key,
        host=preset.host,
        port=preset.port,
        security=preset.security,
        guessed=False,
        source=source,
    )


def domain_of(email: str) -> str:
    _local, _at, domain = email.strip().rpartition("@")
    return domain.rstrip(".").lower()


def detect_provider(email: str, *, resolver: MxResolver | None = None) -> Detection:
    """Propose SMTP settings for ``email`` (see the module docstring for the order)."""
    domain = domain_of(email)
    preset = presets.preset_for_domain(domain)
    if preset:
        return _from_preset(preset, "domain")
    mx_hosts = _mx_hosts(domain, resolver) if domain else None
    for mx_host in mx_hosts or ():
        preset = presets.preset_for_mx(mx_host)
        if preset:
            return _from_preset(preset, "mx")
    return Detection(
        preset_key=presets.CUSTOM_KEY,
        host=f"smtp.{domain}" if domain else "",
        port=587,
        security="starttls",
        guessed=True,
        source="guess",
    )
