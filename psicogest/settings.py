"""Settings, read from the environment.

Two shapes:

* the embedded default (``DJANGO_ENV`` unset or ``development``): SQLite, a filesystem
  Celery broker, a generated secret key and encryption key kept under ``var/``, DEBUG on;
* production (``DJANGO_ENV=production``): every secret and service comes from the
  environment, start-up fails with a clear message when one is missing, and
  ``manage.py check --deploy`` passes without warnings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key
from django.utils.translation import gettext_lazy as _

from psicogest.files import write_atomically

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"

VAR_DIR = Path(env.str("PSICOGEST_VAR_DIR", default=str(BASE_DIR / "var")))

REQUIRED_IN_PRODUCTION = (
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAILSETTINGS_ENCRYPTION_KEYS",
    "DJANGO_ALLOWED_HOSTS",
    # Without it anyone could post tracking events (delivery ids are sequential) and
    # suppress every practitioner's patients' addresses.
    "ANYMAIL_WEBHOOK_SECRET",
)

if PRODUCTION:
    missing = [name for name in REQUIRED_IN_PRODUCTION if not os.environ.get(name)]
    if missing:
        raise ImproperlyConfigured(
            "Production settings need these environment variables: " + ", ".join(missing)
        )


def _dev_secret(name: str, make: Callable[[], str]) -> str:
    """A development-only secret generated once and kept under var/ (git-ignored)."""
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        # Whole or not at all, and the first process to write it wins (web and worker may
        # start together): a truncated or replaced key would lose what it encrypted.
        write_atomically(path, make().encode(), mode=0o600, replace=False, durable=True)
    return path.read_text().strip()


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _dev_secret(
    "secret_key", get_random_secret_key
)
DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION) and not PRODUCTION
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "anymail",
    "axes",
    "psicogest",
    "emailsettings",
]
if not PRODUCTION:
    # The local test servers' commands (run_smtp_test_server, run_oauth_test_server).
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before the session and the view: a flood of webhook posts costs one cache hit each.
    "emailsettings.middleware.WebhookRateLimitMiddleware",
    "psicogest.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "psicogest.middleware.PreferredLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: it turns a refused login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

if PRODUCTION:
    # Static files served by the app itself behind the proxy (no separate web server).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "psicogest.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "emailsettings.context_processors.mailbox_banner",
                "emailsettings.context_processors.reputation_banner",
                "psicogest.context_processors.worker_status",
            ],
        },
    },
]

WSGI_APPLICATION = "psicogest.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'psicogest.sqlite3'}")
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    # A kept connection the server dropped (a restart) is replaced before the request uses
    # it, instead of failing that request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Parameters bound by the server, and the statements a worker runs again and again
    # (the claim, the outcome) prepared once a connection: less CPU in psycopg and
    # PostgreSQL a delivery (docs/performance.md). Off behind a transaction-pooling
    # PgBouncer older than 1.21, which cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env.bool(
        "DATABASE_SERVER_SIDE_BINDING", default=True
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "psicogest.Practitioner"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "emailsettings:settings"
LOGOUT_REDIRECT_URL = "login"
# axes' check comes first: a locked-out login is refused before any password is checked.
AUTHENTICATION_BACKENDS = [
    "psicogest.access.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "it"
LANGUAGES = [("it", _("Italiano")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Rome"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security -----------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # The container's own health checks ask over plain HTTP on loopback.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Login throttling (django-axes; see psicogest/access.py) -----------------------
# After AXES_FAILURE_LIMIT wrong passwords for one login name from one address, that pair is
# refused for AXES_COOLOFF_MINUTES (0: until an operator runs `manage.py axes_reset…`).
# Other users at the same address, and the same user elsewhere, are not affected.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
_axes_cooloff_minutes = env.int("AXES_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=_axes_cooloff_minutes) if _axes_cooloff_minutes > 0 else None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The login forms post "username" (the email); the failure signal's credentials use that key.
AXES_USERNAME_FORM_FIELD = "username"
AXES_RESET_ON_SUCCESS = True
# Refused attempts during a lock-out check no password: they do not extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Only failures are kept (until the cool-off ends): axes' log of successful logins would keep
# every practitioner's addresses with no retention limit.
AXES_DISABLE_ACCESS_LOG = True
AXES_LOCKOUT_CALLABLE = "psicogest.access.lockout_response"
AXES_CLIENT_IP_CALLABLE = "psicogest.access.client_ip"
# Reverse proxies in front of the app that append the client address to X-Forwarded-For;
# 0 (the default) counts REMOTE_ADDR and ignores the header, which a client can forge.
PSICOGEST_TRUSTED_PROXY_COUNT = env.int("PSICOGEST_TRUSTED_PROXY_COUNT", default=0)

# --- Celery -------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A publish must fail fast when Redis does not answer (the row is committed either way
    # and the sweeper publishes it later): bounded socket waits, no publish retries.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "visibility_timeout": 3600,
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
    }
else:
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- Cache --------------------------------------------------------------------
# Shared by the web server and the workers (rate limits, progress of mailbox checks):
# Redis when available, else files under var/ (LocMem would not be shared between processes).
# Redis down or silent: short socket waits, then the cache answers as an empty one
# (psicogest/cache.py): never an error page.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "psicogest.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "psicogest",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Email --------------------------------------------------------------------
# Smart Mail goes through Django's configured backend: an anymail ESP in production,
# .eml files under var/ in the embedded default.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="emailsettings.backends.EmlFileBackend")
EMAIL_FILE_PATH = str(VAR_DIR / "smartmail")
ANYMAIL = {
    key: value
    for key, value in {
        "POSTMARK_SERVER_TOKEN": env.str("POSTMARK_SERVER_TOKEN", default=""),
        # Unset: Postmark's own API. A local stand-in for benchmarks (devtools/espserver.py).
        "POSTMARK_API_URL": env.str("POSTMARK_API_URL", default=""),
        "MAILGUN_API_KEY": env.str("MAILGUN_API_KEY", default=""),
        "MAILGUN_SENDER_DOMAIN": env.str("MAILGUN_SENDER_DOMAIN", default=""),
        "BREVO_API_KEY": env.str("BREVO_API_KEY", default=""),
        "SENDGRID_API_KEY": env.str("SENDGRID_API_KEY", default=""),
        # Mailgun signs its webhooks with a key of its own (not the API key).
        "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
        "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default=""),
    }.items()
    if value
}

# The module's settings: emailsettings/conf.py holds each one's default and meaning
# (docs/configuration.md lists them). A variable set in the environment overrides the
# default; unset (or empty) keeps it. A worker started by the tests or a benchmark is tuned
# through these variables.
for _name in (
    "EMAILSETTINGS_PLATFORM_NAME",
    "EMAILSETTINGS_PLATFORM_FROM",
    "EMAILSETTINGS_PLATFORM_SPF_INCLUDE",
    "EMAILSETTINGS_PLATFORM_DKIM_TARGET",
    # Where the product is reached (links in the emails it sends to practitioners).
    "EMAILSETTINGS_SITE_URL",
):
    if env.str(_name, default=""):
        globals()[_name] = env.str(_name)
for _name in (
    "EMAILSETTINGS_RETRY_BASE_SECONDS",
    "EMAILSETTINGS_RETRY_MAX_DELAY_SECONDS",
    "EMAILSETTINGS_RETRY_MAX_AGE_SECONDS",
    "EMAILSETTINGS_LEASE_SECONDS",
    "EMAILSETTINGS_DATABASE_RETRY_SECONDS",
    "EMAILSETTINGS_STALE_QUEUED_SECONDS",
    "EMAILSETTINGS_DUPLICATE_WINDOW_SECONDS",
    "EMAILSETTINGS_BATCH_SIZE",
    "EMAILSETTINGS_BATCH_TIME_BUDGET_SECONDS",
    "EMAILSETTINGS_SMTP_SEND_TIMEOUT_SECONDS",
    "EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE",
    "EMAILSETTINGS_MAX_CRASHES",
    "EMAILSETTINGS_MAILBOX_WORKER_SLOTS",
    "EMAILSETTINGS_MAILBOX_IDLE_SLOTS",
    "EMAILSETTINGS_DISPATCH_RESERVATION_SECONDS",
    "EMAILSETTINGS_FAST_LANE_SIZE",
    "EMAILSETTINGS_MAX_INTERNAL_ERRORS",
    "EMAILSETTINGS_MAILBOX_UNREACHABLE_SECONDS",
    "EMAILSETTINGS_WEBHOOK_PENDING_SECONDS",
    "EMAILSETTINGS_WEBHOOK_RETENTION_DAYS",
    "EMAILSETTINGS_WEBHOOK_RATE_PER_MINUTE",
    "EMAILSETTINGS_BODY_RETENTION_DAYS",
    "EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE",
    "EMAILSETTINGS_SMART_MAIL_CONCURRENCY",
    "EMAILSETTINGS_WARMUP_DAYS",
    "EMAILSETTINGS_WARMUP_DAILY_QUOTA",
    "EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA",
    "EMAILSETTINGS_BOUNCE_WATCH_DAYS",
    "EMAILSETTINGS_MAILBOX_READ_INTERVAL_SECONDS",
    "EMAILSETTINGS_MAILBOX_READ_SECONDS",
    "EMAILSETTINGS_MAILBOX_MAX_MESSAGE_BYTES",
    "EMAILSETTINGS_MAILBOX_MAX_MULTIPARTS",
    "EMAILSETTINGS_MAILBOX_MAX_QUOTED_IDS",
    "EMAILSETTINGS_SECURE_LINK_DAYS",
    "EMAILSETTINGS_SECURE_LINK_MAX_ATTEMPTS",
):
    if env.str(_name, default=""):
        globals()[_name] = env.float(_name)
# The Smart Mail reputation guard per practitioner (docs/operations.md).
for _name in (
    "EMAILSETTINGS_REPUTATION_MIN_RECIPIENTS",
    "EMAILSETTINGS_REPUTATION_MIN_EVENTS",
    "EMAILSETTINGS_REPUTATION_BOUNCE_WARN",
    "EMAILSETTINGS_REPUTATION_BOUNCE_SUSPEND",
    "EMAILSETTINGS_REPUTATION_COMPLAINT_WARN",
    "EMAILSETTINGS_REPUTATION_COMPLAINT_SUSPEND",
):
    if env.str(_name, default=""):
        globals()[_name] = env.float(_name)
if env.str("EMAILSETTINGS_REPUTATION_WINDOWS_DAYS", default=""):
    EMAILSETTINGS_REPUTATION_WINDOWS_DAYS = env.list("EMAILSETTINGS_REPUTATION_WINDOWS_DAYS")
# The operator's /metrics: the token its scraper presents; unset, /metrics answers 404.
if env.str("EMAILSETTINGS_METRICS_TOKEN", default=""):
    EMAILSETTINGS_METRICS_TOKEN = env.str("EMAILSETTINGS_METRICS_TOKEN")
# The platform's own notices to practitioners leave apart from the invoices.
if env.str("EMAILSETTINGS_NOTICE_FROM", default=""):
    EMAILSETTINGS_NOTICE_FROM = env.str("EMAILSETTINGS_NOTICE_FROM")
if env.str("EMAILSETTINGS_NOTICE_ESP_EXTRA", default=""):
    EMAILSETTINGS_NOTICE_ESP_EXTRA = env.json("EMAILSETTINGS_NOTICE_ESP_EXTRA")
# SMTP PIPELINING (RFC 2920) with servers that offer it; off only to compare (bench/wire.py).
if env.str("EMAILSETTINGS_SMTP_PIPELINING", default=""):
    EMAILSETTINGS_SMTP_PIPELINING = env.bool("EMAILSETTINGS_SMTP_PIPELINING")
EMAILSETTINGS_ENCRYPTION_KEYS = env.list("EMAILSETTINGS_ENCRYPTION_KEYS", default=[]) or [
    _dev_secret("encryption_key", lambda: Fernet.generate_key().decode())
]
EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = env.bool(
    "EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS", default=not PRODUCTION
)
# Extra certificate authority trusted for personal SMTP servers (the local test server's).
EMAILSETTINGS_SMTP_EXTRA_CA_FILE = env.str(
    "EMAILSETTINGS_SMTP_EXTRA_CA_FILE",
    default="" if PRODUCTION else str(VAR_DIR / "devsmtp" / "ca.pem"),
)
# The accredited PEC providers' certificate authorities (docs/operations.md); in development
# the local test server's CA, which signs the receipts of its "Gestore PEC di prova".
EMAILSETTINGS_PEC_TRUST_BUNDLE = env.str(
    "EMAILSETTINGS_PEC_TRUST_BUNDLE",
    default="" if PRODUCTION else str(VAR_DIR / "devsmtp" / "ca.pem"),
)
# "Accedi con Google / Microsoft" (personal SMTP over OAuth 2.0): the platform's registered
# apps (README, "OAuth per Gmail e Microsoft"). A provider whose id or secret is empty is not
# offered. The redirect base is the public origin the providers send the practitioner back
# to (the callback path is appended); the endpoints may be overridden with a JSON object
# {"google": {"token_url": …}, …} — the tests point them at a local authorization server.
GOOGLE_OAUTH_CLIENT_ID = env.str("GOOGLE_OAUTH_CLIENT_ID", default="")
GOOGLE_OAUTH_CLIENT_SECRET = env.str("GOOGLE_OAUTH_CLIENT_SECRET", default="")
MICROSOFT_OAUTH_CLIENT_ID = env.str("MICROSOFT_OAUTH_CLIENT_ID", default="")
MICROSOFT_OAUTH_CLIENT_SECRET = env.str("MICROSOFT_OAUTH_CLIENT_SECRET", default="")
if env.str("EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL", default=""):
    EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL = env.str("EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL")
if env.str("EMAILSETTINGS_OAUTH_ENDPOINTS", default=""):
    EMAILSETTINGS_OAUTH_ENDPOINTS = env.json("EMAILSETTINGS_OAUTH_ENDPOINTS")
# The "provider di prova" started by "make run" (manage.py run_oauth_test_server), offered as
# "Accedi con il provider di prova" for the "Server di test locale" preset; never in production.
EMAILSETTINGS_LOCAL_OAUTH_SERVER = (
    None
    if PRODUCTION
    else {
        "url": f"http://127.0.0.1:{env.int('LOCAL_OAUTH_PORT', default=8765)}",
        "client_id": "psicogest-sviluppo",
        "client_secret": "segreto-di-sviluppo",
    }
)
# The "Server di test locale" preset, offered only outside production.
EMAILSETTINGS_LOCAL_TEST_SERVER = (
    None
    if PRODUCTION
    else {
        "host": env.str("LOCAL_SMTP_HOST", default="localhost"),
        "port": env.int("LOCAL_SMTP_PORT", default=1025),
        # Its IMAP side (devtools/imapserver.py): bounces, PEC receipts, the Sent folder.
        "imap_port": env.int("LOCAL_IMAP_PORT", default=1993),
    }
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
