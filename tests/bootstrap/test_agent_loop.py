"""The agent's loop against a tiny HTTP server on 127.0.0.1: backoff while the app is down,
recovery, survival of HTTP and JSON errors, a clean stop on SIGTERM, and no token in its log.

The agent runs as a subprocess in the test's own namespace with ``--no-apply`` (report only: it
must never change this machine's network); it only reads (netlink, `wg show`) and only sends to
127.0.0.1. Its config loop is tested in ``test_agent_apply.py``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from webapp.reports import parse_report

AGENT = Path(__file__).resolve().parents[2] / "bootstrap" / "agent.py"
TOKEN = "agent-secret-" + "s3cr3t" * 6
NODE = "epsilon"


class RecordingServer(ThreadingHTTPServer):
    """Records every request; answers from ``script`` (status, body) in turn, then 200 ``{}``."""

    def __init__(self, port: int, script: list[tuple[int, bytes]]) -> None:
        self.requests: list[dict] = []
        self.script = list(script)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, answer = self.server.script.pop(0) if self.server.script else (200, b"{}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def agent_files(tmp_path: Path) -> tuple[Path, Path, int]:
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "node": NODE,
                "app_url": f"http://127.0.0.1:{port}",
                "bridge_name": "agtestbr0",  # no such bridge: the report says so
                "report_interval": 1,
                "version": "0123456789abcdef",
            }
        )
    )
    token = tmp_path / "agent.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return config, token, port


@pytest.fixture
def running_agent(agent_files: tuple[Path, Path, int], tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    config, token, _port = agent_files
    log = tmp_path / "agent.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(AGENT), "--config", str(config), "--token", str(token), "--max-backoff", "2",
             "--wireguard-socket-dir", str(tmp_path / "no-wireguard"), "--no-apply"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def wait_until(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_agent_backs_off_recovers_and_stops_cleanly(running_agent, agent_files) -> None:
    process, log = running_agent
    _config, _token, port = agent_files

    # The app is down: failures are logged one line each, with growing, capped, jittered delays.
    wait_until(lambda: log.read_text().count("report failed") >= 4, "four failed attempts")
    assert process.poll() is None
    retries = [
        (int(n), float(delay))
        for n, delay in re.findall(r"report failed \(.*?\); retry (\d+) in ([\d.]+) s", log.read_text())
    ]
    assert [n for n, _ in retries[:4]] == [1, 2, 3, 4]
    assert 0.5 <= retries[0][1] <= 1.0 and all(1.0 <= delay <= 2.0 for _, delay in retries[1:4])
    assert "cannot reach the app" in log.read_text()

    # The app comes up but first refuses, then answers garbage, then accepts.
    script = [(401, b'{"error": "agent token revoked", "field": "token"}'), (500, b"<html>oops</html>"),
              (200, b"not json")]  # fmt: skip
    server = RecordingServer(port, script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(server.requests) >= 5, "five reports to arrive")
        wait_until(lambda: "reporting again after" in log.read_text(), "the recovery line")
        assert process.poll() is None
    finally:
        server.shutdown()
        server.server_close()

    text = log.read_text()
    assert "app answered HTTP 401: agent token revoked" in text
    assert "app answered HTTP 500" in text
    assert "app answered with invalid JSON" in text
    for request in server.requests:
        assert request["path"] == "/api/v1/agent/report"
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert request["headers"]["Content-Type"] == "application/json"
        report = parse_report(json.loads(request["body"]), node_name=NODE)
        assert report.bridge is None and report.config_version == "0123456789abcdef"

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    text = log.read_text()
    assert "agent stopped" in text
    assert TOKEN not in text and "s3cr3t" not in text
    assert "Traceback" not in text
    assert all(
        re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ privnet-agent [A-Z]+ ", line) for line in text.splitlines()
    )


def test_agent_survives_a_missing_config_until_it_appears(agent_files, tmp_path: Path) -> None:
    config, token, _port = agent_files
    missing = tmp_path / "later.json"
    log = tmp_path / "agent.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(AGENT), "--config", str(missing), "--token", str(token), "--max-backoff", "1",
             "--no-apply"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "FileNotFoundError" in log.read_text(), "the missing config to be logged")
        assert process.poll() is None
        missing.write_text(config.read_text())
        wait_until(lambda: "cannot reach the app" in log.read_text(), "the agent to use the new config")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert TOKEN not in log.read_text()
