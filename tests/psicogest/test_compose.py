"""The production compose file: web, worker, beat, db and redis; one image for the app."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_defines_the_services_sharing_one_image():
    services = load_compose()["services"]
    assert {"web", "worker", "beat", "db", "redis"} <= set(services)
    images = {services[name]["image"] for name in ("web", "worker", "beat")}
    assert len(images) == 1
    assert all(services[name].get("build") == "." for name in ("web", "worker", "beat"))
    assert (ROOT / "Dockerfile").exists()
    for name in ("web", "worker", "beat", "db", "redis"):
        assert "healthcheck" in services[name], name


def test_compose_redis_never_drops_tasks():
    command = load_compose()["services"]["redis"]["command"]
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_compose_configuration_comes_from_the_environment():
    web_env = load_compose()["services"]["web"]["environment"]
    assert web_env["DJANGO_ENV"] == "production"
    for name in ("DJANGO_SECRET_KEY", "EMAILSETTINGS_ENCRYPTION_KEYS", "DJANGO_ALLOWED_HOSTS"):
        assert web_env[name].startswith("${"), name
    assert web_env["REDIS_URL"] == "redis://redis:6379/0"


def test_compose_file_is_valid_for_docker_compose_when_available(tmp_path):
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        # No compose client here: the structural checks above stand in for it.
        compose = load_compose()
        assert compose["services"]["worker"]["command"].startswith("celery -A psicogest worker")
        return
    env = {
        "DJANGO_SECRET_KEY": "k",
        "DJANGO_ALLOWED_HOSTS": "h",
        "POSTGRES_PASSWORD": "p",
        "EMAILSETTINGS_ENCRYPTION_KEYS": "e",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_access_log_never_holds_an_oauth_code(tmp_path):
    """gunicorn as the image runs it (its settings from gunicorn.conf.py): an OAuth callback's
    query string, and the Referer that would repeat it, stay out of the access log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "access.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            str(log),
            "psicogest.wsgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_ENV": "development"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/accesso/?code=SEGRETO-OAUTH&state=STATO"
        request = urllib.request.Request(
            url, headers={"Referer": f"http://127.0.0.1:{port}/cb?code=SEGRETO-REFERER"}
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        while time.monotonic() < deadline and "/accesso/" not in log.read_text():
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert '"GET /accesso/ HTTP/1.1" 200' in text
    assert "SEGRETO" not in text and "STATO" not in text
