"""The mail transaction on a guarded connection (:mod:`emailsettings.mailbox.smtp`): MAIL, RCPT and
DATA — in one write when the server offers PIPELINING (RFC 2920, :mod:`.pipelining`) — then
the message data, dot-stuffed, and the final reply. Each phase is reported before it
starts, so a caller knows whether a failure came before or after the message data left;
every refusal is classified by :func:`emailsettings.mailbox.classify.classify` in its own phase.
"""

from __future__ import annotations

import contextlib
import email.message
import re
import smtplib
from dataclasses import dataclass

from emailsettings import conf
from emailsettings.mailbox.classify import AddressUnsupported, _text, scrub
from emailsettings.mailbox.smtp import PhaseCallback, _fail, _PhaseMixin


@dataclass(frozen=True)
class SendReply:
    """The server's final answer to DATA (accepted)."""

    code: int
    reply: str


def probe_envelope(
    connection: smtplib.SMTP,
    *,
    from_addr: str,
    to_addr: str,
    on_phase: PhaseCallback | None = None,
    preset_key: str | None = None,
) -> None:
    """MAIL FROM and RCPT TO without sending anything, then RSET (the "verify" probe)."""
    _envelope(connection, from_addr, [to_addr], on_phase=on_phase, preset_key=preset_key)
    try:
        connection.rset()
    except (OSError, smtplib.SMTPException) as err:
        raise _fail(err, phase="rcpt", preset_key=preset_key, secrets=()) from err


def send_message(
    connection: smtplib.SMTP,
    *,
    message: bytes | email.message.Message,
    from_addr: str,
    to_addrs: list[str],
    on_phase: PhaseCallback | None = None,
    preset_key: str | None = None,
) -> SendReply:
    """MAIL, RCPT (every recipient must be accepted), DATA. Phases reported: "mail",
    "rcpt", "data", then "data_sent" once the whole message is out — a failure after that
    raises :class:`~emailsettings.exceptions.UnknownOutcomeError`.

    When the server offers PIPELINING (RFC 2920) the three commands go in one write and
    only "data" is reported before it (see :mod:`emailsettings.mailbox.pipelining`); each reply is
    still checked and classified in its own phase.

    An 8-bit message is declared ``BODY=8BITMIME`` (RFC 6152) when the server offers it and
    re-encoded quoted-printable when it does not."""
    from emailsettings.covermail.message import seven_bit

    if isinstance(message, email.message.Message):
        data = message.as_bytes()
    else:
        data = message
    options: list[str] = []
    if not data.isascii():
        if connection.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        else:
            data = seven_bit(data)
    if connection.has_extn("pipelining") and conf.smtp_pipelining():
        from emailsettings.mailbox.pipelining import pipelined_envelope

        pipelined_envelope(
            connection,
            from_addr,
            to_addrs,
            on_phase=on_phase,
            preset_key=preset_key,
            mail_options=options,
        )
    else:
        _envelope(
            connection,
            from_addr,
            to_addrs,
            on_phase=on_phase,
            preset_key=preset_key,
            mail_options=options,
        )
        notify(on_phase, "data")
        try:
            connection.putcmd("data")
            code, reply = connection.getreply()
            if code != 354:
                raise smtplib.SMTPDataError(code, reply)
        except (OSError, smtplib.SMTPException) as err:
            raise _fail(err, phase="data", preset_key=preset_key, secrets=()) from err
    return _send_data(connection, data, on_phase=on_phase, preset_key=preset_key)


