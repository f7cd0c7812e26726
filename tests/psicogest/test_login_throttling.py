"""Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one login name
from one address, the right password is refused too, with an Italian message, on the site's
login page and on the admin's; other users and other addresses are not affected; the cool-off
ends it, and so does the operator's ``axes_reset``."""

from __future__ import annotations

import datetime

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from psicogest.access import client_ip
from tests.factories import PractitionerFactory
from tests.psicogest.test_settings import manage, production_env

LOGIN = reverse("login")
ADMIN_LOGIN = reverse("admin:login")
PASSWORD = "password-di-prova"  # the factories' password
LOCKED = "Troppi tentativi di accesso non riusciti."

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = datetime.timedelta(minutes=15)
    settings.PSICOGEST_TRUSTED_PROXY_COUNT = 0


def attempt(client: Client, email: str, password: str, *, url: str = LOGIN, **extra):
    return client.post(url, {"username": email, "password": password}, **extra)


def fail(client: Client, email: str, times: int, *, url: str = LOGIN, **extra) -> None:
    for _ in range(times):
        response = attempt(client, email, "sbagliata", url=url, **extra)
        assert response.status_code in (200, 429)


def logged_in(client: Client) -> bool:
    return client.get(reverse("invoices")).status_code == 200


def test_wrong_passwords_below_the_limit_still_let_the_right_one_in(client, practitioner):
    fail(client, practitioner.email, 4)
    response = attempt(client, practitioner.email, PASSWORD)
    assert response.status_code == 302
    assert logged_in(client)


