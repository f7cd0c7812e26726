"""Hostile cover-mail drafts: oversized or pathological templates are refused by their length
before any pattern runs, every pattern is linear, the problems listed are capped, and the
preview endpoint is rate-limited per practitioner."""

from __future__ import annotations

import datetime
import re

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from emailsettings.covermail import rendering, validation
from emailsettings.models import EmailSettings
from emailsettings.views import covermail as covermail_views
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

SETTINGS_URL = reverse("emailsettings:settings")
SAVE_URL = reverse("emailsettings:covermail_save")
PREVIEW_URL = reverse("emailsettings:covermail_preview")

BODY_LIMIT_60K = "Il testo può avere al massimo 20.000 caratteri (ora ne ha 60.000)."
# 100,000 distinct keywords that do not exist: "${k0} ${k1} …", about 790,000 characters.
DISTINCT_UNKNOWN = " ".join(f"${{k{i}}}" for i in range(100_000))
# A response that carries one error and no rendering stays well under this.
SMALL = 2_000


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(practitioner=practitioner, first_name="Anna", last_name="Russo")
    return InvoiceFactory(patient=patient, number="7/2026", issue_date=datetime.date(2026, 3, 9))


@pytest.fixture(autouse=True)
def _fresh_preview_limit(practitioner, other_practitioner):
    keys = [covermail_views._preview_rate_key(p.pk) for p in (practitioner, other_practitioner)]
    keys += [f"{key}:opened" for key in keys]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def preview(client: Client, invoice, *, subject: str = "Fattura", body: str = "Testo"):
    return client.post(
        PREVIEW_URL, {"invoice": invoice.pk, "subject_template": subject, "body_template": body}
    )


# --- the length comes first ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{" * 30_000, BODY_LIMIT_60K),
        (
            DISTINCT_UNKNOWN,
            "Il testo può avere al massimo 20.000 caratteri (ora ne ha "
            f"{len(DISTINCT_UNKNOWN):,}).".replace(",", "."),
        ),
    ],
    ids=["60k-of-open-braces", "100k-distinct-unknown-keywords"],
)
def test_an_oversized_body_gets_only_the_length_error_from_the_preview(
    logged_client, invoice, body, message
):
    response = preview(logged_client, invoice, body=body)
    assert response.status_code == 200
    assert len(response.content) < SMALL
    data = response.json()
    assert data["valid"] is False
    assert data["errors"] == {"body_template": [message]}
    # Not rendered: nothing of the draft comes back.
    assert (data["subject"], data["text"], data["html"], data["warnings"]) == ("", "", "", [])


def test_an_oversized_subject_gets_only_the_length_error_from_the_preview(logged_client, invoice):
    response = preview(logged_client, invoice, subject="{{" * 30_000)
    assert len(response.content) < SMALL
    assert response.json()["errors"] == {
        "subject_template": [
            "L'oggetto può avere al massimo 200 caratteri (ora ne ha 60.000).",
        ]
    }


@pytest.mark.parametrize("body", ["{{" * 30_000, DISTINCT_UNKNOWN], ids=["braces", "keywords"])
def test_an_oversized_body_is_refused_by_the_save_with_the_length_error_only(
    logged_client, practitioner, invoice, body
):
    response = logged_client.post(SAVE_URL, {"subject_template": "Fattura", "body_template": body})
    # The refusal itself is a redirect; the page it leads to lists one error, no keyword
    # problems, and renders no preview of the draft.
    assert response.status_code == 302
    assert len(response.content) < SMALL
    page = logged_client.get(SETTINGS_URL)
    form = page.context["covermail_form"]
    assert [str(error) for error in form.errors["body_template"]] == [
        validation.length_error(body.strip()).message  # type: ignore[union-attr]
    ]
    assert page.context["covermail_preview"] is None
    content = page.content.decode()
    assert "al massimo 20.000 caratteri" in content
    assert "non è una parola chiave valida" not in content
    # What was typed comes back to be shortened, and nothing is added per problem.
    assert len(content) < len(body) + 200_000
    assert not EmailSettings.objects.filter(practitioner=practitioner).exclude(body_template="")


