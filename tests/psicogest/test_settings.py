"""Production settings: refuse to start without secrets; `check --deploy` is clean."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": "x" * 60 + "-a-long-random-production-secret-key",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "EMAILSETTINGS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DJANGO_ALLOWED_HOSTS": "psicogest.example.test",
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "POSTMARK_SERVER_TOKEN": "server-token",
        "ANYMAIL_WEBHOOK_SECRET": "esp:webhook-secret",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_encryption_keys_fails_with_a_clear_message():
    result = manage("check", env=production_env(EMAILSETTINGS_ENCRYPTION_KEYS=None))
    assert result.returncode != 0
    assert "EMAILSETTINGS_ENCRYPTION_KEYS" in result.stderr


def test_production_with_a_malformed_encryption_key_fails():
    result = manage("check", env=production_env(EMAILSETTINGS_ENCRYPTION_KEYS="not-a-key"))
    assert result.returncode != 0
    assert "emailsettings.E002" in result.stderr


def test_production_without_secret_key_fails():
    result = manage("check", env=production_env(DJANGO_SECRET_KEY=None))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_check_deploy_warns_when_smart_mail_has_no_esp_or_no_webhook_secret():
    no_esp = manage("check", "--deploy", env=production_env(EMAIL_BACKEND=None))
    assert "emailsettings.W001" in no_esp.stderr + no_esp.stdout


def test_production_refuses_to_start_without_the_webhook_secret():
    """Unauthenticated tracking webhooks would let anyone suppress every tenant's addresses."""
    no_secret = manage("check", env=production_env(ANYMAIL_WEBHOOK_SECRET=None))
    assert no_secret.returncode != 0
    assert "ANYMAIL_WEBHOOK_SECRET" in no_secret.stderr
