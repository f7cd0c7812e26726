"""Module settings, read at call time (never at import) so tests can override them.

Every value comes from Django settings only (``psicogest/settings.py`` reads the environment
variables of the same names); each function here gives the default when a setting is absent.
"""

from __future__ import annotations

from django.conf import settings


def encryption_keys() -> list[str]:
    return [key for key in getattr(settings, "EMAILSETTINGS_ENCRYPTION_KEYS", []) if key]


def allow_private_smtp_hosts() -> bool:
    return bool(getattr(settings, "EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS", False))


def smtp_extra_ca_file() -> str:
    return str(getattr(settings, "EMAILSETTINGS_SMTP_EXTRA_CA_FILE", "") or "")


def pec_trust_bundle() -> str:
    """A PEM file of the certificate authorities of the accredited PEC providers: a PEC
    receipt counts only when its signature chains to one of them."""
    return str(getattr(settings, "EMAILSETTINGS_PEC_TRUST_BUNDLE", "") or "")


def local_test_server() -> dict | None:
    return getattr(settings, "EMAILSETTINGS_LOCAL_TEST_SERVER", None)


def platform_name() -> str:
    return str(getattr(settings, "EMAILSETTINGS_PLATFORM_NAME", "PsicoGest"))


def platform_from() -> str:
    return str(getattr(settings, "EMAILSETTINGS_PLATFORM_FROM", "fatture@mail.psicogest.test"))


def site_url() -> str:
    """The product's address for links in emails (no trailing slash)."""
    return str(getattr(settings, "EMAILSETTINGS_SITE_URL", "http://localhost:8000")).rstrip("/")


def _text(name: str, default: str) -> str:
    value = getattr(settings, name, None)
    return default if value in (None, "") else str(value)


def platform_spf_include() -> str:
    """The host a practitioner's SPF record names with ``include:`` for Smart Mail."""
    return _text("EMAILSETTINGS_PLATFORM_SPF_INCLUDE", "spf.psicogest.test").rstrip(".").lower()


def platform_dkim_target() -> str:
    """Where ``psicogest._domainkey.<practitioner's domain>`` must point (a CNAME): the
    platform's DKIM key, so the ESP signs the practitioner's domain."""
    return _text("EMAILSETTINGS_PLATFORM_DKIM_TARGET", "dkim.psicogest.test").rstrip(".").lower()


# --- the delivery outbox ---------------------------------------------------------------


def _number(name: str, default: float) -> float:
    value = getattr(settings, name, None)
    return default if value is None or value == "" else float(value)


def retry_base_seconds() -> float:
    """First wait after a temporary failure; doubles at each attempt (with jitter)."""
    return _number("EMAILSETTINGS_RETRY_BASE_SECONDS", 60)


def retry_max_delay_seconds() -> float:
    return _number("EMAILSETTINGS_RETRY_MAX_DELAY_SECONDS", 3600)


def retry_max_age_seconds() -> float:
    """A delivery still failing temporarily this long after it was queued is given up."""
    return _number("EMAILSETTINGS_RETRY_MAX_AGE_SECONDS", 2 * 24 * 3600)


def lease_seconds() -> float:
    """How long a claimed row belongs to its worker; longer than one message's send."""
    return _number("EMAILSETTINGS_LEASE_SECONDS", 300)


def database_retry_seconds() -> float:
    """How long a send task keeps retrying a database that does not answer (a restart, a
    fail-over) before it gives up; the outcome of a message the server accepted is retried
    as long (it must never become ``unknown`` because of a blip)."""
    return max(0.0, _number("EMAILSETTINGS_DATABASE_RETRY_SECONDS", 60))


def stale_queued_seconds() -> float:
    """A row ``queued`` this long was probably never published (broker down): re-enqueue."""
    return _number("EMAILSETTINGS_STALE_QUEUED_SECONDS", 120)


def duplicate_window_seconds() -> float:
    """A second send of the same invoice within this window returns the first delivery."""
    return _number("EMAILSETTINGS_DUPLICATE_WINDOW_SECONDS", 60)