def test_after_the_limit_the_right_password_is_refused_with_an_italian_message(
    client, practitioner
):
    fail(client, practitioner.email, 4)
    fifth = attempt(client, practitioner.email, "sbagliata")
    assert fifth.status_code == 429
    assert LOCKED in fifth.content.decode()

    response = attempt(client, practitioner.email, PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "sospeso per 15 minuti dall&#x27;ultimo tentativo" in page
    assert "chiedi all&#x27;amministratore di sbloccarlo" in page
    assert 'role="alert"' in page
    assert "Email o password non corretti." not in page
    # The form is still there, with the email filled in.
    assert f'value="{practitioner.email}"' in page
    assert not logged_in(client)


def test_thirty_wrong_passwords_never_let_the_right_one_in(client, practitioner):
    fail(client, practitioner.email, 30)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 429
    assert not logged_in(client)


def test_the_admin_login_is_throttled_too(client, db):
    staff = PractitionerFactory(email="operatore@example.test", is_staff=True, is_superuser=True)
    fail(client, staff.email, 5, url=ADMIN_LOGIN)
    response = attempt(client, staff.email, PASSWORD, url=ADMIN_LOGIN)
    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page
    assert 'class="errornote"' in page  # the admin's own login page, with its error
    assert client.get(reverse("admin:index")).status_code == 302


def test_failures_on_the_admin_and_the_site_count_together(client, practitioner):
    fail(client, practitioner.email, 3, url=ADMIN_LOGIN)
    fail(client, practitioner.email, 2)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 429


def test_another_user_from_the_same_address_is_not_locked(client, practitioner):
    colleague = PractitionerFactory(email="collega@example.test")
    fail(client, practitioner.email, 5)
    other = Client()
    assert attempt(other, colleague.email, PASSWORD).status_code == 302
    assert logged_in(other)


def test_the_same_user_from_another_address_is_not_locked(client, practitioner):
    fail(client, practitioner.email, 5, REMOTE_ADDR="203.0.113.7")
    assert attempt(client, practitioner.email, PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == (
        429
    )
    elsewhere = Client()
    response = attempt(elsewhere, practitioner.email, PASSWORD, REMOTE_ADDR="198.51.100.20")
    assert response.status_code == 302
    assert logged_in(elsewhere)


def test_the_lock_ends_after_the_cool_off(client, practitioner):
    fail(client, practitioner.email, 5)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 429
    AccessAttempt.objects.update(
        attempt_time=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=16)
    )
    assert attempt(client, practitioner.email, PASSWORD).status_code == 302
    assert logged_in(client)


def test_attempts_during_the_lock_do_not_extend_it(client, practitioner):
    fail(client, practitioner.email, 5)
    before = AccessAttempt.objects.get()
    fail(client, practitioner.email, 5)
    attempt(client, practitioner.email, PASSWORD)
    after = AccessAttempt.objects.get()
    assert after.attempt_time == before.attempt_time
    assert after.failures_since_start == before.failures_since_start == 5


def test_a_successful_login_clears_the_earlier_failures(client, practitioner):
    fail(client, practitioner.email, 4)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 302
    client.post(reverse("logout"))
    fail(client, practitioner.email, 4)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 302


def test_axes_reset_unlocks(client, practitioner):
    fail(client, practitioner.email, 5)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 429
    call_command("axes_reset", verbosity=0)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 302
    assert logged_in(client)


def test_axes_reset_username_unlocks_only_that_user(client, practitioner):
    colleague = PractitionerFactory(email="collega@example.test")
    fail(client, practitioner.email, 5)
    fail(client, colleague.email, 5)
    call_command("axes_reset_username", practitioner.email, verbosity=0)
    assert attempt(Client(), practitioner.email, PASSWORD).status_code == 302
    assert attempt(Client(), colleague.email, PASSWORD).status_code == 429


def test_without_a_cool_off_the_message_sends_the_user_to_the_administrator(
    client, practitioner, settings
):
    settings.AXES_COOLOFF_TIME = None
    fail(client, practitioner.email, 5)
    page = attempt(client, practitioner.email, PASSWORD).content.decode()
    assert "è sospeso: chiedi all&#x27;amministratore di sbloccarlo." in page


def test_the_limit_comes_from_the_settings(client, practitioner, settings):
    settings.AXES_FAILURE_LIMIT = 2
    fail(client, practitioner.email, 2)
    assert attempt(client, practitioner.email, PASSWORD).status_code == 429


def test_force_login_and_the_test_clients_login_still_work(client, practitioner):
    client.force_login(practitioner)
    assert logged_in(client)
    other = Client()
    assert other.login(username=practitioner.email, password=PASSWORD)
    assert logged_in(other)


def test_a_forged_forwarded_for_header_does_not_escape_the_lock(client, practitioner, settings):
    """Behind one trusted proxy the address counted is the one the proxy appended: what the
    client puts in front of it changes nothing."""
    settings.PSICOGEST_TRUSTED_PROXY_COUNT = 1
    for n in range(5):
        attempt(
            client,
            practitioner.email,
            "sbagliata",
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7",
        )
    response = attempt(
        client,
        practitioner.email,
        PASSWORD,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.7",
    )
    assert response.status_code == 429
    # Another client behind the same proxy is someone else.
    elsewhere = attempt(
        Client(),
        practitioner.email,
        PASSWORD,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.20",
    )
    assert elsewhere.status_code == 302


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "expected"),
    [
        (0, "", "10.0.0.2"),
        (0, "203.0.113.7", "10.0.0.2"),  # no trusted proxy: the header is the client's own
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "192.0.2.1, 203.0.113.7", "203.0.113.7"),  # the forged left part is never read
        (2, "192.0.2.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.2"),  # fewer hops than proxies: not through them all
        (1, "not-an-address", "10.0.0.2"),
        (1, "2001:db8::1", "2001:db8::1"),
        (1, "", "10.0.0.2"),
    ],
)
def test_client_address(settings, trusted, forwarded_for, expected):
    settings.PSICOGEST_TRUSTED_PROXY_COUNT = trusted
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="10.0.0.2", **extra)
    assert client_ip(request) == expected


def test_limits_are_read_from_the_environment():
    code = (
        "from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.PSICOGEST_TRUSTED_PROXY_COUNT)"
    )
    env = production_env(
        AXES_FAILURE_LIMIT="7", AXES_COOLOFF_MINUTES="30", PSICOGEST_TRUSTED_PROXY_COUNT="1"
    )
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["7", "0:30:00", "1"]
    result = manage("shell", "-c", code, env=production_env())
    assert result.stdout.splitlines()[-1].split() == ["5", "0:15:00", "0"]
