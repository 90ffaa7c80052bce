"""The app under benchmark: gunicorn on 127.0.0.1 against a given database (shared by bench/*.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(database_url: str, secret_key: str, port: int, options: Sequence[str]) -> subprocess.Popen:
    """gunicorn serving ``wsgi:app`` on 127.0.0.1:``port``; returns once it accepts connections."""
    env = os.environ | {
        "PRIVNET_ENV": "production",
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "PRIVNET_URL": f"http://127.0.0.1:{port}",
    }
    argv = [str(ROOT / ".venv/bin/gunicorn"), *options, "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"]
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("gunicorn did not start within 30 s")
