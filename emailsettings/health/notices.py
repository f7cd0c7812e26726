"""The platform's own mail to practitioners (alerts, reputation notices), kept apart from
the invoices: its own From (``EMAILSETTINGS_NOTICE_FROM``) and its own ESP stream or
identity (``EMAILSETTINGS_NOTICE_ESP_EXTRA``, anymail's ``esp_extra``, e.g. a Postmark
message stream), so one tenant's invoice bounces never affect them. No patient data, no
secret."""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection

from emailsettings import conf


def notice_message(*, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text notice to ``to`` on the notices' identity and stream."""
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=conf.notice_from(),
        to=[to],
        connection=get_connection(),
    )
    extra = conf.notice_esp_extra()
    if extra:
        # anymail reads this attribute on any EmailMessage; other backends ignore it.
        message.esp_extra = extra  # type: ignore[attr-defined]
    return message
