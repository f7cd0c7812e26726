"""What comes back after sending, and what it tells the outbox.

- ``webhooks`` — Smart Mail's ESP events (anymail's normalised ``tracking`` signal);
- ``reader`` — the practitioner's own mailbox read over IMAP (opt-in), never changing a flag;
- ``bounces`` — bounce reports found there (RFC 3464 and real-world formats);
- ``pec`` — PEC receipts (accettazione, consegna, mancata consegna), kept as proof.

Everything here is evidence written by anyone: each reader parses, then asks the outbox's
after-send rule (:mod:`emailsettings.outbox.lifecycle`) what the news does to a delivery.
"""
