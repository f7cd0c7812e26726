"""Which hosts and ports a personal mailbox connection may reach (SMTP and IMAP): the
destination guard :func:`check_destination`, and the project's own table of addresses.

:func:`check_destination` resolves the host once and refuses ports other than 465, 587, 2525
and 25 and every non-public address (loopback, private, link-local, CGNAT, unique-local, the
IPv4-mapped / NAT64 / 6to4 forms of those, multicast, reserved, unspecified) — unless
``EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS`` is on. The caller connects to the checked address,
with no second look-up (DNS rebinding cannot redirect it).

``ipaddress.is_global`` and friends change with the interpreter's patch level (on Python
3.11.7 ``192.0.0.8`` and ``192.88.99.1`` count as global), so the guard asks
:func:`is_public`, which reads only the tables below and never calls
``is_global``/``is_private``/``is_reserved``.

Source: the IANA IPv4 Special-Purpose Address Registry and the IANA IPv6 Special-Purpose
Address Registry (RFC 6890), both "Last Updated 2025-10-09":
https://www.iana.org/assignments/iana-ipv4-special-registry/
https://www.iana.org/assignments/iana-ipv6-special-registry/
Every entry is listed with the registry's "Globally Reachable" value: the three that carry
an IPv4 address in :data:`EMBEDDED_IPV4` (see below), the others in :data:`IPV4_SPECIAL` and
:data:`IPV6_SPECIAL`, where every entry is refused:

- all entries whose "Globally Reachable" is False, N/A, or empty (terminated allocations:
  192.88.99.0/24, 2001:10::/28);
- the entries IANA marks globally reachable but that lie inside a block that is not
  (192.0.0.9/32 and 192.0.0.10/32 in 192.0.0.0/24, footnote "not usable unless by virtue of
  a more specific reservation"; the ``2001:`` ones in 2001::/23): refused with their block,
  conservatively;
- AS112 (192.31.196.0/24, 192.175.48.0/24, 2620:4f:8000::/48: DNS sinks for reverse
  look-ups, RFC 7534/7535) and AMT relays (192.52.193.0/24, RFC 7450): globally reachable,
  but anycast services where no mail server lives.

Beside those registries: multicast (224.0.0.0/4, RFC 5771; ff00::/8, RFC 4291) is never a
unicast destination; for IPv6 only 2000::/3 is allocated as Global Unicast, so every block
the IANA IPv6 Address Space registry (Last Updated 2025-10-23,
https://www.iana.org/assignments/ipv6-address-space/) marks "Reserved by IETF" is refused
too (:data:`IPV6_RESERVED_BY_IETF`: IPv4-compatible ``::a.b.c.d`` in ::/8, the deprecated
site-local fec0::/10, …). An IPv6 address carrying a zone id (``fe80::1%eth0``, RFC 4007)
names a link, never the Internet: refused.

Three IPv6 blocks carry an IPv4 address that the packet ends up reaching, so they are judged
by it (:data:`EMBEDDED_IPV4`): IPv4-mapped ::ffff:0:0/96 (a dual-stack socket connects to
the IPv4 address), the well-known NAT64 prefix 64:ff9b::/96 (RFC 6052, translated by a
gateway inside the network) and 6to4 2002::/16 (RFC 3056, tunnelled to the embedded
address). Teredo (2001::/32) is refused with 2001::/23.

To update: compare both tables with the registries (their CSV exports), add or change rows
here in the registry's order, a more specific row before the block that contains it (the
first match names the reason), update the date above, and add the new blocks to
tests/emailsettings/mailbox/test_guard.py.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.exceptions import DestinationRefused

# What the registry's "Globally Reachable" column says for an entry.
REACHABLE = "True"
NOT_REACHABLE = "False"
NOT_APPLICABLE = "N/A"
TERMINATED = ""  # the allocation was terminated; the registry leaves the column empty
NOT_IN_REGISTRY = "-"  # listed here from another registry or RFC


@dataclass(frozen=True)
class SpecialRange:
    """One refused block: the network, its registry name, the reference, and what the
    registry says about its global reachability (kept to show why it is here)."""

    network: IPv4Network | IPv6Network
    name: str
    reference: str
    globally_reachable: str = NOT_REACHABLE


def _v4(prefix: str, name: str, reference: str, reachable: str = NOT_REACHABLE) -> SpecialRange:
    return SpecialRange(IPv4Network(prefix), name, reference, reachable)


def _v6(prefix: str, name: str, reference: str, reachable: str = NOT_REACHABLE) -> SpecialRange:
    return SpecialRange(IPv6Network(prefix), name, reference, reachable)


IPV4_SPECIAL: tuple[SpecialRange, ...] = (
    _v4("0.0.0.0/32", '"This host on this network"', "RFC 1122, section 3.2.1.3"),
    _v4("0.0.0.0/8", '"This network"', "RFC 791, section 3.2"),
    _v4("10.0.0.0/8", "Private-Use", "RFC 1918"),
    _v4("100.64.0.0/10", "Shared Address Space", "RFC 6598"),
    _v4("127.0.0.0/8", "Loopback", "RFC 1122, section 3.2.1.3"),
    _v4("169.254.0.0/16", "Link Local", "RFC 3927"),
    _v4("172.16.0.0/12", "Private-Use", "RFC 1918"),
    _v4("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335"),
    _v4("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
    _v4("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", REACHABLE),
    _v4("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", REACHABLE),
    _v4("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2"),
    _v4("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2"),
    _v4("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890, section 2.1"),
    _v4("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737"),
    _v4("192.31.196.0/24", "AS112-v4", "RFC 7535", REACHABLE),
    _v4("192.52.193.0/24", "AMT", "RFC 7450", REACHABLE),
    _v4("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751"),
    _v4("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", TERMINATED),
    _v4("192.168.0.0/16", "Private-Use", "RFC 1918"),
    _v4("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", REACHABLE),
    _v4("198.18.0.0/15", "Benchmarking", "RFC 2544"),
    _v4("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737"),
    _v4("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737"),
    _v4("224.0.0.0/4", "Multicast", "RFC 5771 (IPv4 Multicast Address Space)", NOT_IN_REGISTRY),
    _v4("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 section 7"),
    _v4("240.0.0.0/4", "Reserved", "RFC 1112, section 4"),
)

IPV6_SPECIAL: tuple[SpecialRange, ...] = (
    _v6("::1/128", "Loopback Address", "RFC 4291"),
    _v6("::/128", "Unspecified Address", "RFC 4291"),
    _v6("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", "RFC 8215"),
    _v6("100::/64", "Discard-Only Address Block", "RFC 6666"),
    _v6("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780"),
    _v6("2001::/32", "TEREDO", "RFC 4380, RFC 8190", NOT_APPLICABLE),
    _v6("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", REACHABLE),
    _v6("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", REACHABLE),
    _v6("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", REACHABLE),
    _v6("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752"),
    _v6("2001:3::/32", "AMT", "RFC 7450", REACHABLE),
    _v6("2001:4:112::/48", "AS112-v6", "RFC 7535", REACHABLE),
    _v6("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", TERMINATED),
    _v6("2001:20::/28", "ORCHIDv2", "RFC 7343", REACHABLE),
    _v6(
        "2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", REACHABLE
    ),
    _v6("2001::/23", "IETF Protocol Assignments", "RFC 2928"),
    _v6("2001:db8::/32", "Documentation", "RFC 3849"),
    _v6("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", REACHABLE),
    _v6("3fff::/20", "Documentation", "RFC 9637"),
    _v6("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602"),
    _v6("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190"),
    _v6("fe80::/10", "Link-Local Unicast", "RFC 4291"),
    _v6("ff00::/8", "Multicast", "RFC 4291, section 2.7", NOT_IN_REGISTRY),
)

# IPv6 blocks whose address embeds an IPv4 address, judged by it: (block, bit shift of the
# 32-bit IPv4 address inside the 128-bit IPv6 one).
IPV4_MAPPED = IPv6Network("::ffff:0:0/96")  # RFC 4291, section 2.5.5.2
NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")  # RFC 6052, section 2.1
SIX_TO_FOUR = IPv6Network("2002::/16")  # RFC 3056, section 2
EMBEDDED_IPV4: tuple[tuple[IPv6Network, int], ...] = (
    (IPV4_MAPPED, 0),
    (NAT64_WELL_KNOWN, 0),
    (SIX_TO_FOUR, 80),
)

# The IANA IPv6 Address Space registry's "Reserved by IETF" rows; with Global Unicast and
# fc00::/7, fe80::/10, ff00::/8 above, they tile the whole space. Read after the
# embedded-IPv4 blocks (::ffff:0:0/96 and 64:ff9b::/96 lie in ::/8).
IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")  # the only block IANA assigns unicast from
IPV6_RESERVED_BY_IETF: tuple[SpecialRange, ...] = tuple(
    _v6(prefix, "Reserved by IETF", reference, NOT_IN_REGISTRY)
    for prefix, reference in (
        ("::/8", "RFC 4291 (::/96 IPv4-compatible, deprecated)"),
        ("100::/8", "RFC 4291"),
        ("200::/7", "RFC 4048 (formerly OSI NSAP-mapped)"),
        ("400::/6", "RFC 4291"),
        ("800::/5", "RFC 4291"),
        ("1000::/4", "RFC 4291"),
        ("4000::/3", "RFC 4291"),
        ("6000::/3", "RFC 4291"),
        ("8000::/3", "RFC 4291"),
        ("a000::/3", "RFC 4291"),
        ("c000::/3", "RFC 4291"),
        ("e000::/4", "RFC 4291"),
        ("f000::/5", "RFC 4291"),
        ("f800::/6", "RFC 4291"),
        ("fe00::/9", "RFC 4291"),
        ("fec0::/10", "RFC 3879 (formerly site-local)"),
    )
)

_IPV6_TABLE = IPV6_SPECIAL + IPV6_RESERVED_BY_IETF

# Any address with a zone id: the network is ::/0 because the zone, not the prefix, refuses.
ZONED = SpecialRange(IPv6Network("::/0"), "Address with a zone id", "RFC 4007", NOT_IN_REGISTRY)


def refusing_range(ip: IPv4Address | IPv6Address) -> SpecialRange | None:
    """The table entry that makes ``ip`` non-public (the most specific one), or ``None``
    when ``ip`` is public. For an IPv6 address embedding an IPv4 one (mapped, NAT64, 6to4),
    the entry refusing the embedded address."""
    if isinstance(ip, IPv4Address):
        return next((entry for entry in IPV4_SPECIAL if ip in entry.network), None)
    if not isinstance(ip, IPv6Address):
        raise TypeError(f"expected an IPv4Address or IPv6Address, not {type(ip).__name__}")
    if ip.scope_id:
        return ZONED
    for block, shift in EMBEDDED_IPV4:
        if ip in block:
            return refusing_range(IPv4Address((int(ip) >> shift) & 0xFFFFFFFF))
    return next((entry for entry in _IPV6_TABLE if ip in entry.network), None)


def is_public(ip: IPv4Address | IPv6Address) -> bool:
    """Whether a personal SMTP connection may reach ``ip``: ``False`` for every address in
    the tables above (or embedding such an IPv4 address) and for IPv6 with a zone id."""
    return refusing_range(ip) is None


ALLOWED_PORTS = (465, 587, 2525, 25)


def check_destination(host: str, port: int, *, ports: tuple[int, ...] = ALLOWED_PORTS) -> list[str]:
    """Resolve ``host`` once and return its addresses, all checked.

    Raises :class:`~emailsettings.exceptions.DestinationRefused` (a ``ValidationError``) for a
    port outside ``ports`` (SMTP's 465/587/2525/25 unless told) or any non-public address; with
    ``EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS`` on, every address and port is allowed. A host
    that does not resolve raises it with ``code="host_not_found"``.

    Every refusal that depends on the host's addresses says the same words: neither the
    address nor whether the name resolved is shown, so the SMTP form cannot be used to map
    internal names (the ``code`` tells them apart for the failure classification).
    """
    refused = _(
        "Il server SMTP indicato non è raggiungibile o non è consentito: usa il server "
        "pubblico del tuo provider, sulla porta 465 o 587."
    )
    allow_private = conf.allow_private_smtp_hosts()
    host = (host or "").strip()
    if not host:
        raise DestinationRefused(_("Indica il server SMTP."), code="host_missing")
    if not 0 < int(port) < 65536 or (not allow_private and int(port) not in ports):
        raise DestinationRefused(
            _("La porta %(port)s non è consentita: usa 465 (SSL) o 587 (STARTTLS).")
            % {"port": port},
            code="port_not_allowed",
        )
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        if err.errno == socket.EAI_AGAIN:
            raise DestinationRefused(
                refused,
                code="host_lookup_failed",
            ) from err
        raise DestinationRefused(
            refused,
            code="host_not_found",
        ) from err
    except UnicodeError as err:
        raise DestinationRefused(
            refused,
            code="host_not_found",
        ) from err
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(
            refused,
            code="host_not_found",
        )
    if not allow_private:
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError as err:
                raise DestinationRefused(
                    refused,
                    code="address_not_allowed",
                ) from err
            if not is_public(ip):
                raise DestinationRefused(
                    refused,
                    code="address_not_allowed",
                )
    return addresses
