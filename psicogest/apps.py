from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PsicogestConfig(AppConfig):
    name = "psicogest"
    verbose_name = _("PsicoGest")
