"""Middleware of the email module.

:class:`WebhookRateLimitMiddleware` bounds what one client address may post to the ESP
tracking webhooks (``/anymail/…``): the endpoint is public (authenticated, but a wrong secret
still costs a request) and every accepted event is a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.http import HttpRequest, HttpResponse

from emailsettings import conf
from emailsettings.limits import within_fixed_window
from psicogest.access import client_ip

logger = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/anymail/"
_WINDOW = 60


class WebhookRateLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(WEBHOOK_PREFIX):
            source = client_ip(request) or "unknown"
            key = f"emailsettings:webhook-rate:{source}"
            try:
                within = within_fixed_window(
                    key, limit=conf.webhook_rate_per_minute(), window=_WINDOW
                )
            except (redis.RedisError, OSError):
                # No cache, no count: the ESP's events must still land (never a 500).
                logger.warning("Webhook rate limit: cache unavailable, request let through")
                within = True
            if not within:
                response = HttpResponse("Too many requests", status=429, content_type="text/plain")
                response["Retry-After"] = str(_WINDOW)
                return response
        return self.get_response(request)
