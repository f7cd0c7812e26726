"""The SMTP form against hostile input: it is no DNS oracle (one message for every refused
destination, look-ups rate-limited), the sender name is one line, and an error report never
carries the password."""

from __future__ import annotations

import socket
import sys

import pytest
from django.core.cache import cache
from django.core.signals import got_request_exception
from django.test import Client
from django.urls import reverse
from django.views.debug import ExceptionReporter

from emailsettings.exceptions import DestinationRefused
from emailsettings.forms import smtp as smtp_forms
from emailsettings.mailbox import smtp
from emailsettings.models import SmtpAccount

pytestmark = pytest.mark.django_db

PASSWORD = "Pw-della-casella-93!"
SETTINGS_URL = reverse("emailsettings:settings")
SAVE_URL = reverse("emailsettings:smtp_save")
UNIFORM = (
    "Il server SMTP indicato non è raggiungibile o non è consentito: usa il server pubblico "
    "del tuo provider, sulla porta 465 o 587."
)


class FakeGetaddrinfo:
    """Stands in for public DNS at ``socket.getaddrinfo`` (what ``check_destination`` calls):
    names map to addresses, an ``OSError`` value is raised, any other name is itself."""

    def __init__(self, table: dict[str, list[str] | OSError]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        self.lookups.append(host)
        answer = self.table.get(host, [host])
        if isinstance(answer, OSError):
            raise answer
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in answer
        ]


@pytest.fixture
def guard_on(settings):
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False