def test_length_is_checked_before_the_patterns(monkeypatch):
    """Over the limit, no pattern runs at all."""

    class Exploding:
        def finditer(self, text):
            raise AssertionError("a pattern ran over an oversized text")

        search = finditer

    for name in (
        "PLACEHOLDER_PATTERN",
        "_FORMAT_FIELD",
        "CONTROL_CHARACTERS",
        "BODY_CONTROL_CHARACTERS",
    ):
        monkeypatch.setattr(validation, name, Exploding())
    monkeypatch.setattr(validation, "_foreign_syntax", Exploding().finditer)
    (body_error,) = validation.template_errors("$" * 20_001)
    (subject_error,) = validation.template_errors("\n" * 201, subject=True)
    assert (body_error.code, subject_error.code) == ("body_too_long", "subject_too_long")


# --- within the limit: linear patterns, a capped list ------------------------------------


def test_many_problems_within_the_limit_are_listed_up_to_the_cap():
    body = " ".join(f"${{k{i}}}" for i in range(2_000))
    assert len(body) <= validation.BODY_MAX_LENGTH
    errors = validation.template_errors(body)
    codes = [error.code for error in errors]
    assert codes.count("unknown_keyword") == validation.MAX_REPORTED_PROBLEMS
    assert codes[-2:] == ["more_problems", "valid_keywords"]
    assert str(errors[-2].message) == "… e altri 1.990 problemi con le parole chiave."


def test_the_preview_of_many_problems_within_the_limit_stays_small(logged_client, invoice):
    body = " ".join(f"${{k{i}}}" for i in range(2_000))
    response = preview(logged_client, invoice, body=body)
    data = response.json()
    assert len(data["errors"]["body_template"]) == validation.MAX_REPORTED_PROBLEMS + 2
    # The rendering is the text (twice, text and HTML) plus a bounded list of messages.
    assert len(response.content) < 3 * len(body) + 20_000
    assert data["warnings"] == []


def test_the_unknown_keywords_warning_names_a_few_and_counts_the_rest(invoice):
    body = " ".join(f"${{k{i}}}" for i in range(25))
    rendered = rendering.render_cover_mail(
        subject_template="Fattura", body_template=body, invoice=invoice
    )
    assert rendered.unknown_warning.count("${k") == validation.MAX_REPORTED_PROBLEMS
    assert "e altre 15 non esistono" in rendered.unknown_warning


@pytest.mark.parametrize(
    "text",
    [
        "{{ nome }} e {% if x %} poi {{ cognome }}",
        "{{ a {% b }} c %}",
        "{% a {{ b %} c }}",
        "{{{{ x }}}}",
        "{{ no close {% x %}",
        "{% no close {{ x }}",
        "{{}}{%%}",
        "a\n{{ b\n c }}\n",
        "{" * 50 + "}" * 3,
    ],
)
def test_the_foreign_syntax_scan_finds_what_the_old_pattern_found(text):
    old = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
    assert validation._foreign_syntax(text) == [m.span() for m in old.finditer(text)]


@pytest.mark.parametrize(
    "body",
    [
        "{{" * 10_000,
        "{%" * 10_000,
        "${" * 10_000,
        "$" * 20_000,
        "{" + " " * 19_998 + "x",
        "{nome" + "a" * 19_990,
        "{{ x }}" * 2_800,
    ],
)
def test_pathological_bodies_within_the_limit_give_a_bounded_list(body):
    errors = validation.template_errors(body)
    assert len(errors) <= validation.MAX_REPORTED_PROBLEMS + 2
    assert sum(len(str(error.message)) for error in errors) < 5_000


def test_a_long_unknown_keyword_gets_no_suggestion_search():
    assert validation.suggest_keyword("nome" + "x" * 500) is None


# --- the preview endpoint -------------------------------------------------------------------


def test_the_preview_is_rate_limited_per_practitioner(logged_client, invoice, other_practitioner):
    for _ in range(covermail_views.PREVIEW_RATE_LIMIT_COUNT):
        assert preview(logged_client, invoice).status_code == 200
    refused = preview(logged_client, invoice)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= covermail_views.PREVIEW_RATE_LIMIT_WINDOW
    assert "Troppe richieste di anteprima" in refused.json()["error"]
    assert len(refused.content) < SMALL
    # Another practitioner previews as usual.
    other = Client()
    other.force_login(other_practitioner)
    theirs = InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    assert preview(other, theirs).status_code == 200


@pytest.mark.parametrize("invoice_id", ["²", "١", "+1", " 1", "1_0", "0", "9" * 30])
def test_the_preview_parses_the_invoice_id_strictly(logged_client, invoice, invoice_id):
    response = logged_client.post(
        PREVIEW_URL, {"invoice": invoice_id, "subject_template": "x", "body_template": "y"}
    )
    assert response.status_code == 404
