"""``/metrics``: refused without the token, every metric the operator's guide names is there
(parsed with prometheus_client's own parser), the figures move when a batch is sent, and
nothing in it names a patient or a practitioner."""

from __future__ import annotations

import base64
import datetime
import re
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from emailsettings.models import Reputation, ReputationState
from emailsettings.outbox.publish import BACKLOG_PRIORITY, publish_task
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

TOKEN = "gettone-metriche-di-prova"
DOC = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


@pytest.fixture(autouse=True)
def token(settings):
    settings.EMAILSETTINGS_METRICS_TOKEN = TOKEN
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def documented_metrics() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Metrics and probes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(psicogest_[a-z_]+)`", section, flags=re.MULTILINE))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer sbagliato",
        "Basic " + base64.b64encode(b"prometheus:sbagliato").decode(),
        "Basic !!!",
        f"Token {TOKEN}",
    ],
)
def test_refused_without_the_token(client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert "psicogest_" not in response.content.decode()


def test_basic_auth_with_the_token_as_password_is_accepted(client):
    credentials = base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 200


def test_no_token_configured_means_no_endpoint(client, settings):
    settings.EMAILSETTINGS_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_every_documented_metric_is_there_and_nothing_else(client):
    documented = documented_metrics()
    assert len(documented) >= 10
    families = {
        family.name
        for family in text_string_to_metric_families(
            client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        )
    }
    assert families == documented


def test_figures_move_when_a_batch_is_sent(
    client, practitioner, other_practitioner, postmark_standin
):
    patient = PatientFactory(practitioner=practitioner, email="giulia.segreta@example.test")
    rows = [queue_invoice_email(InvoiceFactory(patient=patient)) for _n in range(2)]
    rows.append(
        queue_invoice_email(InvoiceFactory(patient=PatientFactory(practitioner=practitioner)))
    )
    Reputation.objects.create(practitioner=other_practitioner, state=ReputationState.SUSPENDED)
    before = scrape(client)

    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=3), tick=False):
        waiting = scrape(client)
    assert (
        value(waiting, "psicogest_outbox_oldest_age_seconds", channel="smart_mail", wait="queued")
        >= 180
    )
    assert value(waiting, "psicogest_deliveries", channel="smart_mail", status="queued") >= 3

    send_batch(delivery_ids=[row.pk for row in rows])
    after = scrape(client)

    assert (
        value(after, "psicogest_outbox_oldest_age_seconds", channel="smart_mail", wait="queued")
        == 0
    )
    sent = ("psicogest_deliveries", {"channel": "smart_mail", "status": "sent"})
    assert value(after, sent[0], **sent[1]) - value(before, sent[0], **sent[1]) == 3
    attempts = {"channel": "smart_mail", "status": "sent", "error_class": ""}
    assert (
        value(after, "psicogest_delivery_attempts_total", **attempts)
        - value(before, "psicogest_delivery_attempts_total", **attempts)
        == 3
    )
    assert (
        value(after, "psicogest_esp_answer_seconds_count")
        - value(before, "psicogest_esp_answer_seconds_count")
        == 3
    )
    assert value(after, "psicogest_esp_answer_seconds_sum") > value(
        before, "psicogest_esp_answer_seconds_sum"
    )
    assert value(after, "psicogest_practitioners_by_reputation", state="suspended") == 1
    assert value(after, "psicogest_practitioners_by_reputation", state="regular") == 1
    assert value(after, "psicogest_broker_up") == 1

    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    for secret in ("giulia.segreta", practitioner.email, "example.test", TOKEN):
        assert secret not in text


def test_queue_length_counts_every_priority(client):
    """A backlog batch waits at priority 3 (a list of its own in Redis): it is counted."""
    before = value(scrape(client), "psicogest_celery_queue_length", queue="celery")
    assert publish_task("psicogest.heartbeat", [])
    assert publish_task("psicogest.heartbeat", [], priority=BACKLOG_PRIORITY)

    after = value(scrape(client), "psicogest_celery_queue_length", queue="celery")

    assert after - before == 2
