from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EmailSettingsConfig(AppConfig):
    name = "emailsettings"
    verbose_name = _("Impostazioni email")

    def ready(self) -> None:
        from emailsettings import (
            checks,  # noqa: F401  (registers the system checks)
            receivers,  # noqa: F401  (anymail tracking webhooks)
        )
