"""PsicoGest host product: settings, URLs, the Celery app and the host's own models."""

from psicogest.celery import app as celery_app

__all__ = ["celery_app"]