@pytest.fixture
def resolver(monkeypatch):
    fake = FakeGetaddrinfo(
        {
            "smtp.interno.example.com": ["10.1.2.3"],
            "smtp.misto.example.com": ["93.184.216.34", "192.168.1.10"],
            "smtp.inesistente.example.com": socket.gaierror(socket.EAI_NONAME, "not known"),
            "smtp.lento.example.com": socket.gaierror(socket.EAI_AGAIN, "try again"),
            **{f"smtp{i}.example.com": ["93.184.216.34"] for i in range(20)},
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture(autouse=True)
def _fresh_lookup_limit(practitioner, other_practitioner):
    keys = [smtp_forms.lookup_rate_key(p.pk) for p in (practitioner, other_practitioner)]
    keys += [f"{key}:opened" for key in keys]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def form_data(**overrides):
    data = {
        "email": "maria.rossi@example.com",
        "preset": "custom",
        "host": "smtp0.example.com",
        "port": "587",
        "security": "starttls",
        "username": "maria.rossi@example.com",
        "password": PASSWORD,
        "sender_name": "Dott.ssa Maria Rossi",
    }
    data.update(overrides)
    return data


def host_errors(client: Client) -> list[str]:
    """The host errors of the form on the page a refused save leads to."""
    return list(client.get(SETTINGS_URL).context["smtp_form"].errors.get("host", []))


# --- one message for every refused destination -------------------------------------------

REFUSED_HOSTS = [
    "127.0.0.1",
    "10.0.0.7",
    "::1",
    "smtp.interno.example.com",
    "smtp.misto.example.com",
    "smtp.inesistente.example.com",
    "smtp.lento.example.com",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_every_refused_destination_says_the_same_words(guard_on, resolver, host):
    with pytest.raises(DestinationRefused) as caught:
        smtp.check_destination(host, 587)
    assert caught.value.message == UNIFORM


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_the_form_names_neither_the_address_nor_whether_the_name_resolved(
    guard_on, resolver, logged_client, host
):
    response = logged_client.post(SAVE_URL, form_data(host=host))
    assert response.status_code == 302
    errors = host_errors(logged_client)
    assert errors == [UNIFORM]
    for address in ("127.0.0.1", "10.1.2.3", "10.0.0.7", "192.168.1.10", "::1"):
        assert address not in errors[0]
    assert not SmtpAccount.objects.exists()


# --- the look-up on save is rate-limited -----------------------------------------------------


def test_host_lookups_on_save_are_rate_limited_per_practitioner(
    guard_on, resolver, logged_client, practitioner, other_practitioner
):
    for i in range(smtp_forms.LOOKUP_RATE_LIMIT_COUNT):
        response = logged_client.post(SAVE_URL, form_data(host=f"smtp{i}.example.com"))
        assert response.status_code == 302
        assert SmtpAccount.objects.get(practitioner=practitioner).host == f"smtp{i}.example.com"
    assert len(resolver.lookups) == smtp_forms.LOOKUP_RATE_LIMIT_COUNT

    response = logged_client.post(SAVE_URL, form_data(host="smtp15.example.com"))
    assert response.status_code == 302
    (error,) = host_errors(logged_client)
    assert "aspetta prima di salvare di nuovo" in error
    assert "riprova tra" in error
    # Not looked up, not saved (the page shown after the refusal did not look it up either).
    assert "smtp15.example.com" not in resolver.lookups
    assert len(resolver.lookups) == smtp_forms.LOOKUP_RATE_LIMIT_COUNT
    assert SmtpAccount.objects.get(practitioner=practitioner).host == "smtp9.example.com"

    other = Client()
    other.force_login(other_practitioner)
    assert other.post(SAVE_URL, form_data(host="smtp15.example.com")).status_code == 302
    assert SmtpAccount.objects.get(practitioner=other_practitioner).host == "smtp15.example.com"


def test_the_page_after_a_refused_save_reuses_the_lookup(guard_on, resolver, logged_client):
    logged_client.post(SAVE_URL, form_data(host="smtp.interno.example.com"))
    assert host_errors(logged_client) == [UNIFORM]
    assert resolver.lookups == ["smtp.interno.example.com"]


# --- the sender name is one line ------------------------------------------------------------


@pytest.mark.parametrize(
    "sender_name",
    [
        "Dott.ssa Rossi\r\nBcc: tutti@example.com",
        "Dott.ssa Rossi\nX-Altro: 1",
        "Dott.ssa\rRossi",
        "Dott.ssa\tRossi",
        "Dott.ssa\x85Rossi",
        "Dott.ssa\u2028Rossi",
    ],
)
def test_a_sender_name_with_control_characters_is_refused(resolver, logged_client, sender_name):
    response = logged_client.post(SAVE_URL, form_data(sender_name=sender_name))
    assert response.status_code == 302
    form = logged_client.get(SETTINGS_URL).context["smtp_form"]
    assert form.errors["sender_name"] == [
        "Il nome del mittente deve stare su una sola riga, senza caratteri di controllo."
    ]
    assert not SmtpAccount.objects.exists()


def test_a_plain_sender_name_is_saved(resolver, logged_client, practitioner):
    assert logged_client.post(SAVE_URL, form_data(sender_name="Dott.ssa Rossi")).status_code == 302
    assert SmtpAccount.objects.get(practitioner=practitioner).sender_name == "Dott.ssa Rossi"


# --- error reports never carry the password -------------------------------------------------


def _explode(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "where",
    ["emailsettings.forms.smtp.check_destination", "emailsettings.forms.smtp.forget_checks"],
    ids=["while-validating", "while-saving"],
)
def test_a_500_error_report_masks_the_password(
    practitioner, monkeypatch, settings, resolver, where
):
    settings.DEBUG = False
    monkeypatch.setattr(where, _explode)
    captured: list[tuple] = []

    def capture(sender, request, **kwargs):
        captured.append((request, *sys.exc_info()))

    got_request_exception.connect(capture)
    try:
        client = Client(raise_request_exception=False)
        client.force_login(practitioner)
        response = client.post(SAVE_URL, form_data())
    finally:
        got_request_exception.disconnect(capture)
    assert response.status_code == 500
    (request, exc_type, exc_value, tb) = captured[0]
    assert exc_type is RuntimeError
    assert list(request.sensitive_post_parameters) == ["password"]
    reporter = ExceptionReporter(request, exc_type, exc_value, tb, is_email=True)
    text = reporter.get_traceback_text()
    html = reporter.get_traceback_html()
    assert "boom" in text
    assert PASSWORD not in text
    assert PASSWORD not in html
    assert "********" in text
