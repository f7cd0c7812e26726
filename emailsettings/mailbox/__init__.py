"""The practitioner's own mailbox on the wire.

- ``presets`` — the provider table (Gmail, Aruba, Libero, …), data only;
  ``autodetect`` — the settings guessed from an address (domain table, then MX).
- ``guard`` — which hosts and ports a personal connection may reach
  (:func:`check_destination`); ``smtp`` — the guarded connection (TLS, login, XOAUTH2).
- ``transaction`` — MAIL / RCPT / DATA on that connection, pipelined when offered;
  ``classify`` — any failure of a session into a ``Failure``.
- ``imap`` — the guarded IMAP connection (read-only use); ``oauth`` — Google and Microsoft
  sign-in, token refresh; ``state`` — the mailbox's health row.

The package face holds the contract only: ``PRESETS`` and ``check_destination``.
"""

from emailsettings.mailbox.guard import check_destination
from emailsettings.mailbox.presets import PRESETS

__all__ = ["PRESETS", "check_destination"]
