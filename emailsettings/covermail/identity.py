"""Who a mail says it is from: the From / Reply-To policy of each channel.

Smart Mail sends on the platform's domain, so the practitioner appears only as a display
name (``"Dott.ssa Maria Rossi via PsicoGest" <fatture@…>``) and replies go to the
practitioner through ``Reply-To``. No ``Sender:`` header is ever added: with the platform
address in From it would be redundant, and some clients show it as "on behalf of".

When the practitioner's domain is verified for the platform's DKIM (``dns.py``: a CNAME at
``psicogest._domainkey.<domain>``, checked with "Verifica dominio"), Smart Mail sends from
the practitioner's own address instead (``"Dott.ssa Maria Rossi" <maria@studiorossi.it>``,
no "via", no Reply-To needed); the envelope sender stays the platform's, so bounces still
reach the platform. Anything less (never checked, a failed or erroring check, an address
on another domain since, a free-mail domain) keeps the rewrite.

Personal SMTP sends as the practitioner's own mailbox: From is that mailbox (providers
refuse anything else, see smtp-errors.md "SendAsDenied").

Display names are cleaned: no characters that end a header line, no ``@ < > "`` and nothing
that looks like an address (a display name must not pretend to be another address), at
most ``DISPLAY_NAME_MAX_LENGTH`` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emailsettings import conf
from emailsettings.smartmail.senderdomain import sender_domain_verified

if TYPE_CHECKING:
    from emailsettings.models import SmtpAccount
    from psicogest.models import Practitioner

DISPLAY_NAME_MAX_LENGTH = 60

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ADDRESS_LIKE = re.compile(r"\S*@\S*")
_FORBIDDEN = re.compile(r"[@<>\"\\,;:()\[\]]")


@dataclass(frozen=True)
class Identity:
    """The From and Reply-To headers of a mail, each a full ``"Name" <address>`` value."""

    from_header: str
    reply_to: str
    envelope_from: str


def clean_display_name(name: str, *, max_length: int = DISPLAY_NAME_MAX_LENGTH) -> str:
    """``name`` fit for a header's display name (see the module docstring)."""
    name = _CONTROL.sub(" ", name or "")
    name = _ADDRESS_LIKE.sub(" ", name)
    name = _FORBIDDEN.sub(" ", name)
    name = re.sub(r"\s+", " ", name).strip()
    if len(name) > max_length:
        name = name[:max_length].rstrip()
    return name


def clean_address(address: str) -> str:
    """An address with nothing that could end a header or add another address."""
    address = _CONTROL.sub("", address or "").strip()
    if any(char in address for char in '<>",;: ') or address.count("@") != 1:
        raise ValueError("not a single email address")
    return address


def format_address(name: str, address: str) -> str:
    """``"Name" <address>`` (or the bare address without a name); name already cleaned."""
    address = clean_address(address)
    return f'"{name}" <{address}>' if name else address


def practitioner_name(practitioner: Practitioner) -> str:
    return clean_display_name(practitioner.display_name or practitioner.email.split("@")[0])


def smart_mail_identity(
    practitioner: Practitioner, *, own_domain_verified: bool | None = None
) -> Identity:
    """From the practitioner's own address when their domain is verified (looked up when
    ``own_domain_verified`` is None), else from the platform address on behalf of the
    practitioner with replies to the practitioner."""
    if own_domain_verified is None:
        own_domain_verified = sender_domain_verified(practitioner=practitioner)
    platform_address = conf.platform_from()
    if own_domain_verified:
        return Identity(
            from_header=format_address(practitioner_name(practitioner), practitioner.email),
            reply_to="",
            envelope_from=clean_address(platform_address),
        )
    suffix = f" via {clean_display_name(conf.platform_name())}"
    own = clean_display_name(
        practitioner_name(practitioner), max_length=DISPLAY_NAME_MAX_LENGTH - len(suffix)
    )
    display = clean_display_name(f"{own}{suffix}" if own else suffix.strip())
    return Identity(
        from_header=format_address(display, platform_address),
        reply_to=format_address(practitioner_name(practitioner), practitioner.email),
        envelope_from=clean_address(platform_address),
    )


def smtp_display_name(account: SmtpAccount, practitioner: Practitioner) -> str:
    """The cleaned sender name of the practitioner's mailbox (invoices and the test mail)."""
    return clean_display_name(account.sender_name) or practitioner_name(practitioner)


def smtp_identity(account: SmtpAccount, practitioner: Practitioner) -> Identity:
    """From the practitioner's own mailbox; no separate Reply-To is needed."""
    name = smtp_display_name(account, practitioner)
    return Identity(
        from_header=format_address(name, account.email),
        reply_to="",
        envelope_from=clean_address(account.email),
    )


def message_id_domain(address: str) -> str:
    """The domain a Message-ID is generated on: the sending address's domain."""
    domain = address.rsplit("@", 1)[-1].strip().lower()
    return re.sub(r"[^a-z0-9.-]", "", domain) or "psicogest.invalid"
