"""Keeping the practitioner's mailbox honest.

- ``verify`` — "Verifica connessione" and "Invia una mail di prova", run by a worker;
- ``daily`` — the daily check of every mailbox in use, and the notice after a batch;
- ``alerts`` — the "your mailbox needs attention" email to the practitioner.
"""
