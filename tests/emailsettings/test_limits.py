"""Smart Mail limits: the per-practitioner pace (a Redis token bucket) and the daily quota,
stricter for new accounts (warm-up). Sending goes through anymail's test backend; the
database is PostgreSQL and the buckets live in the test Redis."""

from __future__ import annotations

import datetime
import time

import pytest
import redis
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailAPIError
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from emailsettings import conf, limits
from emailsettings.limits import smart_mail_quota
from emailsettings.models import Channel, Delivery, DeliveryStatus, EventKind
from emailsettings.outbox import worker
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.sweeper import sweep
from emailsettings.outbox.worker import send_batch
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory

ANYMAIL_TEST = "anymail.backends.test.EmailBackend"


@pytest.fixture
def smart_mail(settings):
    settings.EMAIL_BACKEND = ANYMAIL_TEST
    mail.outbox = []
    return settings


def bucket_key(practitioner) -> str:
    return f"emailsettings:bucket:smart_mail:{practitioner.pk}"


@pytest.fixture
def redis_client(settings):
    client = redis.Redis.from_url(conf.redis_url())
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _fresh_buckets(redis_client):
    """Practitioner ids can repeat across tests: each test starts with full buckets."""
    for key in redis_client.scan_iter("emailsettings:bucket:smart_mail:*"):
        redis_client.delete(key)


def make_invoices(practitioner, count: int):
    return [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"paziente{n}@example.test")
        )
        for n in range(count)
    ]


def send(invoices) -> list[Delivery]:
    deliveries = queue_invoice_emails(invoices)
    send_batch(delivery_ids=[d.pk for d in deliveries])
    for delivery in deliveries:
        delivery.refresh_from_db()
    return deliveries


def local(moment: datetime.datetime) -> tuple[str, str]:
    moment = timezone.localtime(moment)
    return moment.strftime("%d/%m/%Y"), moment.strftime("%H:%M")


# --- the daily quota -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_account_at_quota_waits_unsent_until_the_quota_frees_up(
    practitioner, smart_mail, settings
):
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 2
    first, second = send(make_invoices(practitioner, 2))
    assert [first.status, second.status] == [DeliveryStatus.SENT] * 2
    # The oldest send of the window was 3 hours ago: one slot frees up 21 hours from now.
    earlier = timezone.now() - datetime.timedelta(hours=3, seconds=30)
    Delivery.objects.filter(pk=first.pk).update(sent_at=earlier)

    (third,) = send(make_invoices(practitioner, 1))

    assert third.status == DeliveryStatus.DEFERRED
    assert third.attempts == 0  # not an attempt: nothing reached the ESP
    assert len(mail.outbox) == 2
    frees_up = earlier + datetime.timedelta(hours=24)
    assert frees_up <= third.next_attempt_at < frees_up + datetime.timedelta(minutes=1)
    assert third.last_error_class == "quota_wait"
    day, hour = local(third.next_attempt_at)
    expected = (
        "Limite giornaliero di Smart Mail raggiunto per i nuovi account: l'invio riprenderà "
        f"automaticamente il {day} alle {hour}."
    )
    event = third.events.order_by("created_at", "id").last()
    assert (event.kind, event.status, event.text) == (
        EventKind.ATTEMPT,
        DeliveryStatus.DEFERRED,
        expected,
    )
    assert third.last_error_text == expected

    # The sweeper leaves it alone until then; a worker that gets its id early too.
    sweep()
    send_batch(delivery_ids=[third.pk])
    third.refresh_from_db()
    assert third.status == DeliveryStatus.DEFERRED
    assert third.attempts == 0
    assert len(mail.outbox) == 2

    quota = smart_mail_quota(practitioner=practitioner)
    assert (quota.limit, quota.used, quota.exhausted, quota.in_warmup) == (2, 2, True, True)


@pytest.mark.django_db
def test_a_batch_larger_than_the_quota_sends_what_fits_and_defers_the_rest(
    practitioner, smart_mail, settings
):
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 3

    deliveries = send(make_invoices(practitioner, 5))

    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 3 + [
        DeliveryStatus.DEFERRED
    ] * 2
    assert len(mail.outbox) == 3
    for waiting in deliveries[3:]:
        assert (waiting.attempts, waiting.last_error_class) == (0, "quota_wait")
        assert waiting.lease_expires_at is None
    quota = smart_mail_quota(practitioner=practitioner)
    assert (quota.used, quota.exhausted) == (3, True)


@pytest.mark.django_db
def test_rows_reserved_by_a_running_batch_count_toward_the_quota(
    practitioner, smart_mail, settings
):
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 3
    # Another worker's batch has claimed the quota for its two rows and not sent them yet.
    theirs = queue_invoice_emails(make_invoices(practitioner, 2))
    granted, _quota = limits.reserve_smart_mail_quota(
        practitioner_id=practitioner.pk,
        delivery_ids=[d.pk for d in theirs],
        until=timezone.now() + datetime.timedelta(minutes=5),
    )
    assert granted == [d.pk for d in theirs]

    mine = send(make_invoices(practitioner, 2))

    assert [d.status for d in mine] == [DeliveryStatus.SENT, DeliveryStatus.DEFERRED]
    assert smart_mail_quota(practitioner=practitioner).used == 3
    # Given back (that batch stopped): they no longer count, and they are still queued.
    assert limits.release_smart_mail_quota([d.pk for d in theirs]) == 2
    assert smart_mail_quota(practitioner=practitioner).used == 1
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in theirs])} == {
        DeliveryStatus.QUEUED
    }


