"""Long-polls behind gunicorn (2 gthread workers) on PostgreSQL: a change wakes waiters in every worker.

The app runs as in production (``wsgi:app``, the README's gunicorn options) on 127.0.0.1 against
the suite's PostgreSQL database. Twelve long-polls wait on the two ends of a link, two on a node
without links; the link's cost changes through the API; the twelve must be answered within a
second, the two must keep waiting. The access log names the worker (pid) of every answer, which
shows that waiters in the worker that did not make the change were woken too.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.factories import make_agents
from webapp.config import TestingConfig

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
POLLS_PER_END = 6
WAKE_SECONDS = 1.0
GUNICORN_OPTIONS = ("--worker-class", "gthread", "--workers", "2", "--threads", "32")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """gunicorn serving ``wsgi:app``; collects its access log lines (``pid method path status``)."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        env = os.environ | {
            "PRIVNET_ENV": "production",
            "SECRET_KEY": TestingConfig.SECRET_KEY,
            "DATABASE_URL": database_url,
            "PRIVNET_URL": f"http://127.0.0.1:{self.port}",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *GUNICORN_OPTIONS, "--bind", f"127.0.0.1:{self.port}",
             "--access-logfile", "-", "--access-logformat", "%(p)s %(m)s %(U)s %(s)s", "wsgi:app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.log: list[tuple[str, str, str, int]] = []
        threading.Thread(target=self._read_log, daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/login")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def _read_log(self) -> None:
        for line in self.process.stdout:
            pid, method, path, status = line.split()
            self.log.append((pid.strip("<>"), method, path, int(status)))

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 90):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def network(app, db, database_url, api_token):
    require(database_url.startswith("postgresql"), "needs PostgreSQL: run with TEST_DATABASE_URL (make test does)")
    secrets = make_agents(db, ("epsilon", "vorke", "bob"), links=(("epsilon", "vorke"),))
    db.session.remove()
    server = Server(database_url)
    try:
        yield server, secrets, api_token
    finally:
        server.stop()


class Poll(threading.Thread):
    def __init__(self, server: Server, token: str, version: str, wait: int) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.version, self.wait = server, token, version, wait
        self.status: int | None = None
        self.body = b""
        self.done_at = 0.0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "If-None-Match": f'"{self.version}"'}
        self.status, self.body, _ = self.server.request("GET", f"/api/v1/agent/config?wait={self.wait}", None, headers)
        self.done_at = time.monotonic()


def current_version(server: Server, token: str) -> str:
    status, _, headers = server.request("GET", "/api/v1/agent/config", None, {"Authorization": f"Bearer {token}"})
    assert status == 200
    return headers["ETag"].strip('"')


def test_a_change_in_one_worker_wakes_long_polls_in_all(network):
    server, secrets, admin_token = network
    crossed_workers = False
    for round_number in range(3):
        versions = {name: current_version(server, secrets[name]) for name in secrets}
        time.sleep(0.2)  # the access log of those requests
        logged = len(server.log)
        waiters = [Poll(server, secrets[name], versions[name], 30) for name in ("epsilon", "vorke")
                   for _ in range(POLLS_PER_END)]  # fmt: skip
        bystanders = [Poll(server, secrets["bob"], versions["bob"], 3) for _ in range(2)]
        for poll in waiters + bystanders:
            poll.start()
        time.sleep(1.0)  # every poll reaches its wait, spread over both workers
        assert not any(poll.status for poll in waiters + bystanders), "a poll was answered before the change"
        changed_at = time.monotonic()
        status, body, _ = server.request(
            "PATCH", "/api/v1/links/epsilon/vorke", {"cost": 200 + round_number},
            {"Authorization": f"Bearer {admin_token}"},
        )  # fmt: skip
        assert status == 200, body
        for poll in waiters + bystanders:
            poll.join(timeout=40)
        delays = sorted(poll.done_at - changed_at for poll in waiters)
        assert all(poll.status == 200 for poll in waiters), [poll.status for poll in waiters]
        assert delays[-1] < WAKE_SECONDS, f"slowest waiter answered {delays[-1]:.2f} s after the change"
        for poll in waiters:
            config = json.loads(poll.body)["config"]
            assert config["links"][0]["cost"] == 200 + round_number
        assert all(poll.status == 304 and poll.done_at - changed_at > 1.5 for poll in bystanders)

        time.sleep(0.2)  # the access log of the last answers
        entries = server.log[logged:]
        patch_pids = {pid for pid, method, _, _ in entries if method == "PATCH"}
        answer_pids = {pid for pid, method, path, status in entries if path == "/api/v1/agent/config" and status == 200}
        if answer_pids - patch_pids:
            crossed_workers = True
            break
    assert crossed_workers, "every waiter landed in the worker that made the change, three times"


def test_a_graceful_stop_answers_waiting_long_polls_at_once(network):
    """SIGTERM (restart, deploy): waiting long-polls get 304 now, not after their wait (gunicorn.conf.py)."""
    server, secrets, _ = network
    versions = {name: current_version(server, secrets[name]) for name in secrets}
    polls = [Poll(server, secrets[name], versions[name], 50) for name in secrets for _ in (0, 1)]
    for poll in polls:
        poll.start()
    time.sleep(1.0)
    assert not any(poll.status for poll in polls)
    stopped_at = time.monotonic()
    server.process.terminate()
    server.process.wait(timeout=20)
    for poll in polls:
        poll.join(timeout=20)
    assert [poll.status for poll in polls] == [304] * len(polls)
    assert max(poll.done_at for poll in polls) - stopped_at < 2
    assert time.monotonic() - stopped_at < 5  # and the workers did not wait out graceful_timeout (30 s)