def batch_size() -> int:
    """Deliveries per task (one SMTP connection each)."""
    return max(1, int(_number("EMAILSETTINGS_BATCH_SIZE", 50)))


def batch_time_budget_seconds() -> float:
    """A batch task stops taking new rows after this long (below the task time limit) and
    hands the rest to a new task."""
    return _number("EMAILSETTINGS_BATCH_TIME_BUDGET_SECONDS", 90)


def smtp_send_timeout_seconds() -> float:
    return _number("EMAILSETTINGS_SMTP_SEND_TIMEOUT_SECONDS", 30)


def smtp_pipelining() -> bool:
    """SMTP PIPELINING (RFC 2920) with servers that offer it; off only to compare."""
    return bool(getattr(settings, "EMAILSETTINGS_SMTP_PIPELINING", True))


def smtp_rate_limit_per_minute() -> float:
    """Overrides every preset's pace when set (> 0); 0 keeps each preset's own limit."""
    return _number("EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE", 0)


def max_crashes() -> int:
    """Leases a row may lose to dead workers before the data was sent; past it the row is
    ``failed`` (a poison row) instead of being retried forever."""
    return max(1, int(_number("EMAILSETTINGS_MAX_CRASHES", 3)))


def max_internal_errors() -> int:
    """Attempts that may end in an unexpected error of the product before the row fails."""
    return max(1, int(_number("EMAILSETTINGS_MAX_INTERNAL_ERRORS", 3)))


def mailbox_worker_slots() -> int:
    """Batches of one practitioner that may run at the same time (worker slots they hold)."""
    return max(1, int(_number("EMAILSETTINGS_MAILBOX_WORKER_SLOTS", 1)))


def mailbox_idle_slots() -> int:
    """Slots more a practitioner may borrow while no other practitioner's batch waits (the
    worker processes nobody else needs). 0 by default: one SMTP session per mailbox, and a
    provider's rate limit is what paces a mailbox anyway; for fast channels set it to the
    worker processes minus ``EMAILSETTINGS_MAILBOX_WORKER_SLOTS``."""
    return max(0, int(_number("EMAILSETTINGS_MAILBOX_IDLE_SLOTS", 0)))


def dispatch_reservation_seconds() -> float:
    """How long a published batch keeps its practitioner's slot reserved before it starts
    (a task the broker lost frees the slot after this)."""
    return max(1.0, _number("EMAILSETTINGS_DISPATCH_RESERVATION_SECONDS", 300))


def fast_lane_size() -> int:
    """The largest first batch of a practitioner who has nothing in flight, published ahead
    of the backlogs (0: no fast lane)."""
    return max(0, int(_number("EMAILSETTINGS_FAST_LANE_SIZE", 10)))


def mailbox_unreachable_seconds() -> float:
    """A personal mailbox unreachable (refused, unknown host, no answer) this long becomes a
    mailbox problem: its queue is held and the practitioner told."""
    return _number("EMAILSETTINGS_MAILBOX_UNREACHABLE_SECONDS", 6 * 3600)


def webhook_pending_seconds() -> float:
    """How long a tracking event for a message not yet recorded as sent is kept for it."""
    return _number("EMAILSETTINGS_WEBHOOK_PENDING_SECONDS", 2 * 24 * 3600)


def webhook_retention_days() -> float:
    """How long a tracking event that matched no delivery is kept (then deleted)."""
    return _number("EMAILSETTINGS_WEBHOOK_RETENTION_DAYS", 30)


def webhook_rate_per_minute() -> int:
    """How many webhook requests one client address may make in a minute."""
    return int(_number("EMAILSETTINGS_WEBHOOK_RATE_PER_MINUTE", 600))


def body_retention_days() -> float:
    """Message bodies of finished deliveries are purged after this many days."""
    return _number("EMAILSETTINGS_BODY_RETENTION_DAYS", 90)


def redis_url() -> str:
    """Redis for the per-mailbox token buckets; empty with the embedded broker."""
    url = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    return url if url.startswith(("redis://", "rediss://")) else ""


# --- Smart Mail limits (protect the platform's shared sending reputation) ----------------


