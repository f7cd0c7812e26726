"""The mail transaction on a guarded connection (:mod:`emailsettings.mailbox.smtp`): MAIL, RCPT and
DATA — in one write when the server offers PIPELINING (RFC 2920, :func:`pipelined_envelope`) — then
the message data, dot-stuffed, and the final reply. Each phase is reported before it
starts, so a caller knows whether a failure came before or after the message data left;
every refusal is classified by :func:`emailsettings.mailbox.classify.classify` in its own phase.
"""

from __future__ import annotations

import contextlib
import email
import email.charset
import email.message
import email.policy
import logging
import re
import smtplib
from dataclasses import dataclass

from emailsettings import conf
from emailsettings.exceptions import AddressUnsupported
from emailsettings.mailbox.classify import reply_text, scrub
from emailsettings.mailbox.smtp import PhaseCallback, PhaseMixin, classified_error

logger = logging.getLogger(__name__)


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
        raise classified_error(err, phase="rcpt", preset_key=preset_key, secrets=()) from err


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
    only "data" is reported before it (:func:`pipelined_envelope`); each reply is
    still checked and classified in its own phase.

    An 8-bit message is declared ``BODY=8BITMIME`` (RFC 6152) when the server offers it and
    re-encoded quoted-printable when it does not."""
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
            raise classified_error(err, phase="data", preset_key=preset_key, secrets=()) from err
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
        raise classified_error(err, phase=phase, preset_key=preset_key, secrets=()) from err
    return SendReply(code=code, reply=scrub(reply_text(reply)))


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
    if isinstance(connection, PhaseMixin):
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
        raise classified_error(err, phase=err.phase, preset_key=preset_key, secrets=()) from err
    except (OSError, smtplib.SMTPException, UnicodeError) as err:
        raise classified_error(err, phase=phase, preset_key=preset_key, secrets=()) from err


# --- PIPELINING (RFC 2920) ------------------------------------------------------------------
# With a server 20–60 ms away each command's round trip costs as much as the message itself;
# pipelined, the envelope costs one round trip instead of two plus one per recipient. The
# message data still goes only after the server's 354 (RFC 2920 section 3.1: DATA ends a
# group), so whether the message can have left is known exactly as without pipelining.
# Every reply is read in order and judged in its own phase, as the sequential path does;
# after a refusal the session is reset (RSET) for the next message of the batch, and when
# the server nevertheless answered 354 to DATA, the only way out that sends no message is
# to drop the connection (the next message then opens a new session).


def _command_line(verb: str, address: str, options: list[str]) -> str:
    # Spelled as smtplib spells them, so a server sees the same commands either way.
    tail = "".join(f" {option}" for option in options)
    line = f"{verb}:{smtplib.quoteaddr(address)}{tail}"
    if any(ord(char) < 32 for char in line):
        # smtplib's putcmd refuses CR/LF too; an address must never end a command early.
        raise AddressUnsupported("Control characters in an envelope address.")
    return line


def pipelined_envelope(
    connection: smtplib.SMTP,
    from_addr: str,
    to_addrs: list[str],
    *,
    on_phase: PhaseCallback | None,
    preset_key: str | None,
    mail_options: list[str] | None = None,
) -> None:
    """Send MAIL, RCPT… and DATA together and check their replies; returns once DATA got
    ``354`` (the caller sends the data). Raises the classified
    :class:`~emailsettings.exceptions.DeliveryError` of the first refusal.

    Only "data" is reported before the write: the group ends with DATA, so from there on
    the attempt is judged like one that reached DATA."""
    try:
        sender, recipients, options = envelope_parts(connection, from_addr, to_addrs, mail_options)
        lines = [
            _command_line("mail FROM", sender, options),
            *(_command_line("rcpt TO", recipient, []) for recipient in recipients),
            "data",
        ]
    except AddressUnsupported as err:
        raise classified_error(err, phase=err.phase, preset_key=preset_key, secrets=()) from err
    if "SMTPUTF8" in options:
        connection.command_encoding = "utf-8"
    notify(on_phase, "data")
    try:
        connection.send("".join(f"{line}\r\n" for line in lines))
    except (OSError, smtplib.SMTPException, UnicodeError) as err:
        # Nothing was answered: judged like a MAIL that got no reply (a reused session the
        # server closed meanwhile is reopened by the sender).
        raise classified_error(err, phase="mail", preset_key=preset_key, secrets=()) from err

    refusal: tuple[str, BaseException] | None = None
    data_code: int | None = None
    expected = [("mail", from_addr), *(("rcpt", address) for address in to_addrs), ("data", "")]
    for phase, address in expected:
        try:
            code, reply = connection.getreply()
        except (OSError, smtplib.SMTPException) as err:
            # The server hung up or went silent: the session is gone. A refusal read
            # before says more than the silence that followed it.
            connection.close()
            if refusal is None:
                refusal = (phase, err)
            raise classified_error(
                refusal[1], phase=refusal[0], preset_key=preset_key, secrets=()
            ) from (refusal[1])
        if refusal is not None:
            if phase == "data":
                data_code = code
            continue
        if phase == "mail" and code != 250:
            refusal = (phase, smtplib.SMTPSenderRefused(code, reply, sender))
        elif phase == "rcpt" and code not in (250, 251):
            refusal = (phase, smtplib.SMTPRecipientsRefused({address: (code, reply)}))
        elif phase == "data":
            data_code = code
            if code != 354:
                refusal = (phase, smtplib.SMTPDataError(code, reply))
    if refusal is None:
        return
    if data_code == 354:
        # DATA was accepted although the envelope was not: ending it would send a message.
        logger.info("SMTP server accepted DATA after a refusal; dropping the session")
        connection.close()
    else:
        rset_quietly(connection)
    raise classified_error(
        refusal[1], phase=refusal[0], preset_key=preset_key, secrets=()
    ) from refusal[1]


def seven_bit(data: bytes) -> bytes:
    """``data`` with every 8-bit text part re-encoded quoted-printable, for a server that does
    not offer 8BITMIME (RFC 6152: 8-bit data must not be sent to it). Headers are already
    ASCII (encoded words); attachments are already base64."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in message.walk():
        if part.is_multipart():
            continue
        encoding = str(part.get("Content-Transfer-Encoding", "")).lower()
        payload = part.get_payload(decode=True)
        if encoding not in ("8bit", "binary", "") or not isinstance(payload, bytes):
            continue
        if payload.isascii():
            continue
        charset_name = part.get_content_charset() or "utf-8"
        charset = email.charset.Charset(charset_name)
        charset.body_encoding = email.charset.QP
        del part["Content-Transfer-Encoding"]
        text = payload.decode(charset_name, errors="replace").replace("\r\n", "\n")
        part.set_payload(text, charset=charset)
    return message.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
