"""The SSRF guard's own address table (emailsettings.mailbox.guard): every IANA special-purpose
block is refused whatever the interpreter's ``ipaddress`` thinks, embedded IPv4 addresses
are judged by themselves, and ordinary public mail servers stay allowed."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from emailsettings.mailbox import guard as ipranges
from emailsettings.mailbox.guard import is_public, refusing_range

REFUSED = [
    # IPv4 Special-Purpose Address Registry
    ("0.0.0.0", '"This host on this network"'),
    ("0.1.2.3", '"This network"'),
    ("10.1.2.3", "Private-Use"),
    ("100.64.0.1", "Shared Address Space"),
    ("100.127.255.254", "Shared Address Space"),
    ("127.0.0.1", "Loopback"),
    ("127.255.255.254", "Loopback"),
    ("169.254.169.254", "Link Local"),
    ("172.16.0.1", "Private-Use"),
    ("172.31.255.255", "Private-Use"),
    ("192.0.0.1", "IPv4 Service Continuity Prefix"),
    ("192.0.0.8", "IPv4 dummy address"),  # counted as global by Python 3.11.7
    ("192.0.0.9", "Port Control Protocol Anycast"),  # IANA: reachable; refused with its /24
    ("192.0.0.10", "Traversal Using Relays around NAT Anycast"),
    ("192.0.0.170", "NAT64/DNS64 Discovery"),
    ("192.0.0.171", "NAT64/DNS64 Discovery"),
    ("192.0.0.200", "IETF Protocol Assignments"),
    ("192.0.2.1", "Documentation (TEST-NET-1)"),
    ("192.31.196.1", "AS112-v4"),
    ("192.52.193.1", "AMT"),
    ("192.88.99.1", "Deprecated (6to4 Relay Anycast)"),  # counted as global by Python 3.11.7
    ("192.88.99.2", "6a44-relay anycast address"),
    ("192.168.1.1", "Private-Use"),
    ("192.175.48.6", "Direct Delegation AS112 Service"),
    ("198.18.0.1", "Benchmarking"),
    ("198.19.255.255", "Benchmarking"),
    ("198.51.100.7", "Documentation (TEST-NET-2)"),
    ("203.0.113.9", "Documentation (TEST-NET-3)"),
    ("224.0.0.1", "Multicast"),
    ("239.255.255.250", "Multicast"),
    ("240.0.0.1", "Reserved"),
    ("255.255.255.254", "Reserved"),
    ("255.255.255.255", "Limited Broadcast"),
    # IPv6 Special-Purpose Address Registry
    ("::1", "Loopback Address"),
    ("::", "Unspecified Address"),
    ("64:ff9b:1::1", "IPv4-IPv6 Translat. (local use)"),
    ("64:ff9b:1::8.8.8.8", "IPv4-IPv6 Translat. (local use)"),
    ("100::1", "Discard-Only Address Block"),
    ("100:0:0:1::1", "Dummy IPv6 Prefix"),
    ("2001::1", "TEREDO"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "TEREDO"),  # RFC 4380's example, public ends
    ("2001:1::1", "Port Control Protocol Anycast"),
    ("2001:1::2", "Traversal Using Relays around NAT Anycast"),
    ("2001:1::3", "DNS-SD Service Registration Protocol Anycast"),
    ("2001:1::4", "IETF Protocol Assignments"),
    ("2001:2::1", "Benchmarking"),
    ("2001:3::1", "AMT"),
    ("2001:4:112::1", "AS112-v6"),
    ("2001:10::1", "Deprecated (previously ORCHID)"),
    ("2001:20::1", "ORCHIDv2"),
    ("2001:30::1", "Drone Remote ID Protocol Entity Tags (DETs) Prefix"),
    ("2001:100::1", "IETF Protocol Assignments"),
    ("2001:1ff:ffff::1", "IETF Protocol Assignments"),
    ("2001:db8::1", "Documentation"),
    ("2620:4f:8000::1", "Direct Delegation AS112 Service"),
    ("3fff::1", "Documentation"),
    ("3fff:fff:ffff::1", "Documentation"),
    ("5f00::1", "Segment Routing (SRv6) SIDs"),
    ("fc00::1", "Unique-Local"),
    ("fd12:3456:789a::1", "Unique-Local"),
    ("fe80::1", "Link-Local Unicast"),
    ("ff02::1", "Multicast"),
    ("ff0e::1", "Multicast"),
    # IPv6 Address Space registry: outside Global Unicast 2000::/3
    ("::10.0.0.1", "Reserved by IETF"),  # deprecated IPv4-compatible form
    ("::8.8.8.8", "Reserved by IETF"),
    ("::ffff:0:8.8.8.8", "Reserved by IETF"),  # SIIT "IPv4-translated", not IPv4-mapped
    ("200::1", "Reserved by IETF"),
    ("4000::1", "Reserved by IETF"),
    ("8000::1", "Reserved by IETF"),
    ("e000::1", "Reserved by IETF"),
    ("fe00::1", "Reserved by IETF"),
    ("fec0::1", "Reserved by IETF"),
    # IPv4-mapped: the embedded address decides
    ("::ffff:127.0.0.1", "Loopback"),
    ("::ffff:10.0.0.1", "Private-Use"),
    ("::ffff:169.254.169.254", "Link Local"),
    ("::ffff:192.0.0.8", "IPv4 dummy address"),
    ("::ffff:192.88.99.1", "Deprecated (6to4 Relay Anycast)"),
    # NAT64 well-known prefix: the embedded address decides
    ("64:ff9b::127.0.0.1", "Loopback"),
    ("64:ff9b::10.0.0.1", "Private-Use"),
    ("64:ff9b::100.64.0.1", "Shared Address Space"),
    ("64:ff9b::198.18.0.1", "Benchmarking"),
    # 6to4: the IPv4 address in bits 16-48 decides
    ("2002:7f00:1::1", "Loopback"),
    ("2002:a00:1::1", "Private-Use"),
    ("2002:c0a8:101::1", "Private-Use"),
    ("2002:c000:208::1", "Documentation (TEST-NET-1)"),
    ("2002:c058:6301::1", "Deprecated (6to4 Relay Anycast)"),
    # zone ids: a link, never the Internet
    ("fe80::1%eth0", "Address with a zone id"),
    ("fe80::1%1", "Address with a zone id"),
    ("2a00:1450::1%eth0", "Address with a zone id"),
    ("::ffff:8.8.8.8%eth0", "Address with a zone id"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "142.250.27.108",
    "11.0.0.1",
    "100.63.255.255",  # just below 100.64.0.0/10
    "100.128.0.0",  # just above it
    "126.255.255.255",
    "128.0.0.1",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "192.31.195.255",
    "192.88.98.255",
    "192.88.100.0",
    "192.169.0.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2a00:1450::1",
    "2a00:1450:4001:80b::201a",
    "2001:4860:4860::8888",  # in 2001::/16 but past 2001::/23
    "2001:200::1",  # the first address after 2001::/23
    "2606:4700:4700::1111",
    "2620:4f:7fff::1",
    "2620:4f:8001::1",
    "2c0f:fb50:4002::1",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
]


def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(("text", "name"), REFUSED)
def test_special_purpose_addresses_are_refused_with_the_registry_name(text, name):
    ip = address(text)
    assert not is_public(ip)
    entry = refusing_range(ip)
    assert entry is not None and entry.name == name


@pytest.mark.parametrize("text", PUBLIC)
def test_ordinary_public_addresses_are_allowed(text):
    ip = address(text)
    assert is_public(ip)
    assert refusing_range(ip) is None


def boom(self):
    raise AssertionError("the guard must not ask ipaddress for its classification")


@pytest.mark.parametrize(
    "name",
    [
        "is_global",
        "is_private",
        "is_reserved",
        "is_loopback",
        "is_link_local",
        "is_multicast",
        "is_unspecified",
        "ipv4_mapped",
        "sixtofour",
        "teredo",
    ],
)
def test_the_answer_does_not_come_from_the_interpreters_ipaddress(monkeypatch, name):
    """The result depends only on the project's table, not on the patch level's idea of
    `is_global` and friends (which let 192.0.0.8 and 192.88.99.1 through on 3.11.7)."""
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        if hasattr(cls, name):
            monkeypatch.setattr(cls, name, property(boom))
    for text, _name in REFUSED:
        assert not is_public(address(text))
    for text in PUBLIC:
        assert is_public(address(text))


TABLE = ipranges.IPV4_SPECIAL + ipranges.IPV6_SPECIAL + ipranges.IPV6_RESERVED_BY_IETF


@pytest.mark.parametrize("entry", TABLE, ids=lambda entry: str(entry.network))
def test_every_table_entry_is_refused_from_its_first_to_its_last_address(entry):
    for ip in (entry.network.network_address, entry.network.broadcast_address):
        found = refusing_range(ip)
        assert found is not None
        # The first match may be a more specific entry inside this one, never another block.
        assert found.network.subnet_of(entry.network)


@pytest.mark.parametrize(
    "table", [ipranges.IPV4_SPECIAL, ipranges.IPV6_SPECIAL + ipranges.IPV6_RESERVED_BY_IETF]
)
def test_a_more_specific_entry_comes_before_the_block_that_contains_it(table):
    """The first match names the reason, so it must be the most specific one."""
    for earlier, later in itertools.combinations(table, 2):
        assert not (
            later.network != earlier.network and later.network.subnet_of(earlier.network)
        ), f"{later.network} is inside {earlier.network} but listed after it"


def test_the_ipv6_address_space_registry_tiles_the_whole_space():
    """Reserved by IETF + Global Unicast + ULA + link-local + multicast = ::/0, no overlap:
    the transcription of the IANA IPv6 Address Space registry has no gap."""
    blocks = [entry.network for entry in ipranges.IPV6_RESERVED_BY_IETF] + [
        ipranges.IPV6_GLOBAL_UNICAST,
        ipaddress.IPv6Network("fc00::/7"),
        ipaddress.IPv6Network("fe80::/10"),
        ipaddress.IPv6Network("ff00::/8"),
    ]
    assert sum(block.num_addresses for block in blocks) == 2**128
    for one, other in itertools.combinations(blocks, 2):
        assert not one.overlaps(other), (one, other)


def test_every_registry_value_is_recorded():
    """Each entry keeps what IANA says about global reachability (some are reachable and
    still refused: the docstring says why)."""
    allowed = {
        ipranges.REACHABLE,
        ipranges.NOT_REACHABLE,
        ipranges.NOT_APPLICABLE,
        ipranges.TERMINATED,
        ipranges.NOT_IN_REGISTRY,
    }
    assert {entry.globally_reachable for entry in TABLE} <= allowed
    reachable = {str(e.network) for e in TABLE if e.globally_reachable == ipranges.REACHABLE}
    assert {"192.0.0.9/32", "192.31.196.0/24", "2620:4f:8000::/48"} <= reachable


def test_only_address_objects_are_accepted():
    with pytest.raises(TypeError):
        is_public("8.8.8.8")
