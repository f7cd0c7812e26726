"""The one stand-in for public DNS in the tests (the suite never queries real DNS).

``FakeResolver`` answers from a zone table ``{(name, type): [record text, …]}`` with real
dnspython rdata (so code reads ``.exchange``, ``.target``, ``.strings`` as in production);
any other name is NXDOMAIN, or every query raises ``error``. ``mx_zone`` builds the table
for MX look-ups.
"""

from __future__ import annotations

import dns.rdata
import dns.resolver


class FakeResolver:
    def __init__(
        self,
        records: dict[tuple[str, str], list[str]] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.records = records or {}
        self.error = error
        self.queries: list[tuple[str, str, float]] = []

    def resolve(self, qname, rdtype, *, lifetime):
        self.queries.append((qname, rdtype, lifetime))
        if self.error:
            raise self.error
        if (qname, rdtype) not in self.records:
            raise dns.resolver.NXDOMAIN()
        return [dns.rdata.from_text("IN", rdtype, text) for text in self.records[(qname, rdtype)]]


def mx_zone(answers: dict[str, list[tuple[int, str]]]) -> FakeResolver:
    """A resolver answering MX queries: ``{"studio.it": [(10, "mx.aruba.it."), …]}``."""
    return FakeResolver(
        {
            (domain, "MX"): [f"{preference} {host}" for preference, host in hosts]
            for domain, hosts in answers.items()
        }
    )
