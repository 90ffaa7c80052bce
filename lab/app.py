"""The web app inside the control namespace: start it with gunicorn, and talk to it with curl.

Every HTTP request goes from inside the control namespace (curl run there), never from the
initial namespace. The admin token reaches curl through a 0600 header file, not the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_PORT = 8000
# Where `wsgi:app` is served from: $PRIVNET_LAB_APP_DIR (another checkout, a test's fake app) or this repository.
APP_DIR_VARIABLE = "PRIVNET_LAB_APP_DIR"

# Runs argv in the control namespace; same keywords as subprocess.run.
Runner = Callable[..., subprocess.CompletedProcess]


class ApiError(RuntimeError):
    """The app answered with an unexpected status (or not at all)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} → {status or 'no answer'}: {body.strip()[:500]}")
        self.status = status
        self.body = body


class ApiClient:
    """A JSON client for the admin API that sends each request with curl from the control namespace."""

    def __init__(self, run: Runner, base_url: str, auth_header_file: Path | None) -> None:
        self.run = run
        self.base_url = base_url.rstrip("/")
        self.auth_header_file = auth_header_file

    def request(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        """Send one request; (status, decoded JSON or text). Status 0 means no HTTP answer."""
        argv = ["curl", "-sS", "--max-time", "30", "-X", method, "-w", "\n%{http_code}"]
        if self.auth_header_file is not None:
            argv += ["-H", f"@{self.auth_header_file}"]
        if payload is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        argv.append(self.base_url + path)
        result = self.run(argv, input=None if payload is None else json.dumps(payload), check=False)
        body, _, status_text = result.stdout.rpartition("\n")
        status = int(status_text) if status_text.isdigit() else 0
        if status == 0:
            body = result.stderr
        try:
            decoded = json.loads(body) if body else None
        except json.JSONDecodeError:
            decoded = body
        return status, decoded

    def call(self, method: str, path: str, payload: Any = None, expect: tuple[int, ...] = (200, 201, 204)) -> Any:
        """Send one request and return its JSON; ApiError unless the status is one of `expect`."""
        status, decoded = self.request(method, path, payload)
        if status not in expect:
            raise ApiError(method, path, status, decoded if isinstance(decoded, str) else json.dumps(decoded))
        return decoded

    def wait_ready(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
        """Poll until the app answers HTTP at all; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status, _ = self.request("GET", "/login")
            if status:
                return
            if not alive():
                raise RuntimeError("the app stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app at {self.base_url} did not answer within {timeout:.0f} s")
            time.sleep(0.2)


def default_app_dir() -> Path:
    """The directory gunicorn and the flask CLI run in (it holds wsgi.py)."""
    return Path(os.environ.get(APP_DIR_VARIABLE) or REPO_ROOT).resolve()


def app_environment(base_env: dict[str, str], *, secret_key: str, database_url: str, app_url: str) -> dict[str, str]:
    """The environment the app (gunicorn and the flask CLI) runs with in the lab."""
    env = dict(base_env)
    env.update(
        PRIVNET_ENV="production",
        SECRET_KEY=secret_key,
        DATABASE_URL=database_url,
        PRIVNET_URL=app_url,
        PYTHONUNBUFFERED="1",
    )
    return env


def gunicorn_argv(bind_address: str) -> list[str]:
    """Command line of the app server (run in the app directory)."""
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{bind_address}:{APP_PORT}",
        "--worker-class", "gthread",
        "--workers", "2",
        # every agent holds a thread in its config long-poll: leave plenty for the API and reports
        "--threads", "32",
        "--access-logfile", "-",
        "--error-logfile", "-",
        "wsgi:app",
    ]  # fmt: skip


def flask_argv(*args: str) -> list[str]:
    """Command line of a `flask --app wsgi …` command (run in the app directory)."""
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]
