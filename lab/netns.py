"""Network namespaces for lab hosts, each with private mounts.

A lab host is a network namespace plus a per-host state directory. Every command run in a host
(`host_command`) gets its own mount namespace (from `ip netns exec`) in which directories under
the host's state directory are bind-mounted over the paths a setup script and wireguard-go use:

    <state_dir>/etc/privnet         -> /etc/privnet
    <state_dir>/etc/wireguard       -> /etc/wireguard
    <state_dir>/etc/systemd/system  -> /etc/systemd/system
    <state_dir>/run/wireguard       -> /run/wireguard   (wireguard-go's control sockets)
    <state_dir>/run/privnet         -> /run/privnet
    <state_dir>/run/systemd         -> /run/systemd     (kept empty: "no systemd here")

Every call re-creates the same binds, so all commands of one host see the same files, and a
daemon (wireguard-go, an agent) started by one call keeps its mount namespace for its lifetime.
Nothing is mounted in the initial mount namespace. The bind targets must exist as directories on
the real filesystem: missing ones are created empty and recorded, and
`remove_created_mount_targets()` removes them again once nothing is mounted on them anywhere
(`lab down` calls it when the last lab is gone).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")

# Paths inside a host that are backed by <state_dir>/<path without leading slash>.
PRIVATE_DIRS: tuple[str, ...] = (
    "/etc/privnet",
    "/etc/wireguard",
    "/etc/systemd/system",
    "/run/wireguard",
    "/run/privnet",
)
# Paths hidden behind an empty directory, so a script inside sees no systemd.
EMPTY_DIRS: tuple[str, ...] = ("/run/systemd",)
MOUNT_TARGETS: tuple[str, ...] = PRIVATE_DIRS + EMPTY_DIRS
# Directories ensure_mount_targets() created on the real filesystem, one per line.
MOUNT_TARGET_RECORD = Path("/run/privnet-lab/created-mount-targets")


def namespace_exists(netns: str) -> bool:
    """Whether the named network namespace exists (`ip netns list` would show it)."""
    return (NETNS_DIR / netns).exists()


def add_namespace(netns: str) -> None:
    """Create network namespace `netns` with its loopback up; FileExistsError if it exists."""
    if namespace_exists(netns):
        raise FileExistsError(f"network namespace {netns} already exists")
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True, text=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "dev", "lo", "up"], check=True, capture_output=True, text=True)


def namespace_pids(netns: str) -> list[int]:
    """PIDs of the processes whose network namespace is `netns` (empty if it does not exist)."""
    if not namespace_exists(netns):
        return []
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def kill_namespace_processes(netns: str, grace_seconds: float = 2.0) -> None:
    """SIGTERM every process inside `netns`, then SIGKILL those still there after the grace time."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        pids = namespace_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while namespace_pids(netns) and time.monotonic() < deadline:
            time.sleep(0.05)
    left = namespace_pids(netns)
    if left:
        raise RuntimeError(f"processes {left} survive SIGKILL in network namespace {netns}")


def delete_namespace(netns: str) -> None:
    """Kill every process inside `netns`, then delete it; does nothing if it is already gone."""
    if not namespace_exists(netns):
        return
    kill_namespace_processes(netns)
    result = subprocess.run(["ip", "netns", "delete", netns], capture_output=True, text=True, check=False)
    if result.returncode != 0 and namespace_exists(netns):
        raise RuntimeError(f"ip netns delete {netns}: {result.stderr.strip()}")


def host_dirs(state_dir: Path) -> dict[str, Path]:
    """Map each private path inside a host to its backing directory under `state_dir`."""
    return {target: Path(state_dir) / target.lstrip("/") for target in MOUNT_TARGETS}


def ensure_mount_targets() -> None:
    """Create the bind targets missing on the real filesystem (empty), recording each one created."""
    created: list[Path] = []
    for target in MOUNT_TARGETS:
        missing: list[Path] = []
        path = Path(target)
        while not path.exists():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            directory.mkdir(mode=0o755, exist_ok=True)
            created.append(directory)
    if created:
        MOUNT_TARGET_RECORD.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with MOUNT_TARGET_RECORD.open("a") as record:
            record.writelines(f"{directory}\n" for directory in created)


def mount_points_in_use() -> set[str]:
    """Every mount point of every process's mount namespace (from /proc/*/mountinfo)."""
    points: set[str] = set()
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            text = mountinfo.read_text()
        except OSError:  # gone meanwhile, or a zombie
            continue
        points.update(line.split()[4] for line in text.splitlines() if len(line.split()) > 4)
    return points


def remove_created_mount_targets() -> list[str]:
    """Remove the bind targets ensure_mount_targets() created, if empty and mounted nowhere; those kept.

    A command starting meanwhile re-creates its targets itself (`mkdir -p`), so this is race-safe.
    """
    if not MOUNT_TARGET_RECORD.exists():
        return []
    recorded = list(dict.fromkeys(MOUNT_TARGET_RECORD.read_text().split()))
    in_use = mount_points_in_use()
    kept = []
    for directory in sorted(recorded, key=lambda path: path.count("/"), reverse=True):
        if directory in in_use:
            kept.append(directory)
            continue
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:  # not empty: someone put something there
            kept.append(directory)
    if kept:
        MOUNT_TARGET_RECORD.write_text("".join(f"{directory}\n" for directory in kept))
    else:
        MOUNT_TARGET_RECORD.unlink(missing_ok=True)
    return kept


def host_command(netns: str, state_dir: Path, argv: list[str]) -> list[str]:
    """The argv that runs `argv` inside `netns` with the host's private mounts from `state_dir`.

    `state_dir` is this host's own directory (e.g. /run/privnet-lab/<prefix>/hosts/<name>); its
    subdirectories are created on first use. Run the result as root. A command that leaves a
    daemon holding its stdout blocks a captured run until the daemon exits: give it a file.
    """
    ensure_mount_targets()
    lines = ["set -e"]
    for target, source in host_dirs(Path(state_dir).resolve()).items():
        source_q, target_q = shlex.quote(str(source)), shlex.quote(target)
        lines.append(f"mkdir -p {source_q} {target_q}")
        lines.append(f"mount --bind {source_q} {target_q}")
    lines.append('exec "$@"')
    return ["ip", "netns", "exec", netns, "sh", "-c", "\n".join(lines), "sh", *argv]


def run_in_host(netns: str, state_dir: Path, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `argv` in a host (see `host_command`); check=True and captured text output by default."""
    kwargs.setdefault("check", True)
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(host_command(netns, state_dir, argv), **kwargs)