def smart_mail_rate_per_minute() -> float:
    """Smart Mail messages a minute per practitioner (a token bucket in Redis); 0 = no pace."""
    return _number("EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE", 60)


def smart_mail_concurrency() -> int:
    """Smart Mail requests one batch keeps in flight at once, on one keep-alive pool (each
    outcome still recorded on its own); 1 sends one message at a time. At most 10, the
    connections a ``requests`` session keeps per host."""
    return max(1, min(10, int(_number("EMAILSETTINGS_SMART_MAIL_CONCURRENCY", 8))))


def warmup_days() -> float:
    """A practitioner's account is "new" (warm-up quota) for this many days after joining."""
    return _number("EMAILSETTINGS_WARMUP_DAYS", 30)


def warmup_daily_quota() -> int:
    """Smart Mail messages per rolling 24 hours for a new account; 0 = no warm-up quota
    (the regular daily quota applies)."""
    return max(0, int(_number("EMAILSETTINGS_WARMUP_DAILY_QUOTA", 100)))


def smart_mail_daily_quota() -> int:
    """Smart Mail messages per rolling 24 hours after the warm-up; 0 = no daily limit."""
    return max(0, int(_number("EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA", 2000)))


def bounce_watch_days() -> float:
    """How far back the mailbox is read for bounces of personal-SMTP invoices."""
    return _number("EMAILSETTINGS_BOUNCE_WATCH_DAYS", 7)


def mailbox_read_interval_seconds() -> float:
    """How often a mailbox with recent sends is read (doubled after each failed read)."""
    return _number("EMAILSETTINGS_MAILBOX_READ_INTERVAL_SECONDS", 300)


def mailbox_read_seconds() -> float:
    """How long one read of a mailbox may last (below the read task's 90 s soft limit);
    what is left is read by the next one."""
    return _number("EMAILSETTINGS_MAILBOX_READ_SECONDS", 60)


def mailbox_max_message_bytes() -> int:
    """A notice larger than this is never fetched (no bounce or receipt is this large)."""
    return int(_number("EMAILSETTINGS_MAILBOX_MAX_MESSAGE_BYTES", 5242880))


def mailbox_max_multiparts() -> int:
    """A notice declaring more multipart containers than this is skipped unparsed."""
    return int(_number("EMAILSETTINGS_MAILBOX_MAX_MULTIPARTS", 20))


def mailbox_max_quoted_ids() -> int:
    """How many Message-IDs quoted by one bounce are looked up (the first ones)."""
    return int(_number("EMAILSETTINGS_MAILBOX_MAX_QUOTED_IDS", 50))


# --- OAuth 2.0 for Google and Microsoft mailboxes (emailsettings/mailbox/oauth.py) ---------------


def local_test_oauth_server() -> dict | None:
    """The "provider di prova" of ``make run`` (development only): ``{"url", "client_id",
    "client_secret"}``."""
    return getattr(settings, "EMAILSETTINGS_LOCAL_OAUTH_SERVER", None)


def oauth_client(provider: str) -> tuple[str, str]:
    """The platform's registered app for ``provider`` ("google", "microsoft"): client id and
    secret from ``GOOGLE_OAUTH_CLIENT_ID`` / ``…_SECRET`` and ``MICROSOFT_OAUTH_…``; the
    "provider di prova" ("local") from ``EMAILSETTINGS_LOCAL_OAUTH_SERVER``."""
    if provider == "local":
        server = local_test_oauth_server()
        if not isinstance(server, dict):
            return "", ""
        return str(server.get("client_id") or ""), str(server.get("client_secret") or "")
    prefix = provider.upper()
    return (
        _text(f"{prefix}_OAUTH_CLIENT_ID", "").strip(),
        _text(f"{prefix}_OAUTH_CLIENT_SECRET", "").strip(),
    )


def oauth_redirect_base_url() -> str:
    """The public origin the providers send the practitioner back to (no trailing slash)."""
    return _text("EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL", "").strip().rstrip("/")


