"""OAuth 2.0 for Google and Microsoft mailboxes: "Accedi con Google / Microsoft".

The practitioner is sent to the provider's consent page and back (authorization code with
PKCE S256, RFC 7636, and ``state``); the code is exchanged for tokens, the mailbox address
is read from the ID token (signature, audience, expiry and nonce checked against the
provider's published keys), and the tokens are stored only encrypted on the
:class:`~emailsettings.models.SmtpAccount`. The SMTP session then logs in with SASL XOAUTH2
(:mod:`emailsettings.mailbox.smtp`), asking :func:`access_token` for a token that is refreshed here
before it expires — under a row lock, so two workers never refresh one mailbox at once.

Every HTTP exchange goes through Authlib's client (``OAuth2Session``); nothing here builds
token requests by hand. The platform's apps come from settings (``GOOGLE_OAUTH_CLIENT_ID``
…, see :mod:`emailsettings.conf`), and each endpoint may be replaced through
``EMAILSETTINGS_OAUTH_ENDPOINTS`` (the tests point them at a local authorization server).

To add a provider: one :class:`Provider` in :data:`PROVIDERS` with its endpoints, scopes and
the preset keys it serves (``emailsettings/mailbox/presets.py``), its two settings in
``psicogest/settings.py`` and its registration steps in the README.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from emailsettings import conf
from emailsettings.exceptions import DecryptionError, DeliveryError, OAuthFlowError
from emailsettings.failures import ErrorClass, Failure
from emailsettings.mailbox import presets
from emailsettings.mailbox.presets import LOCAL_KEY
from emailsettings.mailbox.state import forget_checks
from emailsettings.models import AuthMethod, SmtpAccount

if TYPE_CHECKING:
    from authlib.integrations.requests_client import OAuth2Session

    from emailsettings.models import SmtpAccount

logger = logging.getLogger(__name__)

ENDPOINT_NAMES = (
    "authorize_url",
    "token_url",
    "jwks_url",
    "revoke_url",
    "issuer",
    "tenant_issuer",
)
# A Microsoft tenant id: a GUID.
_TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Provider:
    key: str
    label: str | Promise
    button: str | Promise
    presets: tuple[str, ...]
    authorize_url: str
    token_url: str
    jwks_url: str
    scopes: tuple[str, ...]
    # "" = the provider has no revocation endpoint (Microsoft): disconnecting forgets.
    revoke_url: str = ""
    # "" = the issuer names the token's own tenant: ``tenant_issuer`` with its ``tid``
    # (Microsoft's multi-tenant "common" endpoint).
    issuer: str = ""
    tenant_issuer: str = ""
    # The claim that says the ``email`` claim was verified by its owner; without it (or when
    # it is false) the sign-in name (``preferred_username``) is the address.
    email_verified_claim: str = "email_verified"
    authorize_params: tuple[tuple[str, str], ...] = field(default=())

    def endpoint(self, name: str) -> str:
        """The endpoint ``name``, from ``EMAILSETTINGS_OAUTH_ENDPOINTS`` when overridden."""
        if name not in ENDPOINT_NAMES:
            raise ValueError(f"Unknown OAuth endpoint {name!r}")
        overrides = conf.oauth_endpoint_overrides(self.key)
        return overrides[name] if name in overrides else str(getattr(self, name))

    @property
    def configured(self) -> bool:
        client_id, client_secret = conf.oauth_client(self.key)
        return bool(client_id and client_secret)


PROVIDERS: tuple[Provider, ...] = (
    Provider(
        key="google",
        label=_("Google"),
        button=_("Accedi con Google"),
        presets=("gmail", "google_workspace"),
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        jwks_url="https://www.googleapis.com/oauth2/v3/certs",
        revoke_url="https://oauth2.googleapis.com/revoke",
        issuer="https://accounts.google.com",
        scopes=("openid", "email", "https://mail.google.com/"),
        # A refresh token is issued only with offline access; "consent" makes Google issue
        # a new one when the practitioner connects again after revoking.
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    ),
    Provider(
        key="microsoft",
        label=_("Microsoft"),
        button=_("Accedi con Microsoft"),
        presets=("outlook", "microsoft365"),
        authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
        jwks_url="https://login.microsoftonline.com/common/discovery/v2.0/keys",
        tenant_issuer="https://login.microsoftonline.com/{tid}/v2.0",
        # Microsoft's "email" claim is whatever the tenant's admin typed, unless the domain's
        # owner is verified (the optional claim xms_edov).
        email_verified_claim="xms_edov",
        scopes=(
            "openid",
            "email",
            "offline_access",
            "https://outlook.office.com/SMTP.Send",
            # Reading bounces and filing the Sent copy (emailsettings/mailbox/imap.py).
            "https://outlook.office.com/IMAP.AccessAsUser.All",
        ),
        authorize_params=(("prompt", "select_account"),),
    ),
)


def local_provider() -> Provider | None:
    """The "provider di prova" of ``make run`` for the "Server di test locale" preset: only
    while ``EMAILSETTINGS_LOCAL_OAUTH_SERVER`` is set (development), never in production."""
    server = conf.local_test_oauth_server()
    if not isinstance(server, dict) or not server.get("url"):
        return None
    url = str(server["url"]).rstrip("/")
    return Provider(
        key="local",
        label=_("provider di prova"),
        button=_("Accedi con il provider di prova"),
        presets=(LOCAL_KEY,),
        authorize_url=url + "/authorize",
        token_url=url + "/token",
        jwks_url=url + "/jwks",
        revoke_url=url + "/revoke",
        issuer=url,
        scopes=("openid", "email", "smtp"),
    )


def available_providers() -> tuple[Provider, ...]:
    """PROVIDERS, plus the provider di prova in development."""
    local = local_provider()
    return (local, *PROVIDERS) if local else PROVIDERS


def get_provider(key: str | None) -> Provider | None:
    return next((provider for provider in available_providers() if provider.key == key), None)


def provider_for_preset(preset_key: str | None) -> Provider | None:
    """The provider that serves a preset (Gmail → Google), configured or not."""
    return next(
        (provider for provider in available_providers() if preset_key in provider.presets), None
    )


def configured_providers() -> tuple[Provider, ...]:
    return tuple(provider for provider in available_providers() if provider.configured)


def with_consent_pages(policy: str) -> str:
    """``policy`` whose ``form-action`` also allows the configured providers' consent pages:
    browsers apply ``form-action`` to the redirect that follows the "Accedi con …" POST."""
    from urllib.parse import urlsplit

    origins = sorted(
        {
            f"{parts.scheme}://{parts.netloc}"
            for provider in configured_providers()
            if (parts := urlsplit(provider.endpoint("authorize_url"))).netloc
        }
    )
    if not origins or "form-action 'self'" not in policy:
        return policy
    return policy.replace("form-action 'self'", "form-action 'self' " + " ".join(origins), 1)


def redirect_uri() -> str:
    """The callback the platform registered with every provider."""
    return conf.oauth_redirect_base_url() + reverse("emailsettings:oauth_callback")


def _session(provider: Provider, **kwargs: Any) -> OAuth2Session:
    from authlib.integrations.requests_client import OAuth2Session

    client_id, client_secret = conf.oauth_client(provider.key)
    session = OAuth2Session(
        client_id=client_id,
        client_secret=client_secret,
        scope=" ".join(provider.scopes),
        redirect_uri=redirect_uri(),
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",
        default_timeout=conf.oauth_http_timeout_seconds(),
        **kwargs,
    )
    return session


# --- the authorization flow (web side) ---------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    """Where to send the practitioner, and what the callback must find again."""

    url: str
    state: str
    code_verifier: str
    nonce: str


def start_authorization(*, provider: Provider, login_hint: str = "") -> Authorization:
    """The consent-page URL with a fresh ``state``, PKCE verifier (S256) and nonce."""
    state = secrets.token_urlsafe(32)
    # RFC 7636 4.1: 43 to 128 characters of the unreserved set; 64 random bytes give 86.
    code_verifier = secrets.token_urlsafe(64)
    nonce = secrets.token_urlsafe(32)
    params = dict(provider.authorize_params)
    if login_hint:
        params["login_hint"] = login_hint
    with _session(provider) as session:
        url, _state = session.create_authorization_url(
            provider.endpoint("authorize_url"),
            state=state,
            code_verifier=code_verifier,
            nonce=nonce,
            **params,
        )
    return Authorization(url=url, state=state, code_verifier=code_verifier, nonce=nonce)


@dataclass(frozen=True)
class Grant:
    """What a successful code exchange gave: the mailbox address and its tokens."""

    email: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime | None


def exchange_code(*, provider: Provider, code: str, code_verifier: str, nonce: str) -> Grant:
    """Exchange the authorization code (with the PKCE verifier) for tokens and read the
    mailbox address from the verified ID token. Raises :class:`OAuthFlowError`."""
    from authlib.common.errors import AuthlibBaseError
    from requests import RequestException

    try:
        with _session(provider) as session:
            token = session.fetch_token(
                provider.endpoint("token_url"),
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                allow_redirects=False,
            )
    except AuthlibBaseError as err:
        logger.info("OAuth code exchange refused by %s: %s", provider.key, err.error)
        raise OAuthFlowError(
            _("%(provider)s non ha confermato l'accesso: riprova.") % {"provider": provider.label}
        ) from err
    except (RequestException, ValueError) as err:
        logger.warning("OAuth code exchange with %s failed: %s", provider.key, type(err).__name__)
        raise OAuthFlowError(
            _("%(provider)s non risponde in questo momento: riprova tra qualche minuto.")
            % {"provider": provider.label}
        ) from err
    access, refresh = str(token.get("access_token") or ""), str(token.get("refresh_token") or "")
    if not access or not refresh:
        raise OAuthFlowError(
            _(
                "%(provider)s non ha concesso l'accesso continuativo alla casella: riprova e "
                "accetta tutte le autorizzazioni richieste."
            )
            % {"provider": provider.label}
        )
    email = _id_token_email(provider, str(token.get("id_token") or ""), nonce=nonce)
    return Grant(
        email=email,
        access_token=access,
        refresh_token=refresh,
        expires_at=_expires_at(token),
    )


def _id_token_email(provider: Provider, id_token: str, *, nonce: str) -> str:
    """The mailbox address the ID token names, after checking its signature against the
    provider's keys, its audience (this app), issuer, expiry and nonce."""
    import requests
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    refused = OAuthFlowError(_("Non è stato possibile leggere l'indirizzo della casella: riprova."))
    if not id_token:
        raise refused
    try:
        response = requests.get(
            provider.endpoint("jwks_url"),
            timeout=conf.oauth_http_timeout_seconds(),
            allow_redirects=False,
        )
        response.raise_for_status()
        keys = KeySet.import_key_set(response.json())
        decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
        client_id, _secret = conf.oauth_client(provider.key)
        claims_options: dict[str, Any] = {
            "aud": {"essential": True, "value": client_id},
            "nonce": {"essential": True, "value": nonce},
            "exp": {"essential": True},
            "iss": {"essential": True},
        }
        issuer = provider.endpoint("issuer")
        if issuer:
            claims_options["iss"]["value"] = issuer
        jwt.JWTClaimsRegistry(leeway=60, **claims_options).validate(decoded.claims)
    except (requests.RequestException, ValueError, JoseError) as err:
        logger.info("ID token from %s refused: %s", provider.key, type(err).__name__)
        raise refused from err
    claims = decoded.claims
    if not issuer:
        # Multi-tenant: the token must come from the tenant it names, as that tenant's
        # issuer says it (a token of one tenant cannot claim another's).
        tenant = str(claims.get("tid", ""))
        tenant_issuer = provider.endpoint("tenant_issuer")
        if not _TENANT_ID.fullmatch(tenant) or not tenant_issuer:
            raise refused
        if claims.get("iss") != tenant_issuer.replace("{tid}", tenant):
            raise refused
    email = str(claims.get("email") or "")
    verified = claims.get(provider.email_verified_claim)
    if verified is False or (provider.email_verified_claim == "xms_edov" and verified is not True):
        email = ""
    if not email:
        # The sign-in name: the address the practitioner logged in with.
        email = str(claims.get("preferred_username") or "")
    if "@" not in email:
        raise refused
    return email.strip().lower()


