"""Italian advice for classified SMTP failures (shared/reference/smtp-errors.md)."""

from __future__ import annotations

import pytest

from emailsettings.guidance import Advice, ErrorClass, advice


def whole(result: Advice) -> str:
    return " ".join((result.title, result.text, *result.steps))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            dict(
                error_class="app_password_required",
                preset_key="gmail",
                code=534,
                enhanced="5.7.9",
                reply="534-5.7.9 Application-specific password required.",
            ),
            ["Gmail", "password per le app", "myaccount.google.com/apppasswords"],
            id="gmail-534-5.7.9",
        ),
        pytest.param(
            dict(
                error_class="auth_failed",
                preset_key="gmail",
                code=535,
                enhanced="5.7.8",
                reply="535-5.7.8 Username and Password not accepted.",
            ),
            [
                "Gmail",
                "indirizzo Gmail completo",
                "verifica in due passaggi",
                "password per le app",
            ],
            id="gmail-535-5.7.8",
        ),
        pytest.param(
            dict(
                error_class="auth_failed",
                preset_key="custom",
                code=535,
                enhanced="5.7.8",
                reply=(
                    "535-5.7.8 Username and Password not accepted. "
                    "https://support.google.com/mail/?p=BadCredentials gsmtp"
                ),
            ),
            ["Gmail", "password per le app"],
            id="gmail-wording-on-a-custom-server",
        ),
        pytest.param(
            dict(
                error_class="suspicious_login",
                preset_key="gmail",
                code=534,
                enhanced="5.7.14",
                reply=(
                    "534-5.7.14 <https://accounts.google.com/signin/continue> "
                    "Please log in via your web browser"
                ),
            ),
            ["Gmail", "sospetto", "Germania", "Francoforte", "Sì, ero io"],
            id="gmail-534-5.7.14",
        ),
        pytest.param(
            dict(
                error_class="oauth_required",
                preset_key="outlook",
                code=535,
                enhanced="5.7.139",
                reply="535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            ),
            ["Microsoft", "password", "Smart Mail"],
            id="microsoft-5.7.139-basic-disabled",
        ),
        pytest.param(
            dict(
                error_class="oauth_required",
                preset_key="microsoft365",
                code=535,
                enhanced="5.7.139",
                reply=(
                    "535 5.7.139 Authentication unsuccessful, "
                    "SmtpClientAuthentication is disabled for the Tenant."
                ),
            ),
            ["reparto IT", "SMTP autenticato", "Smart Mail"],
            id="microsoft-5.7.139-tenant",
        ),
        pytest.param(
            dict(
                error_class="oauth_required",
                preset_key="microsoft365",
                code=535,
                enhanced="5.7.139",
                reply=(
                    "535 5.7.139 Authentication unsuccessful, user is locked by your "
                    "organization's security defaults policy."
                ),
            ),
            ["organizzazione", "reparto IT"],
            id="microsoft-5.7.139-security-defaults",
        ),
        pytest.param(
            dict(
                error_class="auth_failed",
                preset_key="libero",
                code=535,
                reply="535 authentication failed",
            ),
            ["Libero", "login.libero.it"],
            id="libero-expired-password",
        ),
        pytest.param(
            dict(error_class="app_password_required", preset_key="yahoo", code=535),
            ["Yahoo", "password per le app"],
            id="yahoo",
        ),
        pytest.param(
            dict(
                error_class="tls_failed",
                preset_key="libero",
                reply="[SSL: WRONG_VERSION_NUMBER] wrong version number",
            ),
            ["465", "SSL/TLS", "587", "STARTTLS"],
            id="tls-mismatch",
        ),
        pytest.param(
            dict(
                error_class="certificate_invalid",
                preset_key="aruba",
                reply=(
                    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                    "self-signed certificate"
                ),
            ),
            ["certificato", "smtps.aruba.it"],
            id="certificate",
        ),
        pytest.param(
            dict(
                error_class="starttls_missing",
                preset_key="custom",
                code=530,
                enhanced="5.7.0",
                reply="530 5.7.0 Must issue a STARTTLS command first",
            ),
            ["STARTTLS", "587", "465", "in chiaro"],
            id="starttls-missing",
        ),
        pytest.param(
            dict(
                error_class="connection_failed",
                preset_key="gmail",
                reply="[Errno 111] Connection refused",
                port=25,
            ),
            ["non raggiungibile", "smtp.gmail.com", "porta 25"],
            id="unreachable",
        ),
        pytest.param(
            dict(error_class="timeout", preset_key="custom", reply="timed out"),
            ["non risponde", "porta"],
            id="timeout",
        ),
        pytest.param(
            dict(
                error_class="recipient_refused",
                preset_key="gmail",
                code=550,
                enhanced="5.1.1",
                reply="550 5.1.1 The email account that you tried to reach does not exist.",
            ),
            ["non esiste", "5.1.1", "paziente"],
            id="recipient-550-5.1.1",
        ),
        pytest.param(
            dict(
                error_class="sender_refused",
                preset_key="aruba_pec",
                code=553,
                reply="553 5.7.1 Sender address rejected: not logged in",
            ),
            ["Mittente non consentito", "Aruba PEC", "alias"],
            id="sender-aruba",
        ),
        pytest.param(
            dict(
                error_class="sender_refused",
                preset_key="microsoft365",
                code=554,
                enhanced="5.2.252",
                reply="554 5.2.252 SendAsDenied",
            ),
            ["Invia come"],
            id="sender-microsoft-send-as",
        ),
        pytest.param(
            dict(
                error_class="rate_limited",
                preset_key="legalmail",
                code=450,
                reply="Class Of Service - Too much traffic from this sender",
            ),
            ["6 messaggi al minuto"],
            id="legalmail-rate",
        ),
        pytest.param(
            dict(
                error_class="rate_limited",
                preset_key="gmail",
                code=550,
                enhanced="5.4.5",
                reply="550 5.4.5 Daily user sending limit exceeded.",
            ),
            ["limite giornaliero", "domani", "Smart Mail"],
            id="gmail-daily-limit",
        ),
        pytest.param(
            dict(
                error_class="greylisted",
                preset_key="custom",
                code=451,
                enhanced="4.7.1",
                reply="451 4.7.1 Greylisted, try again later",
            ),
            ["greylisting", "riprova"],
            id="greylisting",
        ),
        pytest.param(
            dict(
                error_class="message_rejected",
                preset_key="custom",
                code=550,
                enhanced="5.7.26",
                reply="550 5.7.26 Unauthenticated email is not accepted due to DMARC policy",
            ),
            ["SPF", "DKIM", "DMARC", "Smart Mail"],
            id="dmarc",
        ),
        pytest.param(
            dict(error_class="destination_refused", preset_key="custom"),
            ["465, 587, 2525 o 25"],
            id="destination-refused",
        ),
        pytest.param(
            dict(error_class="mailbox_full", preset_key="custom", code=552, enhanced="5.2.2"),
            ["piena"],
            id="mailbox-full",
        ),
    ],
)
def test_advice_names_the_provider_and_says_what_to_do(kwargs, expected):
    text = whole(advice(**kwargs))
    for words in expected:
        assert words in text, f"{words!r} missing from: {text}"


