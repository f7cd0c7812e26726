"""A Google mailbox connected with OAuth, used by a real Celery worker process: the
verification the callback queues, then three invoices, all over XOAUTH2 — and no token in
the broker's messages or the worker's log."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings as django_settings

from emailsettings.models import Delivery, DeliveryStatus, MailboxStatus, SmtpAccount
from emailsettings.outbox.queueing import queue_invoice_email
from tests.conftest import wait_until
from tests.emailsettings.mailbox.test_oauth_flow import (
    MAILBOX,
    _tokens,
    connect,
    invoices,
    point_at,
    smtp_channel,
)
from tests.support.oauth_server import worker_env

pytestmark = pytest.mark.worker


def _queued_messages() -> list[str]:
    """The broker's pending task messages, bodies decoded."""
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    found = []
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        body = base64.b64decode(message["body"]).decode()
        found.append(raw.decode() + body)
    return found


def test_connect_verify_and_send_three_invoices_through_a_real_worker(
    logged_client,
    practitioner,
    oauth_provider,
    smtp_server_factory,
    local_ca,
    celery_worker_factory,
):
    smtp_server = smtp_server_factory(xoauth2=oauth_provider.check_bearer)
    connect(logged_client, oauth_provider)
    account = point_at(SmtpAccount.objects.get(practitioner=practitioner), smtp_server)
    smtp_channel(practitioner)

    # The verification the callback queued carries the mailbox's id, never a token.
    [verify] = _queued_messages()
    assert f"[{account.pk}]" in verify.replace(" ", "")
    for token in _tokens(oauth_provider):
        assert token not in verify

    worker = celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, **worker_env("google", oauth_provider)
    )
    wait_until(
        lambda: SmtpAccount.objects.get(pk=account.pk).status == MailboxStatus.OK,
        message="the verification did not succeed:\n" + worker.log()[-3000:],
    )

    deliveries = [queue_invoice_email(invoice) for invoice in invoices(practitioner, 3)]
    try:
        wait_until(
            lambda: all(
                status == DeliveryStatus.SENT
                for status in Delivery.objects.filter(
                    pk__in=[d.pk for d in deliveries]
                ).values_list("status", flat=True)
            ),
            timeout=60,
        )
    except AssertionError:
        # The worker's log as it is now, not as it was when the wait began.
        rows = list(
            Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list(
                "pk", "status", "phase"
            )
        )
        raise AssertionError(
            f"the invoices were not sent: {rows}\n{worker.log()[-4000:]}"
        ) from None
    assert len(smtp_server.messages) == 3
    assert {received.login for received in smtp_server.messages} == {MAILBOX}
    log = worker.log()
    for token in _tokens(oauth_provider):
        assert token not in log