class BusyEsp(AnymailTestBackend):
    """The ESP answers 503: a temporary error."""

    def post_to_esp(self, payload, message):
        raise AnymailAPIError("Service Unavailable", status_code=503, backend=self)


@pytest.mark.django_db
def test_a_long_quota_wait_never_turns_into_a_failure(practitioner, smart_mail, settings):
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 1
    (sent,) = send(make_invoices(practitioner, 1))
    (waiting,) = send(make_invoices(practitioner, 1))
    assert waiting.status == DeliveryStatus.DEFERRED

    # Days pass (queued 3 days ago, well past the 2-day retry window); the quota frees up.
    Delivery.objects.filter(pk=sent.pk).update(sent_at=timezone.now() - datetime.timedelta(days=3))
    Delivery.objects.filter(pk=waiting.pk).update(
        created_at=timezone.now() - datetime.timedelta(days=3),
        queued_at=timezone.now() - datetime.timedelta(days=3),
        next_attempt_at=timezone.now() - datetime.timedelta(seconds=1),
        quota_wait_until=timezone.now() - datetime.timedelta(seconds=1),
    )
    settings.EMAIL_BACKEND = f"{__name__}.BusyEsp"
    send_batch(delivery_ids=[waiting.pk])

    waiting.refresh_from_db()
    # The first real attempt meets a temporary error: retried later, not given up.
    assert waiting.status == DeliveryStatus.DEFERRED
    assert waiting.attempts == 1
    assert waiting.last_error_code == 503


@pytest.mark.django_db
def test_an_old_account_is_not_held_to_the_warm_up_quota(smart_mail, settings):
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 1
    veteran = PractitionerFactory(date_joined=timezone.now() - datetime.timedelta(days=90))

    deliveries = send(make_invoices(veteran, 3))

    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
    assert len(mail.outbox) == 3
    quota = smart_mail_quota(practitioner=veteran)
    assert (quota.limit, quota.used, quota.in_warmup) == (2000, 3, False)

    # The regular daily quota still applies, with its own wording.
    settings.EMAILSETTINGS_SMART_MAIL_DAILY_QUOTA = 3
    (fourth,) = send(make_invoices(veteran, 1))
    assert fourth.status == DeliveryStatus.DEFERRED
    assert fourth.events.last().text.startswith(
        "Limite giornaliero di Smart Mail raggiunto: l'invio riprenderà automaticamente il "
    )
    assert len(mail.outbox) == 3


@pytest.mark.django_db
def test_the_quota_counts_only_smart_mail_sends_in_the_last_24_hours(practitioner, smart_mail):
    old, recent = send(make_invoices(practitioner, 2))
    Delivery.objects.filter(pk=old.pk).update(sent_at=timezone.now() - datetime.timedelta(hours=25))
    Delivery.objects.filter(pk=recent.pk).update(channel=Channel.SMTP)
    quota = smart_mail_quota(practitioner=practitioner)
    assert (quota.limit, quota.used, quota.resets_at) == (100, 0, None)
    assert quota.warmup_until == practitioner.date_joined + datetime.timedelta(days=30)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_sends_the_waiting_delivery_once_the_quota_frees_up(
    settings, celery_worker_factory, practitioner
):
    settings.EMAIL_BACKEND = ANYMAIL_TEST
    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 1
    worker = celery_worker_factory(EMAILSETTINGS_WARMUP_DAILY_QUOTA="1")

    (first,) = queue_invoice_emails(make_invoices(practitioner, 1))
    wait_until(
        lambda: Delivery.objects.get(pk=first.pk).status == DeliveryStatus.SENT,
        message="first delivery not sent:\n" + worker.log()[-2000:],
    )
    (second,) = queue_invoice_emails(make_invoices(practitioner, 1))
    wait_until(
        lambda: Delivery.objects.get(pk=second.pk).status == DeliveryStatus.DEFERRED,
        message="second delivery not deferred:\n" + worker.log()[-2000:],
    )
    second.refresh_from_db()
    assert second.last_error_class == "quota_wait" and second.attempts == 0
    sweep()  # not due yet: nothing happens
    assert Delivery.objects.get(pk=second.pk).status == DeliveryStatus.DEFERRED

    # A day goes by: the first send leaves the window and the waiting row becomes due.
    day = datetime.timedelta(hours=24, minutes=1)
    Delivery.objects.filter(pk=first.pk).update(sent_at=timezone.now() - day)
    Delivery.objects.filter(pk=second.pk).update(next_attempt_at=second.next_attempt_at - day)

    assert sweep().due == 1
    wait_until(
        lambda: Delivery.objects.get(pk=second.pk).status == DeliveryStatus.SENT,
        message="the waiting delivery was not sent:\n" + worker.log()[-2000:],
    )
    second.refresh_from_db()
    assert second.attempts == 1
    assert second.esp_message_id