def _expires_at(token: dict[str, Any]) -> datetime | None:
    expires_in = token.get("expires_in")
    try:
        seconds = float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        seconds = None
    return timezone.now() + timedelta(seconds=seconds) if seconds else None


def connect_mailbox(
    *, account: SmtpAccount, provider: Provider, preset_key: str, grant: Grant
) -> SmtpAccount:
    """Store the connection on ``account`` (new or existing): address and login from the
    provider's identity, the preset's server unless the practitioner had already set this
    preset's server, the tokens encrypted, the password forgotten. The mailbox is then
    "non verificata" until a check or a send proves it."""
    preset = presets.get_preset(preset_key)
    if preset is None or preset_key not in provider.presets:
        raise ValueError(f"Preset {preset_key!r} is not served by {provider.key}")
    if account.pk is None or account.preset != preset_key:
        account.host, account.port, account.security = preset.host, preset.port, preset.security
    account.preset = preset_key
    account.email = account.username = grant.email
    account.auth_method = AuthMethod.OAUTH
    account.oauth_provider = provider.key
    account.password_encrypted = ""
    account.set_oauth_tokens(
        access_token=grant.access_token,
        expires_at=grant.expires_at,
        refresh_token=grant.refresh_token,
    )
    forget_checks(account)
    account.save()
    return account


