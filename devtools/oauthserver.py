"""A real OAuth 2.0 / OpenID Connect authorization server on loopback — the "provider di
prova" of ``make run`` (``manage.py run_oauth_test_server``) and the stand-in for Google and
Microsoft in the tests (``tests/support/oauth_server.py``). Development only.

Built with Authlib's server components — ``AuthorizationServer``, the authorization-code
grant with PKCE (``CodeChallenge(required=True)``) and OpenID Connect ID tokens
(``OpenIDCode``, RS256 with a key made at start), the refresh-token grant, RFC 7009
revocation and RFC 7662 introspection — behind a small WSGI adapter, served by ``wsgiref``
in a thread. The product reaches it through settings only (:meth:`endpoints`).

- ``GET /authorize`` validates the request and shows a consent page (a form);
  ``POST /authorize`` with ``email=`` and ``confirm=yes`` redirects to the client with a code
  (``confirm`` absent: ``access_denied``). With ``open_registration`` any address may consent.
- ``POST /token`` checks the client secret and the PKCE verifier; codes are single-use;
  ``rotate_refresh_tokens`` makes refreshes issue a new refresh token (Microsoft's way).
- ``POST /revoke``, ``POST /introspect``, ``GET /jwks``.
- :meth:`LocalAuthorizationServer.check_bearer` is what an SMTP test server's XOAUTH2 asks
  (in the same process; :func:`remote_bearer_check` asks ``/introspect`` from another one).
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

import requests
from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error, TokenMixin, grants
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import AuthorizationCodeMixin
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey

from devtools.smtpserver import wait_for_interrupt


@dataclass
class User:
    email: str
    sub: str = field(default_factory=lambda: secrets.token_hex(8))

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret or "", self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token(TokenMixin):
    client_id: str
    user: User
    access_token: str
    refresh_token: str
    scope: str
    expires_at: float
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Any:
        return None


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._values.items()}

    @property
    def datalist(self) -> defaultdict[str, list]:
        return defaultdict(list, self._values)


class _Request(OAuth2Request):
    def __init__(
        self, method: str, uri: str, headers: dict[str, str], args: dict, form: dict
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args, self._form = args, form
        self.payload = _Payload({**args, **form})

    @property
    def args(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._args.items()}

    @property
    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._form.items()}


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        self.server.codes[code] = Code(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = self.server.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> User:
        return authorization_code.user


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        self.server.refreshes += 1
        found = self.server.by_refresh.get(refresh_token)
        return found if found is not None and not found.revoked else None

    def authenticate_user(self, credential: Token) -> User:
        return credential.user

    def revoke_old_credential(self, credential: Token) -> None:
        # Called after every refresh: only a rotating provider retires the old token.
        if self.INCLUDE_NEW_REFRESH_TOKEN:
            credential.revoked = True


class _IdToken(OpenIDCode):
    def __init__(self, server: LocalAuthorizationServer) -> None:
        super().__init__(require_nonce=True)
        self.local = server

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.local.signing_key

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        claims: dict[str, Any] = {"iss": self.local.issuer, "aud": [client.client_id]}
        if self.local.tenant:
            # Microsoft's multi-tenant tokens: the issuer names the token's own tenant.
            claims["tid"] = self.local.token_tenant or self.local.tenant
        return claims

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.local.signing_key.kid or ""}

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        # Microsoft's sign-in name is preferred_username; its email claim may be unverified.
        return {
            "sub": user.sub,
            "email": self.local.claimed_email or user.email,
            "email_verified": True,
            "preferred_username": user.email,
        }


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        local: LocalAuthorizationServer = self.server  # type: ignore[assignment]
        return local.by_refresh.get(token_string) or local.by_access.get(token_string)

    def revoke_token(self, token: Token, request: Any) -> None:
        token.revoked = True
        self.server.revocations += 1  # type: ignore[attr-defined]


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        local: LocalAuthorizationServer = self.server  # type: ignore[assignment]
        return local.by_access.get(token_string)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer",
            "username": token.user.email,
            "scope": token.scope,
            "sub": token.user.sub,
            "exp": int(token.expires_at),
        }

    def check_permission(self, token: Token, client: Client, request: Any) -> bool:
        return token.client_id == client.client_id


def remote_bearer_check(
    url: str, *, client_id: str, client_secret: str
) -> Callable[[str, str], bool]:
    """An XOAUTH2 check for an SMTP server in another process: RFC 7662 introspection at the
    authorization server ``url``."""

    def check(user: str, token: str) -> bool:
        try:
            answer = requests.post(
                url + "/introspect",
                data={"token": token, "token_type_hint": "access_token"},
                auth=(client_id, client_secret),
                timeout=5,
            ).json()
        except (requests.RequestException, ValueError):
            return False
        return bool(answer.get("active")) and answer.get("username") == user

    return check


def serve_forever(
    *, host: str, port: int, redirect_uri: str, client_id: str, client_secret: str
) -> None:
    """Run the "provider di prova" until interrupted (``manage.py run_oauth_test_server``)."""
    import os

    # Authlib's server refuses plain-HTTP requests unless told this is a local test.
    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    server = LocalAuthorizationServer(
        redirect_uri=redirect_uri,
        client_id=client_id,
        client_secret=client_secret,
        host=host,
        port=port,
        open_registration=True,
    ).start()
    print(  # noqa: T201
        f"Provider OAuth di prova su {server.url} (qualsiasi indirizzo può acconsentire); "
        f"ritorno a {redirect_uri}",
        flush=True,
    )
    try:
        wait_for_interrupt()
    finally:
        server.stop()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class LocalAuthorizationServer(AuthorizationServer):
    def __init__(
        self,
        *,
        redirect_uri: str,
        client_id: str,
        client_secret: str,
        expires_in: int = 3600,
        rotate_refresh_tokens: bool = False,
        issuer_path: str = "",
        tenant: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        open_registration: bool = False,
    ) -> None:
        super().__init__()
        self.client = Client(client_id, client_secret, [redirect_uri])
        self.open_registration = open_registration
        self.users: dict[str, User] = {}
        self.codes: dict[str, Code] = {}
        self.by_access: dict[str, Token] = {}
        self.by_refresh: dict[str, Token] = {}
        self.expires_in = expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.refreshes = 0
        self.token_requests = 0
        self.revocations = 0
        self.refresh_delay = 0.0
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4)})
        self._lock = threading.Lock()
        self._http = make_server(host, port, self.wsgi, handler_class=_QuietHandler)
        self._http.timeout = 1
        self.url = f"http://{host}:{self._http.server_port}"
        # A Microsoft-like tenant: the issuer is ".../<tenant>/v2.0" and tokens carry "tid".
        self.tenant = tenant
        self.token_tenant = ""  # a tid other than the issuer's (a forged token)
        self.claimed_email = ""  # an "email" claim other than the sign-in name
        self.issuer = self.url + (f"/{tenant}/v2.0" if tenant else issuer_path)
        self._thread: threading.Thread | None = None
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **kwargs: "at-" + generate_token(40),
                refresh_token_generator=lambda **kwargs: "rt-" + generate_token(40),
                expires_generator=lambda client, grant_type: self.expires_in,
            ),
        )
        self.register_grant(_CodeGrant, [CodeChallenge(required=True), _IdToken(self)])
        refresh = type(
            "Refresh", (_RefreshGrant,), {"INCLUDE_NEW_REFRESH_TOKEN": rotate_refresh_tokens}
        )
        self.register_grant(refresh)
        self.register_endpoint(_Revocation(self))
        self.register_endpoint(_Introspection(self))

    # -- what the product's settings point at --
    def endpoints(self) -> dict[str, str]:
        return {
            "authorize_url": self.url + "/authorize",
            "token_url": self.url + "/token",
            "jwks_url": self.url + "/jwks",
            "revoke_url": self.url + "/revoke",
            "issuer": self.issuer,
        }

    def start(self) -> LocalAuthorizationServer:
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    # -- controls for the tests --
    def add_user(self, email: str) -> User:
        return self.users.setdefault(email, User(email=email))

    def check_bearer(self, user: str, token: str) -> bool:
        found = self.by_access.get(token)
        return (
            found is not None
            and not found.revoked
            and not found.is_expired()
            and found.user.email == user
        )

    def expire_access_tokens(self) -> None:
        for token in self.by_access.values():
            token.expires_at = 0

    def revoke_user(self, email: str) -> None:
        """What a password change or "remove access" on the account page does."""
        for token in (*self.by_refresh.values(), *self.by_access.values()):
            if token.user.email == email:
                token.revoked = True

    @property
    def issued_tokens(self) -> list[Token]:
        return list(self.by_access.values())

    # -- Authlib's integration points --
    def query_client(self, client_id: str) -> Client | None:
        return self.client if client_id == self.client.client_id else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        previous = getattr(request, "refresh_token", None)
        refresh = token.get("refresh_token") or (previous.refresh_token if previous else "")
        saved = Token(
            client_id=request.client.client_id,
            user=request.user,
            access_token=token["access_token"],
            refresh_token=refresh,
            scope=token.get("scope", ""),
            expires_at=time.time() + int(token.get("expires_in", self.expires_in)),
        )
        self.by_access[saved.access_token] = saved
        if refresh:
            self.by_refresh[refresh] = saved

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple:
        if isinstance(body, dict):
            body = json.dumps(body)
        return status, body or "", list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    # -- HTTP --
    def wsgi(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        with self._lock:
            status, body, headers = self._route(environ)
        reason = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized"}
        start_response(f"{status} {reason.get(status, 'Status')}", headers)
        return [body.encode()]

    def _route(self, environ: dict[str, Any]) -> tuple[int, str, list]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length).decode() if length else ""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        uri = self.url + path + ("?" + query if query else "")
        request = _Request(method, uri, headers, parse_qs(query), parse_qs(raw))
        if path == "/authorize" and method == "GET":
            return self._consent_page(request)
        if path == "/authorize" and method == "POST":
            email = request.form.get("email", "").strip().lower()
            if self.open_registration and "@" in email:
                self.add_user(email)
            user = self.users.get(email)
            granted = user if request.form.get("confirm") == "yes" else None
            try:
                grant = self.get_consent_grant(request=request, end_user=granted)
            except OAuth2Error as error:
                return 400, f"invalid request: {error.error}", [("Content-Type", "text/plain")]
            return self.create_authorization_response(
                request=request, grant_user=granted, grant=grant
            )
        if path == "/token" and method == "POST":
            self.token_requests += 1
            if self.refresh_delay and request.form.get("grant_type") == "refresh_token":
                time.sleep(self.refresh_delay)
            return self.create_token_response(request)
        if path == "/revoke" and method == "POST":
            return self.create_endpoint_response("revocation", request)
        if path == "/introspect" and method == "POST":
            return self.create_endpoint_response("introspection", request)
        if path == "/jwks" and method == "GET":
            keys = KeySet([self.signing_key]).as_dict(private=False)
            return 200, json.dumps(keys), [("Content-Type", "application/json")]
        return 404, "not found", [("Content-Type", "text/plain")]

    def _consent_page(self, request: _Request) -> tuple[int, str, list]:
        try:
            self.get_consent_grant(request=request)
        except OAuth2Error as error:
            return 400, f"invalid request: {error.error}", [("Content-Type", "text/plain")]
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in request.args.items()
        )
        page = (
            "<!doctype html><title>Provider di prova</title><h1>Provider di prova</h1>"
            "<p><strong>Solo per sviluppo e test</strong>: non è Google né Microsoft.</p>"
            "<p>PsicoGest chiede di inviare email dalla tua casella.</p>"
            f'<form method="post" action="/authorize">{hidden}'
            '<label>Account <input name="email" id="email"></label>'
            '<button name="confirm" value="yes" id="allow">Consenti</button>'
            '<button name="confirm" value="no" id="deny">Rifiuta</button></form>'
        )
        return 200, page, [("Content-Type", "text/html; charset=utf-8")]
