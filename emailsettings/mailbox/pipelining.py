"""SMTP PIPELINING (RFC 2920): MAIL FROM, every RCPT TO and DATA in one write.

With a server 20–60 ms away each command's round trip costs as much as the message
itself; pipelined, the envelope costs one round trip instead of two plus one per recipient.
:func:`pipelined_envelope` is what :func:`~emailsettings.mailbox.transaction.send_message`
runs when the server offers PIPELINING; the message data still goes only after the server's ``354``
(RFC 2920 section 3.1: DATA ends a group), so whether the message can have left is known
exactly as without pipelining.

Every reply is read in order and judged in its own phase, as the sequential path does: a
refused sender is a "mail" failure, a refused recipient a "rcpt" failure (it fails only its
own delivery), a refused DATA a "data" failure. After a refusal the session is reset
(``RSET``) for the next message of the batch; when the server nevertheless answered
``354`` to DATA, the only way out that sends no message is to drop the connection (the
next message then opens a new session).
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable

from emailsettings.mailbox.classify import AddressUnsupported
from emailsettings.mailbox.smtp import _fail
from emailsettings.mailbox.transaction import envelope_parts, notify, rset_quietly

logger = logging.getLogger(__name__)

PhaseCallback = Callable[[str], None]


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
        raise _fail(err, phase=err.phase, preset_key=preset_key, secrets=()) from err
    if "SMTPUTF8" in options:
        connection.command_encoding = "utf-8"
    notify(on_phase, "data")
    try:
        connection.send("".join(f"{line}\r\n" for line in lines))
    except (OSError, smtplib.SMTPException, UnicodeError) as err:
        # Nothing was answered: judged like a MAIL that got no reply (a reused session the
        # server closed meanwhile is reopened by the sender).
        raise _fail(err, phase="mail", preset_key=preset_key, secrets=()) from err

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
            raise _fail(refusal[1], phase=refusal[0], preset_key=preset_key, secrets=()) from (
                refusal[1]
            )
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
    raise _fail(refusal[1], phase=refusal[0], preset_key=preset_key, secrets=()) from refusal[1]
