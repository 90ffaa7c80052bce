"""pytest side of the lab: a context manager that always tears down, fixtures, and skip rules.

    from lab.testing import lab_fixture, require_lab

    pytestmark = [pytest.mark.lab, require_lab()]
    triangle = lab_fixture("triangle")            # module-scoped, app and enrolled hosts

    def test_ping(triangle):                      # triangle is a lab.core.Lab
        triangle.wait_for_overlay()

Outside CI (`CI` not "true") lab tests are skipped, with the reason, when the machine cannot run
them (not root, no `wireguard-go`, no `ip netns`); under `CI=true` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .core import Lab
from .topology import Topology

# When set, a lab whose block fails leaves its logs (app, setup scripts) in $PRIVNET_LAB_ARTEFACTS/<prefix>/.
ARTEFACTS_VARIABLE = "PRIVNET_LAB_ARTEFACTS"
LAB_TOOLS = ("ip", "wireguard-go", "wg", "nft", "curl", "unshare", "mount")


def unique_prefix(base: str = "pt") -> str:
    """A lab prefix no other run uses: `base` + 6 random hex digits (e.g. pt3fa91c)."""
    return f"{base}{secrets.token_hex(3)}"


def lab_unavailable_reason() -> str | None:
    """Why lab tests cannot run on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, mounts)"
    missing = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"lab tests need {', '.join(missing)} on PATH"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"lab tests need `ip netns`: {probe.stderr.strip()}"
    return None


def in_ci() -> bool:
    """Whether we run under CI (`CI=true`), where lab tests must never be skipped."""
    return os.environ.get("CI", "").lower() == "true"


def require_lab() -> pytest.MarkDecorator:
    """A mark for lab tests: skip with the reason when the lab cannot run (but not under CI=true)."""
    reason = lab_unavailable_reason()
    return pytest.mark.skipif(reason is not None and not in_ci(), reason=reason or "")


def check_lab_available() -> None:
    """Inside a test or fixture: skip (outside CI) or fail (under CI=true) when the lab cannot run."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true, but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the lab is up, so a killed run still tears down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # someone else handles SIGTERM already
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _teardown(lab: Lab) -> None:
    """`lab.down()`, finished even if an interrupt arrives meanwhile (then re-raised)."""
    interrupted: BaseException | None = None
    for _ in range(3):
        try:
            lab.down()
            break
        except KeyboardInterrupt as error:
            interrupted = error
    if interrupted is not None:
        raise interrupted


@contextlib.contextmanager
def running_lab(
    topology: Topology | str | Path,
    prefix: str | None = None,
    *,
    app: bool = True,
    enroll: bool = True,
    app_dir: Path | None = None,
    wan: bool | None = None,
) -> Iterator[Lab]:
    """A lab that is up inside the block and always down after it (failure, Ctrl-C, SIGTERM).

    With $PRIVNET_LAB_ARTEFACTS set, a failing block first copies the lab's logs there.
    `prefix` defaults to a unique one; `app=False` builds the underlay only; `enroll=False`
    creates nodes and links in the app but runs no setup script; `app_dir` holds the wsgi.py
    to serve (default: this repository); `wan` forces the WAN emulator on or off (default: on if
    the topology has RTTs, see lab.wan).
    """
    lab = Lab(prefix or unique_prefix())
    with _sigterm_as_interrupt():
        try:
            lab.up(topology, app=app, enroll=enroll, app_dir=app_dir, wan=wan)
            yield lab
        except BaseException:
            artefacts = os.environ.get(ARTEFACTS_VARIABLE)
            if artefacts:
                with contextlib.suppress(OSError):
                    lab.save_logs(Path(artefacts))
            raise
        finally:
            _teardown(lab)


def lab_fixture(
    topology: Topology | str | Path,
    *,
    scope: str = "module",
    app: bool = True,
    enroll: bool = True,
    app_dir: Path | None = None,
    name: str | None = None,
    wan: bool | None = None,
) -> Callable[..., Any]:
    """A pytest fixture yielding a running Lab for `topology` (unique prefix; skip rules applied).

    Assign it at module level: `triangle = lab_fixture("triangle")`.
    """

    @pytest.fixture(scope=scope, name=name)
    def fixture() -> Iterator[Lab]:
        check_lab_available()
        with running_lab(topology, app=app, enroll=enroll, app_dir=app_dir, wan=wan) as lab:
            yield lab

    return fixture
