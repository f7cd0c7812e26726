"""Development-only servers and their commands: the local SMTP test server (with its IMAP
side and "provider"), the local OAuth authorization server, an ESP stand-in and PEC receipts.

Never shipped: the production image leaves this folder out (``.dockerignore``), and the
settings install the app only outside production.
"""