# --- the pace ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_smart_mail_waits_for_the_practitioners_tokens(
    practitioner, smart_mail, settings, redis_client, monkeypatch
):
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 120  # two a second
    # One and a half tokens left: the first message goes at once, the next two wait.
    redis_client.hset(bucket_key(practitioner), mapping={"tokens": 1.5, "ts": time.time()})
    waits: list[float] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(worker.time, "sleep", recording_sleep)

    deliveries = send(make_invoices(practitioner, 3))

    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
    assert len(mail.outbox) == 3
    assert waits, "the batch did not wait for the bucket"
    # Every message took a token: the bucket is empty, not refilled to its capacity of 20.
    assert float(redis_client.hget(bucket_key(practitioner), "tokens")) < 1


@pytest.mark.django_db
def test_smart_mail_pace_hands_the_rest_to_a_new_task_past_the_time_budget(
    practitioner, other_practitioner, smart_mail, settings, redis_client
):
    # 12 a minute: a burst of 2, then one every 5 s — longer than this batch may run.
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 12
    settings.EMAILSETTINGS_BATCH_TIME_BUDGET_SECONDS = 3
    deliveries = queue_invoice_emails(make_invoices(practitioner, 3))

    result = send_batch(delivery_ids=[d.pk for d in deliveries])

    assert result.handed_over == [deliveries[2].pk]
    statuses = [Delivery.objects.get(pk=d.pk).status for d in deliveries]
    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.QUEUED]
    assert Delivery.objects.get(pk=deliveries[2].pk).attempts == 0
    assert len(mail.outbox) == 2
    assert float(redis_client.hget(bucket_key(practitioner), "tokens")) < 1

    # The bucket is the practitioner's own: another practitioner sends at once.
    (theirs,) = send(make_invoices(other_practitioner, 1))
    assert theirs.status == DeliveryStatus.SENT


# --- the settings page ---------------------------------------------------------------------


@pytest.mark.django_db
def test_settings_page_shows_the_warm_up_quota_to_a_new_account(logged_client, practitioner):
    response = logged_client.get(reverse("emailsettings:settings"))
    until, _hour = local(practitioner.date_joined + datetime.timedelta(days=30))
    assert (
        f"Account nuovo: fino a 100 fatture al giorno con Smart Mail fino al {until}."
        in response.content.decode()
    )


@pytest.mark.django_db
def test_settings_page_has_no_warm_up_line_for_an_old_account(client):
    veteran = PractitionerFactory(date_joined=timezone.now() - datetime.timedelta(days=31))
    client.force_login(veteran)
    response = client.get(reverse("emailsettings:settings"))
    assert response.status_code == 200
    assert "Account nuovo" not in response.content.decode()


@pytest.mark.django_db
def test_the_report_explains_the_quota_wait_in_its_own_words(practitioner, smart_mail, settings):
    from emailsettings.report import error_advice

    settings.EMAILSETTINGS_WARMUP_DAILY_QUOTA = 1
    send(make_invoices(practitioner, 1))
    (waiting,) = send(make_invoices(practitioner, 1))
    sentence, detail = error_advice(delivery=waiting, preset_key=None)
    assert sentence.startswith("Limite giornaliero di Smart Mail raggiunto per i nuovi account")
    assert detail == ""


# --- the fixed-window limit of user actions (mailbox checks, domain checks) ----------------


def test_a_fixed_window_lasts_its_whole_length_with_the_file_cache(settings, tmp_path, monkeypatch):
    """The file cache (the embedded default) turns ``incr`` into a ``set`` with its default
    300-second timeout: the window must still last 10 minutes, and say when it closes."""
    import time as time_module

    from django.core.cache import cache

    from emailsettings.limits import fixed_window_retry_after, within_fixed_window

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: clock[0])
    key = "test:window:file"

    assert [within_fixed_window(key, limit=5, window=600) for _ in range(5)] == [True] * 5
    assert within_fixed_window(key, limit=5, window=600) is False
    clock[0] += 301  # past the file cache's default timeout, still inside the window
    assert within_fixed_window(key, limit=5, window=600) is False
    assert fixed_window_retry_after(key, window=600) == 299
    clock[0] += 300  # the window opened 601 s ago: a new one
    assert within_fixed_window(key, limit=5, window=600) is True
    assert fixed_window_retry_after(key, window=600) == 600
    cache.clear()


def test_a_fixed_window_on_redis_expires_with_the_window():
    import os

    from django.core.cache import cache

    from emailsettings.limits import fixed_window_retry_after, within_fixed_window

    key = "test:window:redis"
    cache.delete_many([key, f"{key}:opened"])
    assert [within_fixed_window(key, limit=2, window=600) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    ttl = redis.Redis.from_url(os.environ["REDIS_URL"]).ttl(cache.make_key(key))
    assert 590 <= ttl <= 600
    assert 590 <= fixed_window_retry_after(key, window=600) <= 600
    cache.delete_many([key, f"{key}:opened"])