def oauth_endpoint_overrides(provider: str) -> dict[str, str]:
    """``EMAILSETTINGS_OAUTH_ENDPOINTS[provider]``: endpoints that replace the provider's
    public ones (``authorize_url``, ``token_url``, ``jwks_url``, ``revoke_url``,
    ``issuer``)."""
    overrides = getattr(settings, "EMAILSETTINGS_OAUTH_ENDPOINTS", None) or {}
    found = overrides.get(provider) if isinstance(overrides, dict) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def oauth_http_timeout_seconds() -> float:
    """Connect and read timeout of every call to a provider's token or key endpoint."""
    return _number("EMAILSETTINGS_OAUTH_HTTP_TIMEOUT_SECONDS", 10)


def oauth_refresh_margin_seconds() -> float:
    """An access token expiring sooner than this is refreshed before it is used."""
    return _number("EMAILSETTINGS_OAUTH_REFRESH_MARGIN_SECONDS", 300)


def oauth_flow_max_age_seconds() -> float:
    """How long the practitioner has to come back from the consent page."""
    return _number("EMAILSETTINGS_OAUTH_FLOW_MAX_AGE_SECONDS", 600)


def secure_link_days() -> float:
    """Days a secure link stays valid from the send (the Garante's 45 for online reports)."""
    return _number("EMAILSETTINGS_SECURE_LINK_DAYS", 45)


def secure_link_max_attempts() -> int:
    """Wrong second factors after which a secure link is locked."""
    return int(_number("EMAILSETTINGS_SECURE_LINK_MAX_ATTEMPTS", 5))


# --- Smart Mail reputation per practitioner (smartmail/reputation.py) --------------------


def reputation_windows_days() -> tuple[int, ...]:
    """The rolling windows a practitioner's rates are measured over; the worst one wins."""
    value = getattr(settings, "EMAILSETTINGS_REPUTATION_WINDOWS_DAYS", (7, 30)) or (7, 30)
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    return tuple(sorted({max(1, int(days)) for days in value}))


def reputation_min_recipients() -> int:
    """Unique recipients a window must hold before its rates count (two bounces out of three
    sends say nothing about a list)."""
    return max(1, int(_number("EMAILSETTINGS_REPUTATION_MIN_RECIPIENTS", 20)))


def reputation_min_events() -> int:
    """Bounced or complaining addresses a window must hold before that rate counts: one
    complaint among a few dozen invoices is above every ESP's rate, and is no pattern."""
    return max(1, int(_number("EMAILSETTINGS_REPUTATION_MIN_EVENTS", 2)))


def reputation_bounce_warn() -> float:
    return _number("EMAILSETTINGS_REPUTATION_BOUNCE_WARN", 0.04)


def reputation_bounce_suspend() -> float:
    return _number("EMAILSETTINGS_REPUTATION_BOUNCE_SUSPEND", 0.08)


def reputation_complaint_warn() -> float:
    return _number("EMAILSETTINGS_REPUTATION_COMPLAINT_WARN", 0.0008)


def reputation_complaint_suspend() -> float:
    return _number("EMAILSETTINGS_REPUTATION_COMPLAINT_SUSPEND", 0.003)


def notice_from() -> str:
    """The From of the platform's own notices to practitioners (alerts, reputation): kept
    apart from the invoices' identity so a tenant's bounces never reach it."""
    return _text("EMAILSETTINGS_NOTICE_FROM", platform_from())


def notice_esp_extra() -> dict:
    """anymail ``esp_extra`` for those notices, e.g. ``{"MessageStream": "notices"}`` for a
    Postmark message stream of their own."""
    value = getattr(settings, "EMAILSETTINGS_NOTICE_ESP_EXTRA", {}) or {}
    return dict(value)


def metrics_token() -> str:
    """The secret the scraper of ``/metrics`` presents (a bearer token, or the password of
    HTTP basic auth); empty: ``/metrics`` answers 404."""
    return _text("EMAILSETTINGS_METRICS_TOKEN", "")


def email_backend() -> str:
    """The dotted path of Django's email backend: Smart Mail's ESP (an anymail backend)."""
    return str(getattr(settings, "EMAIL_BACKEND", "") or "")


def anymail_settings() -> dict:
    """anymail's settings (API keys, API URLs): read, never logged."""
    return dict(getattr(settings, "ANYMAIL", {}) or {})
