"""The guarded IMAP connection refuses what the SMTP guard refuses, in IMAP's own words."""

from __future__ import annotations

import pytest

from emailsettings.exceptions import ImapError
from emailsettings.mailbox.imap import ImapServer, open_mailbox


@pytest.mark.parametrize(
    ("host", "port", "words"),
    [
        ("127.0.0.1", 993, "Il server IMAP indicato non è raggiungibile o non è consentito"),
        ("10.1.2.3", 993, "Il server IMAP indicato non è raggiungibile o non è consentito"),
        ("imap.example.com", 25, "Per leggere la casella usa la porta 993"),
        ("", 993, "Indica il server IMAP"),
    ],
)
def test_a_refused_imap_destination_is_explained_in_imap_words(settings, host, port, words):
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    with pytest.raises(ImapError) as refused:
        open_mailbox(ImapServer(host, port, "ssl"), username="u", password="p", timeout=2)
    assert words in str(refused.value)
    assert "SMTP" not in str(refused.value)
