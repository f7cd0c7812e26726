"""``make run`` stops cleanly: Ctrl-C, a SIGINT sent to make alone (as some supervisors do),
SIGTERM to its process group (once, or repeated a second later as supervisors do), SIGINT to
``make run &`` started from a non-interactive shell (which starts it with SIGINT ignored),
and a service that dies by itself; nothing is left running and no port stays open, within a
few seconds when idle; logs are kept across starts. Real processes, each run in its own
session and a temporary var/ directory (SQLite, embedded broker, free ports)."""

from __future__ import annotations

import os
import re
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
    def __init__(self, var: Path, *, command: tuple[str, ...] = ("make", "run")) -> None:
        self.var = var
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
        }
        self.ports = {
            "PORT": free_port(),
            "LOCAL_SMTP_PORT": free_port(),
            "LOCAL_IMAP_PORT": free_port(),
            "LOCAL_OAUTH_PORT": free_port(),
        }
        env.update({name: str(port) for name, port in self.ports.items()})
        env.update(PSICOGEST_VAR_DIR=str(var), DJANGO_ENV="development")
        self.proc = subprocess.Popen(
            list(command),
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

    def listening(self) -> list[int]:
        """The run's ports something still answers on."""
        open_ports = []
        for port in self.ports.values():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                continue
            open_ports.append(port)
        return open_ports

    def kill(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def make_run(tmp_path):
    runs: list[MakeRun] = []

    def start(command: tuple[str, ...] = ("make", "run")) -> MakeRun:
        run = MakeRun(tmp_path / "var", command=command)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def wait_gone(run: MakeRun, timeout: float = 10) -> list[int]:
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


# An idle PsicoGest stops within this many seconds of the signal (the worker's warm shutdown
# is bounded; a message in hand would get longer).
IDLE_STOP_SECONDS = 10


@pytest.mark.parametrize(
    ("command", "signals"),
    [
        pytest.param(("make", "run"), (signal.SIGTERM,), id="sigterm-once"),
        pytest.param(("make", "run"), (signal.SIGTERM, signal.SIGTERM), id="sigterm-repeated"),
        # A non-interactive shell starts a background job with SIGINT ignored.
        pytest.param(
            ("bash", "-c", "make run & wait $!"), (signal.SIGINT,), id="sigint-background"
        ),
    ],
)
def test_signalling_the_group_stops_everything_and_frees_the_ports(make_run, command, signals):
    run = make_run(command)
    assert len(run.processes()) >= 4
    deadline = time.monotonic() + 20
    while len(run.listening()) < len(run.ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(run.listening()) == sorted(run.ports.values())
    started = time.monotonic()
    os.killpg(run.proc.pid, signals[0])
    for again in signals[1:]:
        # A supervisor repeating the signal while the services are being stopped.
        time.sleep(1)
        os.killpg(run.proc.pid, again)
    left = wait_gone(run, timeout=IDLE_STOP_SECONDS)
    elapsed = time.monotonic() - started
    assert left == [], f"still running after {elapsed:.1f} s: {left}"
    assert run.listening() == []
    output = run.finish(timeout=5)
    assert "Arresto di PsicoGest" in output and "PsicoGest fermato." in output
    assert "si è fermato da solo" not in output


@pytest.fixture
def small_var(tmp_path):
    """``var/`` on a 64 MiB tmpfs that the test can fill."""
    var = tmp_path / "var"
    var.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(var)], check=True)
    yield var
    subprocess.run(["umount", "--lazy", str(var)], check=True)


def test_a_service_stopped_by_a_full_disk_is_said_on_the_terminal(make_run, small_var):
    run = make_run()
    # The disk fills up; then the worker dies (its error cannot even reach its own log).
    with (small_var / "riempitivo").open("wb") as filler:
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * (1 << 20))
                filler.flush()
    for pid in run.processes():
        try:
            if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
    output = run.finish()
    assert wait_gone(run) == []
    # The worker, or another service the full disk stopped first: whichever it is is named.
    assert re.search(r"Il processo «(worker|web|smtp|oauth)» si è fermato da solo", output)
    assert f"Il disco di {small_var} è pieno" in output
    assert "Libera spazio e riavvia con make run." in output
