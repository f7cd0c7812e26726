"""``make run`` stops cleanly: Ctrl-C, a SIGINT sent to make alone (as some supervisors do),
and a service that dies by itself; logs are kept across starts. Real processes, each run in a
temporary var/ directory (SQLite, embedded broker, free ports)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MakeRun:
    def __init__(self, var: Path) -> None:
        self.var = var
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
        }
        env.update(
            PSICOGEST_VAR_DIR=str(var),
            PORT=str(free_port()),
            LOCAL_SMTP_PORT=str(free_port()),
            LOCAL_IMAP_PORT=str(free_port()),
            LOCAL_OAUTH_PORT=str(free_port()),
            DJANGO_ENV="development",
        )
        self.proc = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 240
        for line in self.proc.stdout:
            self.output += line
            if "Ctrl-C per fermare tutto." in line:
                return
            if time.monotonic() > deadline:
                break
        self.kill()
        raise AssertionError("make run did not start:\n" + self.output)

    def processes(self) -> list[int]:
        """Every process started for this run (they carry its PSICOGEST_VAR_DIR)."""
        found = []
        marker = f"PSICOGEST_VAR_DIR={self.var}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                found.append(int(entry.name))
        return found

    def pid_of(self, needle: str) -> int:
        for pid in self.processes():
            try:
                if needle in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return pid
            except OSError:
                continue
        raise AssertionError(f"no process running {needle}")

    def finish(self, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        self.output += self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        return self.output

    def kill(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def make_run(tmp_path):
    runs: list[MakeRun] = []

    def start() -> MakeRun:
        run = MakeRun(tmp_path / "var")
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def wait_gone(run: MakeRun, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while run.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    return run.processes()


def test_stopping_make_run(make_run, tmp_path):
    # 1. A supervisor sends SIGINT to make only: everything stops, calmly, in Italian.
    run = make_run()
    assert len(run.processes()) >= 4  # make, the script, web, worker (+ pool), SMTP server
    os.kill(run.proc.pid, signal.SIGINT)
    output = run.finish()
    assert wait_gone(run) == []
    assert "PsicoGest fermato." in output
    assert "si è fermato da solo" not in output
    assert "a process stopped" not in output

    # 2. Ctrl-C in a terminal (SIGINT to the whole process group): the same, and the logs of
    # the first run are still there.
    run = make_run()
    os.killpg(run.proc.pid, signal.SIGINT)
    output = run.finish()
    assert wait_gone(run) == []
    assert "PsicoGest fermato." in output and "si è fermato da solo" not in output
    for name in ("web", "worker", "smtp", "oauth"):
        log = (tmp_path / "var" / "logs" / f"{name}.log").read_text()
        assert log.count(": avvio (make run) =====") == 2, name

    # 3. A service dies by itself: the others are stopped and the message says which one and
    # where its log is.
    run = make_run()
    os.kill(run.pid_of("run_smtp_test_server"), signal.SIGKILL)
    output = run.finish()
    assert wait_gone(run) == []
    assert run.proc.returncode != 0
    assert "Il processo «smtp» si è fermato da solo" in output
    assert str(tmp_path / "var" / "logs" / "smtp.log") in output