def disconnect_mailbox(*, account: SmtpAccount) -> None:
    """Forget the connection (revoking it at the provider when it offers revocation)."""
    provider = get_provider(account.oauth_provider)
    if provider is not None and provider.endpoint("revoke_url"):
        _revoke(provider, account)
    account.clear_oauth()
    forget_checks(account)
    account.save()


def _revoke(provider: Provider, account: SmtpAccount) -> None:
    from authlib.common.errors import AuthlibBaseError
    from requests import RequestException

    try:
        _access, refresh = account.get_oauth_tokens()
        if not refresh:
            return
        with _session(provider) as session:
            session.revoke_token(
                provider.endpoint("revoke_url"),
                token=refresh,
                token_type_hint="refresh_token",
                allow_redirects=False,
            )
    except (AuthlibBaseError, RequestException, DecryptionError, ValueError) as err:
        # The stored tokens are deleted anyway; the practitioner can also revoke the
        # access from the provider's account page.
        logger.info("OAuth revocation at %s failed: %s", provider.key, type(err).__name__)


# --- tokens for the SMTP session (worker side) -------------------------------------------


def access_token(account: SmtpAccount, *, rejected: str = "") -> str:
    """A valid access token for the mailbox, refreshed first when it expires within
    ``EMAILSETTINGS_OAUTH_REFRESH_MARGIN_SECONDS`` or is ``rejected`` (the server refused
    it). Raises :class:`~emailsettings.exceptions.DeliveryError`: class ``oauth_reconnect``
    when the grant is gone (``invalid_grant``), temporary when the provider cannot answer.

    The refresh holds the mailbox row's lock (``SELECT … FOR UPDATE``) while it asks the
    provider — an exception to "no transaction across network I/O", bounded by the HTTP
    timeout: a second worker waits on the lock and then finds the new token instead of
    refreshing again (which Microsoft, rotating refresh tokens, could answer with
    ``invalid_grant``).
    """
    try:
        current = account.get_oauth_tokens()[0]
        if _usable(current, account.oauth_access_token_expires_at, rejected=rejected):
            return current
        with transaction.atomic():
            row = SmtpAccount.objects.select_for_update().get(pk=account.pk)
            current, refresh = row.get_oauth_tokens()
            if _usable(current, row.oauth_access_token_expires_at, rejected=rejected):
                _copy_tokens(row, account)
                return current
            provider = get_provider(row.oauth_provider)
            if provider is None or not refresh:
                raise DeliveryError.for_failure(_reconnect_failure("no refresh token"))
            token = _refresh(provider, refresh)
            row.set_oauth_tokens(
                access_token=str(token["access_token"]),
                expires_at=_expires_at(token),
                refresh_token=str(token.get("refresh_token") or "") or None,
            )
            SmtpAccount.objects.filter(pk=row.pk).update(
                oauth_access_token_encrypted=row.oauth_access_token_encrypted,
                oauth_access_token_expires_at=row.oauth_access_token_expires_at,
                oauth_refresh_token_encrypted=row.oauth_refresh_token_encrypted,
            )
    except DecryptionError as err:
        raise DeliveryError.for_failure(_reconnect_failure("stored tokens unreadable")) from err
    except SmtpAccount.DoesNotExist as err:
        raise DeliveryError.for_failure(
            Failure(phase="auth", error_class=ErrorClass.NO_MAILBOX, reply="mailbox deleted")
        ) from err
    _copy_tokens(row, account)
    logger.info("OAuth access token refreshed for mailbox %s", account.pk)
    return str(token["access_token"])


