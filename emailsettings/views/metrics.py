"""``/metrics`` for the operator's Prometheus: the families of
:mod:`emailsettings.health.metrics`, behind a token from the environment
(``EMAILSETTINGS_METRICS_TOKEN``: ``Authorization: Bearer <token>``, or HTTP basic auth
with the token as password, as Prometheus' ``basic_auth`` sends it). Without a configured
token the endpoint does not exist (404); a wrong or missing one gets 401."""

from __future__ import annotations

import base64
import binascii
import hmac

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from emailsettings import conf
from emailsettings.health.metrics import OutboxCollector


def _presented(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _sep, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = conf.metrics_token()
    if not token:
        raise Http404("metrics are not enabled")
    if not hmac.compare_digest(_presented(request).encode(), token.encode()):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Basic realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OutboxCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
