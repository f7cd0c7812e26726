"""Shared fixtures: the real services (PostgreSQL, Redis, a Celery worker process, Chromium).

``make test`` starts PostgreSQL and Redis and exports DATABASE_URL and REDIS_URL. A missing
service is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import caches

from emailsettings.outbox import outage
from psicogest.cache import ResilientRedisCache
from psicogest.celery import MAILBOX_QUEUE, app

# SMTP test servers, the test CA and mailbox accounts (see tests/support/smtp_fixtures.py); the
# local OAuth authorization server (tests/support/oauth_server.py).
pytest_plugins = [
    "tests.support.smtp_fixtures",
    "tests.support.mta_fixtures",
    "tests.support.oauth_server",
    "tests.support.oauth_imap",
    "tests.support.devmail",
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"

# Playwright's sync API keeps an event loop in the main thread; Django's ORM calls from the
# test body are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_configure(config: pytest.Config) -> None:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise pytest.UsageError(
            "The tests run against PostgreSQL and Redis: run them with `make test` "
            "(or export DATABASE_URL=postgres://… and REDIS_URL=redis://…)."
        )
    if not os.environ.get("REDIS_URL", "").startswith("redis://"):
        raise pytest.UsageError("REDIS_URL is not set: run the tests with `make test`.")


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_FILE_PATH = str(tmp_path / "smartmail")
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CELERY_TASK_ALWAYS_EAGER = False


@pytest.fixture(autouse=True)
def _no_public_dns_for_recipient_checks(monkeypatch):
    """The recipient checks of the confirmation page and the patient card never query public
    DNS: every look-up "cannot tell" unless a test gives its own resolver."""
    import dns.resolver

    from emailsettings.outbox import recipientcheck
    from tests.support.fakedns import FakeResolver

    fake = FakeResolver(error=dns.resolver.NoNameservers())
    monkeypatch.setattr(recipientcheck, "default_resolver", lambda: fake)


@pytest.fixture
def practitioner(db):
    from tests.factories import PractitionerFactory

    return PractitionerFactory()


@pytest.fixture
def other_practitioner(db):
    from tests.factories import PractitionerFactory

    return PractitionerFactory(email="altro@example.test", first_name="Luca", last_name="Neri")


@pytest.fixture
def postmark_standin(settings):
    """A local stand-in for Postmark's send API (``devtools/espserver.py``, a real HTTP/1.1
    server on a thread), with anymail's Postmark backend pointed at it through settings."""
    from devtools.espserver import EspStandIn

    with EspStandIn() as esp:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            **settings.ANYMAIL,
            "POSTMARK_SERVER_TOKEN": "test-server-token",
            "POSTMARK_API_URL": esp.url,
        }
        yield esp


@pytest.fixture
def logged_client(client, practitioner):
    client.force_login(practitioner)
    return client


# --- a real Celery worker process -----------------------------------------------------


class WorkerProcess:
    """A `celery worker` child process bound to the test database and the test Redis."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 1,
        queues: str = "celery,mailbox",
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.queues = queues
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "psicogest",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={self.concurrency}",
                f"--queues={self.queues}",
                "--pool=prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Celery worker exited:\n" + self.log_path.read_text()[-3000:])
            if "ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError("Celery worker did not start:\n" + self.log_path.read_text()[-3000:])

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_environment(settings, **extra: str) -> dict[str, str]:
    """The environment for a worker that shares the test database and settings."""
    from django.db import connection

    db = connection.settings_dict
    # pytest-django swaps in the in-memory backend, whose outbox a worker process would keep
    # to itself: a worker writes .eml files under its own var/ instead (tests may override).
    backend = settings.EMAIL_BACKEND
    if backend == "django.core.mail.backends.locmem.EmailBackend":
        backend = "emailsettings.backends.EmlFileBackend"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=(f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"),
        DJANGO_SETTINGS_MODULE="psicogest.settings",
        EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS="true",
        EMAILSETTINGS_ENCRYPTION_KEYS=",".join(settings.EMAILSETTINGS_ENCRYPTION_KEYS),
        DJANGO_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        EMAIL_BACKEND=backend,
        PSICOGEST_VAR_DIR=str(Path(settings.MEDIA_ROOT).parent / "worker-var"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture
def celery_worker_factory(transactional_db, settings, tmp_path):
    """Start real worker processes; each is stopped at the end of the test."""
    workers: list[WorkerProcess] = []

    def start(
        *, concurrency: int = 1, queues: str = "celery,mailbox", **extra_env: str
    ) -> WorkerProcess:
        worker = WorkerProcess(
            env=worker_environment(settings, **extra_env),
            log_path=tmp_path / f"worker{len(workers)}.log",
            concurrency=concurrency,
            queues=queues,
        )
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_worker(celery_worker_factory):
    return celery_worker_factory()


@pytest.fixture(autouse=True)
def _purge_broker_queue():
    """Each test starts with empty broker queues (tasks of a previous test are dropped) and
    with no outage remembered by a previous one (psicogest/cache.py, outbox/outage.py)."""
    outage.reset()
    for cache in caches.all(initialized_only=True):
        if isinstance(cache, ResilientRedisCache):
            cache.reset_outage()
    with app.connection_for_write() as conn:
        for queue in ("celery", MAILBOX_QUEUE):
            conn.default_channel.queue_purge(queue)
    yield


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.2, message: str = ""):
    """Poll until predicate() is truthy; fail with message after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        time.sleep(interval)


# --- Chromium through Playwright -------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs the chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, request):
    context = browser.new_context(locale="it-IT", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def save_screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page, live_server, email: str, password: str) -> None:
    page.goto(f"{live_server.url}/accesso/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("button[type=submit].primary")
    page.wait_for_load_state()


__all__ = ["save_screenshot", "login", "wait_until", "shutil"]