@pytest.mark.parametrize("error_class", list(ErrorClass), ids=str)
def test_every_error_class_has_italian_advice(error_class):
    result = advice(error_class=error_class, preset_key="libero")
    assert result.title and result.text
    assert str(error_class.label)


def test_custom_provider_is_named_generically():
    assert "Il tuo provider" in whole(advice(error_class="temporary", preset_key="custom"))
    assert "Il tuo provider" in whole(advice(error_class="unknown", preset_key=None))


def test_the_port_25_advice_is_only_for_port_25():
    """Port 1 is not "often blocked like port 25": the advice names the usual ports."""
    wrong_port = whole(advice(error_class="connection_failed", preset_key="custom", port=1))
    assert "porta 25" not in wrong_port and "587" in wrong_port


@pytest.mark.parametrize(
    ("error_class", "words"),
    [
        ("bounced", ["Rimbalzata", "sospeso"]),
        ("complained", ["spam", "sospeso"]),
        ("soft_bounce", ["temporaneo", "non è stato sospeso"]),
        ("esp_rejected", ["servizio di invio"]),
        ("esp_failed", ["servizio di invio"]),
        ("temporary", ["servizio di invio", "riproverà"]),
    ],
)
def test_smart_mail_outcomes_have_their_own_sentence(error_class, words):
    """A Smart Mail bounce or complaint is never "your provider refused the operation"."""
    text = whole(advice(error_class=error_class, preset_key=None, channel="smart_mail"))
    assert "il tuo provider" not in text.lower()
    assert "risposta non riconosciuta" not in text
    for word in words:
        assert word in text
    assert text[0].isupper()


@pytest.mark.parametrize(
    ("error_class", "words"),
    [
        ("bounced", ["Rimbalzata", "non esiste", "sospeso"]),
        ("soft_bounce", ["temporaneo", "non è stato sospeso"]),
    ],
)
def test_a_bounce_read_from_the_own_mailbox_is_explained_too(error_class, words):
    """Seen in make run's tour: a personal-SMTP invoice bounced (a report read from the
    mailbox) showed "Invio non riuscito … risposta non riconosciuta"."""
    text = whole(advice(error_class=error_class, preset_key="local", channel="smtp"))
    assert "risposta non riconosciuta" not in text
    for word in words:
        assert word in text
