"""The page's mailbox checks: start (POST, CSRF, scoped, rate-limited), the task message
(ids only), the JSON status with the Italian advice, and one run through a real worker."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
import redis
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from devtools.smtpserver import Behaviour
from emailsettings.health import verify as mailbox
from emailsettings.models import MailboxStatus
from tests.conftest import wait_until
from tests.support.smtp_fixtures import SMTP_PASSWORD

VERIFY_URL = reverse("emailsettings:mailbox_verify")
TEST_URL = reverse("emailsettings:mailbox_test")
STATUS_URL = reverse("emailsettings:mailbox_status")
JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(autouse=True)
def _fresh_rate_limits(practitioner, other_practitioner):
    keys = [mailbox._rate_key(p.pk) for p in (practitioner, other_practitioner)]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def queued_messages() -> list[dict]:
    """The raw task messages waiting in the Redis broker queue."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    messages = []
    for raw in client.lrange("celery", 0, -1):
        assert SMTP_PASSWORD.encode() not in raw
        envelope = json.loads(raw)
        body = json.loads(base64.b64decode(envelope["body"]))
        messages.append({"raw": raw, "headers": envelope["headers"], "body": body})
    return messages


@pytest.mark.parametrize(
    ("url", "task"),
    [(VERIFY_URL, "emailsettings.verify_mailbox"), (TEST_URL, "emailsettings.send_test_mail")],
)
def test_starting_a_check_enqueues_the_account_id_only(
    logged_client, smtp_account_factory, django_capture_on_commit_callbacks, url, task
):
    account = smtp_account_factory(None, port=587)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_client.post(url, **JSON)

    assert response.status_code == 202
    assert response.json()["state"] == "queued"
    assert SMTP_PASSWORD not in response.content.decode()
    [message] = queued_messages()
    assert message["headers"]["task"] == task
    args, kwargs, _embed = message["body"]
    assert args == [account.pk]
    assert kwargs == {}


def test_status_shows_progress_then_the_success(
    logged_client, smtp_server_factory, smtp_account_factory, django_capture_on_commit_callbacks
):
    server = smtp_server_factory()
    account = smtp_account_factory(server)
    with django_capture_on_commit_callbacks(execute=True):
        logged_client.post(VERIFY_URL, **JSON)

    assert logged_client.get(STATUS_URL).json()["state"] == "queued"

    mailbox.verify_mailbox(account=account)  # what the worker does

    data = logged_client.get(STATUS_URL).json()
    assert data["state"] == "done"
    assert data["status"] == MailboxStatus.OK
    assert data["result"]["ok"] is True
    assert data["result"]["title"] == "Connessione riuscita"
    assert data["result"]["at_display"]


def test_status_shows_advice_and_raw_reply_without_the_password(
    logged_client, smtp_server_factory, smtp_account_factory, django_capture_on_commit_callbacks
):
    gmail = "535 5.7.8 Username and Password not accepted. Learn more at support.google.com"
    server = smtp_server_factory(tls="implicit", behaviour=Behaviour(auth_failure=gmail))
    account = smtp_account_factory(server, preset="gmail", password="Vecchia-Password-987")
    with django_capture_on_commit_callbacks(execute=True):
        logged_client.post(VERIFY_URL, **JSON)

    mailbox.verify_mailbox(account=account)

    response = logged_client.get(STATUS_URL)
    body = response.content.decode()
    data = response.json()
    assert data["state"] == "done"
    assert data["status"] == MailboxStatus.BROKEN
    result = data["result"]
    assert result["ok"] is False
    assert (
        "password per le app"
        in (result["title"] + result["text"] + "".join(result["steps"])).lower()
    )
    assert result["details"]["code"] == 535
    assert result["details"]["enhanced"] == "5.7.8"
    assert "Username and Password not accepted" in result["details"]["reply"]
    assert "Vecchia-Password-987" not in body
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Vecchia-Password-987" not in page


def test_settings_page_shows_the_check_buttons(logged_client, smtp_account_factory):
    smtp_account_factory(None, port=587)
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Verifica connessione" in page
    assert "Invia una mail di prova" in page
    assert "js/mailbox.js" in page


def test_checks_are_rate_limited_with_a_clear_message(
    logged_client, smtp_account_factory, django_capture_on_commit_callbacks
):
    smtp_account_factory(None, port=587)
    with django_capture_on_commit_callbacks(execute=True):
        statuses = [logged_client.post(VERIFY_URL, **JSON).status_code for _ in range(3)]
        statuses += [logged_client.post(TEST_URL, **JSON).status_code for _ in range(2)]
        refused = logged_client.post(VERIFY_URL, **JSON)

    assert statuses == [202] * 5
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert "negli ultimi 10 minuti" in error
    assert re.search(r"riprova tra (10|9) minuti, alle \d\d:\d\d\.$", error)
    assert len(queued_messages()) == 5


