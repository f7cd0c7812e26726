"""Fixtures and helpers for "Accedi con Google / Microsoft" tests: a local authorization
server (:class:`devtools.oauthserver.LocalAuthorizationServer`, built with Authlib's server
components) standing in for Google and Microsoft, reached through settings only.

Registered for every test through ``pytest_plugins`` in ``tests/conftest.py``: the
``oauth_provider`` fixture configures Google with a server; ``oauth_server_factory`` makes
more (Microsoft, or two at once). :func:`consent` does what the practitioner does on the
consent page; :func:`configure` / :func:`worker_env` point the product (or a worker process)
at a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devtools.oauthserver import LocalAuthorizationServer

CLIENT_ID = "psicogest-test-client"
CLIENT_SECRET = "segreto-del-client-di-prova"
REDIRECT_BASE = "http://testserver"
CALLBACK_PATH = "/email/impostazioni/smtp/accedi-ritorno/"


def consent(authorize_url: str, *, email: str, allow: bool = True) -> str:
    """What the practitioner does on the consent page; returns the redirect back (the
    callback URL with ``code`` and ``state``, or ``error``)."""
    page = requests.get(authorize_url, timeout=10, allow_redirects=False)
    assert page.status_code == 200, page.text
    params = {key: values[0] for key, values in parse_qs(urlsplit(authorize_url).query).items()}
    form = {**params, "email": email, **({"confirm": "yes"} if allow else {})}
    base = authorize_url.split("?", 1)[0]
    answer = requests.post(base, data=form, timeout=10, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def callback_path(location: str) -> str:
    """The product's callback as the Django test client requests it (path and query)."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == REDIRECT_BASE, location
    return parts.path + "?" + parts.query


def configure(
    settings: Any, provider: str, server: LocalAuthorizationServer, *, base: str = REDIRECT_BASE
) -> None:
    """Point the product's ``provider`` at ``server``: settings only."""
    setattr(settings, f"{provider.upper()}_OAUTH_CLIENT_ID", CLIENT_ID)
    setattr(settings, f"{provider.upper()}_OAUTH_CLIENT_SECRET", CLIENT_SECRET)
    settings.EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL = base
    endpoints = dict(getattr(settings, "EMAILSETTINGS_OAUTH_ENDPOINTS", {}) or {})
    endpoints[provider] = server.endpoints()
    settings.EMAILSETTINGS_OAUTH_ENDPOINTS = endpoints


def worker_env(
    provider: str, server: LocalAuthorizationServer, *, base: str = REDIRECT_BASE
) -> dict[str, str]:
    """The same configuration for a real worker process (its settings read the environment)."""
    return {
        f"{provider.upper()}_OAUTH_CLIENT_ID": CLIENT_ID,
        f"{provider.upper()}_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL": base,
        "EMAILSETTINGS_OAUTH_ENDPOINTS": json.dumps({provider: server.endpoints()}),
    }


@pytest.fixture
def oauth_server_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    # Authlib's server refuses plain-HTTP requests unless told this is a local test.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    servers: list[LocalAuthorizationServer] = []

    def start(**kwargs: Any) -> LocalAuthorizationServer:
        kwargs.setdefault("redirect_uri", REDIRECT_BASE + CALLBACK_PATH)
        kwargs.setdefault("client_id", CLIENT_ID)
        kwargs.setdefault("client_secret", CLIENT_SECRET)
        server = LocalAuthorizationServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def oauth_provider(settings: Any, oauth_server_factory: Callable[..., Any]) -> Any:
    """Google, configured with a local authorization server."""
    server = oauth_server_factory()
    configure(settings, "google", server)
    return server


def authorize_query(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
