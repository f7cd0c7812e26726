"""Every SMTP reply has a deadline of its own (a server dripping continuation lines never
lets a socket timeout expire): one watchdog thread per connection enforces them, re-armed
for each reply instead of a new timer thread each time."""

from __future__ import annotations

import socket
import threading

import pytest

from emailsettings.mailbox import smtp


class Connection(smtp.PhaseMixin):
    """The deadline part of the guarded SMTP connection, on one end of a socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def watchdogs() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "smtp-deadline")


def read_one_byte(sock: socket.socket) -> bytes:
    data = sock.recv(1)
    if not data:  # the watchdog shut the socket down
        raise ConnectionResetError("connection closed")
    return data


def test_a_later_reply_still_has_its_deadline_on_the_same_watchdog():
    ours, server = socket.socketpair()
    connection = Connection(ours)
    before = watchdogs()
    try:
        for _reply in range(3):
            server.sendall(b"2")
            with connection.deadline(30):
                assert read_one_byte(ours) == b"2"

        # The server stops answering: the next reply's deadline shuts the socket down.
        with pytest.raises(TimeoutError, match="No complete answer"):
            with connection.deadline(0.2):
                read_one_byte(ours)

        assert watchdogs() - before <= 1
    finally:
        if connection._watchdog is not None:
            connection._watchdog.close()
        ours.close()
        server.close()