def test_without_javascript_the_post_redirects_with_a_message(
    logged_client, smtp_account_factory, django_capture_on_commit_callbacks
):
    smtp_account_factory(None, port=587)
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_client.post(VERIFY_URL, follow=True)
    assert response.redirect_chain[-1][0].endswith("#smtp")
    assert "Verifica avviata" in response.content.decode()


def test_post_requires_csrf(practitioner, smtp_account_factory):
    smtp_account_factory(None, port=587)
    client = Client(enforce_csrf_checks=True)
    client.force_login(practitioner)
    assert client.post(VERIFY_URL, **JSON).status_code == 403
    assert client.post(TEST_URL, **JSON).status_code == 403
    assert queued_messages() == []


def test_get_is_not_allowed_and_login_is_required(client, logged_client, smtp_account_factory):
    smtp_account_factory(None, port=587)
    assert logged_client.get(VERIFY_URL).status_code == 405
    assert logged_client.get(TEST_URL).status_code == 405
    for url in (VERIFY_URL, TEST_URL):
        response = Client().post(url)
        assert response.status_code == 302
        assert "/accesso/" in response["Location"]
    assert Client().get(STATUS_URL).status_code == 302


def test_views_are_scoped_to_the_practitioner(
    client,
    practitioner,
    other_practitioner,
    smtp_account_factory,
    django_capture_on_commit_callbacks,
):
    account = smtp_account_factory(None, port=587)
    client.force_login(other_practitioner)

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(VERIFY_URL, **JSON).status_code == 404
        assert client.post(TEST_URL, **JSON).status_code == 404
    assert client.get(STATUS_URL, **JSON).status_code == 404
    assert queued_messages() == []
    assert mailbox.check_progress(account=account) is None

    # Their own mailbox is theirs only.
    other = smtp_account_factory(None, port=587, practitioner=other_practitioner)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(VERIFY_URL, **JSON).status_code == 202
    [message] = queued_messages()
    assert message["body"][0] == [other.pk]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_verify_through_a_real_worker(
    celery_worker_factory, local_ca, smtp_server_factory, smtp_account_factory, practitioner
):
    """The whole path: the page's POST, the broker, a worker process, the server, the
    stored outcome and the status the page polls."""
    server = smtp_server_factory()
    account = smtp_account_factory(server)
    worker = celery_worker_factory(EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file)
    client = Client()
    client.force_login(practitioner)

    assert client.post(VERIFY_URL, **JSON).status_code == 202

    data = wait_until(
        lambda: (d := client.get(STATUS_URL).json())["state"] == "done" and d,
        timeout=60,
        message="the worker did not finish the verify",
    )
    assert data["result"]["ok"] is True, data
    account.refresh_from_db()
    assert account.status == MailboxStatus.OK
    assert server.auth_attempts == [account.username]
    assert server.messages == []
    assert SMTP_PASSWORD not in worker.log()


def test_status_says_how_long_the_check_has_waited_and_the_mailbox_state(
    logged_client, smtp_account_factory
):
    import datetime

    from django.utils import timezone

    account = smtp_account_factory(None, status=MailboxStatus.BROKEN)
    cache.set(
        mailbox._progress_key(account.pk),
        {
            "kind": "verify",
            "state": "queued",
            "phase": "",
            "started_at": (timezone.now() - datetime.timedelta(seconds=42)).isoformat(),
        },
    )
    data = logged_client.get(STATUS_URL).json()
    assert data["state"] == "queued"
    assert 41 <= data["elapsed_seconds"] <= 60
    assert (data["status"], data["status_label"], data["status_tone"]) == (
        "broken",
        "da correggere",
        "err",
    )
    cache.delete(mailbox._progress_key(account.pk))
    idle = logged_client.get(STATUS_URL).json()
    assert idle["state"] == "idle" and idle["elapsed_seconds"] is None


def test_the_live_badge_says_da_ricollegare_like_the_page(logged_client, smtp_account_factory):
    """A mailbox whose OAuth grant was refused: the badge the running check updates says what
    the page says after a reload."""
    from emailsettings.failures import ErrorClass
    from emailsettings.models import AuthMethod

    smtp_account_factory(
        None,
        status=MailboxStatus.BROKEN,
        auth_method=AuthMethod.OAUTH,
        last_error={"error_class": ErrorClass.OAUTH_RECONNECT},
    )
    data = logged_client.get(STATUS_URL).json()
    assert data["status_label"] == "da ricollegare"
    page = logged_client.get("/email/impostazioni/").content.decode()
    assert 'data-status="broken"' in page and ">da ricollegare</span>" in page
