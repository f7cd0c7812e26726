"""What the patient receives: the cover mail and the message that carries the invoice.

- ``keywords`` — the ``${keyword}`` whitelist with Italian labels;
- ``rendering`` — validation and rendering of the practitioner's templates
  (``string.Template``, never Django's engine);
- ``identity`` — who the mail says it is from (From / Reply-To per channel);
- ``message`` — the MIME message: text and HTML parts, the invoice PDF, Message-ID;
- ``reminders`` — the payment reminders' default texts and which version a patient gets;
- ``languages`` — which language version of the cover mail a patient gets.

The package face holds the contract only: ``render_cover_mail`` and ``validate_template``.
"""

from emailsettings.covermail.rendering import render_cover_mail, validate_template

__all__ = ["render_cover_mail", "validate_template"]