def _send_data(
    connection: smtplib.SMTP,
    data: bytes,
    *,
    on_phase: PhaseCallback | None,
    preset_key: str | None,
) -> SendReply:
    """The message data after the server's 354, and its final reply."""
    phase = "data"
    try:
        payload = dot_stuffed(data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        # The data and the final reply together: a slow reader must not hold the session
        # forever either (a generous rate for the payload on top of the command timeout).
        with _deadline(connection, len(payload) / 50_000):
            connection.send(payload + b".\r\n")
            phase = "data_sent"
            notify(on_phase, phase)
            code, reply = connection.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    except (OSError, smtplib.SMTPException) as err:
        raise _fail(err, phase=phase, preset_key=preset_key, secrets=()) from err
    return SendReply(code=code, reply=scrub(_text(reply)))


def dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 4.5.2: CRLF line ends, and a leading "." doubled (dot-stuffing). A message
    whose lines all end in CRLF already (every message the product builds) takes two
    substring passes instead of two regular expressions over 40 KB."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = re.sub(rb"\r\n|\n|\r", b"\r\n", data)
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _deadline(connection: smtplib.SMTP, extra: float) -> contextlib.AbstractContextManager[None]:
    if isinstance(connection, _PhaseMixin):
        return connection.deadline(connection.command_timeout + extra)
    return contextlib.nullcontext()


def rset_quietly(connection: smtplib.SMTP) -> None:
    # Leaves the session clean for the next message of a batch; the refusal is what matters.
    try:
        connection.rset()
    except (OSError, smtplib.SMTPException):
        pass


def notify(on_phase: PhaseCallback | None, phase: str) -> None:
    if on_phase is not None:
        on_phase(phase)


def envelope_address(address: str, *, smtputf8: bool) -> str:
    """``address`` as it goes in MAIL FROM / RCPT TO: the domain IDNA-encoded
    (``università.it`` → ``xn--universit-y1a.it``); a non-ASCII local part only when the
    server offers SMTPUTF8 (RFC 6531), else :class:`AddressUnsupported`."""
    local, _at, domain = address.strip().rpartition("@")
    if not domain.isascii():
        import idna

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as err:
            raise AddressUnsupported(f"Invalid international domain: {err}") from err
    if not local.isascii() and not smtputf8:
        raise AddressUnsupported(
            "The address has non-ASCII characters before the @ and the server does not "
            "offer SMTPUTF8."
        )
    return f"{local}@{domain}" if local else domain


def envelope_parts(
    connection: smtplib.SMTP,
    from_addr: str,
    to_addrs: list[str],
    mail_options: list[str] | None = None,
) -> tuple[str, list[str], list[str]]:
    """The sender, the recipients and the MAIL options as they go on the wire (IDNA
    domains, ``SMTPUTF8`` when a local part needs it); :class:`AddressUnsupported` (its
    ``phase`` says which command) when an address cannot go."""
    options = list(mail_options or ())
    smtputf8 = connection.has_extn("smtputf8")
    if smtputf8 and not all(
        address.rpartition("@")[0].isascii() for address in (from_addr, *to_addrs)
    ):
        options.append("SMTPUTF8")
    try:
        sender = envelope_address(from_addr, smtputf8=smtputf8)
    except AddressUnsupported as err:
        err.phase = "mail"
        raise
    recipients = [envelope_address(address, smtputf8=smtputf8) for address in to_addrs]
    return sender, recipients, options


def _envelope(
    connection: smtplib.SMTP,
    from_addr: str,
    to_addrs: list[str],
    *,
    on_phase: PhaseCallback | None,
    preset_key: str | None,
    mail_options: list[str] | None = None,
) -> None:
    phase = "mail"
    notify(on_phase, phase)
    try:
        sender, recipients, options = envelope_parts(connection, from_addr, to_addrs, mail_options)
        code, reply = connection.mail(sender, options)
        if code != 250:
            rset_quietly(connection)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        phase = "rcpt"
        notify(on_phase, phase)
        for address, recipient in zip(to_addrs, recipients, strict=True):
            code, reply = connection.rcpt(recipient)
            if code not in (250, 251):
                rset_quietly(connection)
                raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
    except AddressUnsupported as err:
        raise _fail(err, phase=err.phase, preset_key=preset_key, secrets=()) from err
    except (OSError, smtplib.SMTPException, UnicodeError) as err:
        raise _fail(err, phase=phase, preset_key=preset_key, secrets=()) from err