def _usable(token: str, expires_at: datetime | None, *, rejected: str) -> bool:
    if not token or (rejected and secrets.compare_digest(token, rejected)):
        return False
    if expires_at is None:
        return True
    return expires_at - timezone.now() > timedelta(seconds=conf.oauth_refresh_margin_seconds())


def _copy_tokens(source: SmtpAccount, target: SmtpAccount) -> None:
    for name in (
        "oauth_access_token_encrypted",
        "oauth_access_token_expires_at",
        "oauth_refresh_token_encrypted",
    ):
        setattr(target, name, getattr(source, name))


def _reconnect_failure(reason: str) -> Failure:
    return Failure(phase="auth", error_class=ErrorClass.OAUTH_RECONNECT, reply=reason)


def _refresh(provider: Provider, refresh_token: str) -> dict[str, Any]:
    from authlib.common.errors import AuthlibBaseError
    from requests import RequestException

    try:
        with _session(provider) as session:
            token = session.refresh_token(
                provider.endpoint("token_url"),
                refresh_token=refresh_token,
                allow_redirects=False,
            )
    except AuthlibBaseError as err:
        error = str(getattr(err, "error", "") or "")
        logger.info("OAuth refresh refused by %s: %s", provider.key, error)
        reply = f"{error}: {getattr(err, 'description', '') or ''}".strip(": ")[:300]
        if error == "invalid_grant":
            raise DeliveryError.for_failure(_reconnect_failure(reply)) from err
        if error in ("invalid_client", "unauthorized_client"):
            # The platform's app (id, secret, registration), not the practitioner's mailbox.
            logger.error("OAuth client for %s refused: check its settings", provider.key)
        raise DeliveryError.for_failure(
            Failure(phase="auth", error_class=ErrorClass.TEMPORARY, reply=reply)
        ) from err
    except (RequestException, ValueError) as err:
        logger.warning("OAuth refresh at %s failed: %s", provider.key, type(err).__name__)
        raise DeliveryError.for_failure(
            Failure(
                phase="auth",
                error_class=ErrorClass.TEMPORARY,
                reply=f"token endpoint unavailable ({type(err).__name__})",
            )
        ) from err
    if not token.get("access_token"):
        raise DeliveryError.for_failure(
            Failure(phase="auth", error_class=ErrorClass.TEMPORARY, reply="no access token")
        )
    return dict(token)
