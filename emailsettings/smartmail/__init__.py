"""The platform channel, Smart Mail: the practitioner's sender domain (SPF, DKIM, DMARC)
checked before their own address may stand in From (``senderdomain``). Its quota and warm-up
are in :mod:`emailsettings.limits`; the ESP sender is in :mod:`emailsettings.outbox.senders`.
"""
