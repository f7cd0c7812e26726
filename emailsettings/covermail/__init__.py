"""What the patient receives: the cover mail and the message that carries the invoice.

- ``keywords`` — the ``${keyword}`` whitelist with Italian labels;
- ``validation`` — checking the practitioner's templates: syntax, limits, Italian errors and
  "forse intendevi" suggestions;
- ``rendering`` — rendering them for an invoice (``string.Template``'s pattern, never
  Django's engine), the HTML part, and the stored templates;
- ``identity`` — who the mail says it is from (From / Reply-To per channel);
- ``message`` — the MIME message: text and HTML parts, the invoice PDF, Message-ID;
- ``reminders`` — the payment reminders' default texts and which version a patient gets;
- ``languages`` — which language version of the cover mail a patient gets.

The package face holds the contract only: ``render_cover_mail`` and ``validate_template``.
"""

from emailsettings.covermail.rendering import render_cover_mail
from emailsettings.covermail.validation import validate_template

__all__ = ["render_cover_mail", "validate_template"]
