"""`python -m lab up TOPOLOGY | down | exec HOST -- CMD | status | cut A [B] | restore A [B] | delay A B MS | wan`.

Run as root. cut/restore/delay/wan talk to the lab's WAN emulator (lab.wan) when it runs; without
it `cut A B` makes the wan bridge drop the pair's packets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from .app import ApiError
from .core import Lab, LabError, all_lab_prefixes, default_prefix
from .topology import TopologyError
from .wan import WanError


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m lab", description="A privnet network in namespaces.")
    prefix_help = "namespace prefix ($PRIVNET_LAB_PREFIX, default privnet); a-z, 0-9"
    parser.add_argument("--prefix", default=None, help=prefix_help)
    # --prefix also after the command; SUPPRESS keeps a value given before it.
    with_prefix = argparse.ArgumentParser(add_help=False)
    with_prefix.add_argument("--prefix", default=argparse.SUPPRESS, help=prefix_help)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", parents=[with_prefix], help="build the lab from a topology (name in lab/topologies or a path)"
    )
    up.add_argument("topology")
    up.add_argument("--no-app", action="store_true", help="underlay only: no app, no nodes, no enrollment")
    up.add_argument("--no-enroll", action="store_true", help="create nodes and links but run no setup script")
    up.add_argument("--keep-on-failure", action="store_true", help="leave a failed lab for inspection")
    wan = up.add_mutually_exclusive_group()
    wan.add_argument(
        "--wan", action="store_true", default=None, help="underlay through the WAN emulator (default: if RTTs given)"
    )
    wan.add_argument("--no-wan", dest="wan", action="store_false", help="underlay as a plain bridge, no delay")
    down = commands.add_parser(
        "down", parents=[with_prefix], help="remove the lab: processes, namespaces, mounts, state"
    )
    down.add_argument("--all", action="store_true", help="every lab with state in /run/privnet-lab")
    run = commands.add_parser(
        "exec", parents=[with_prefix], help="run a command in a host (control: the app's namespace)"
    )
    run.add_argument("host")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")
    commands.add_parser("status", parents=[with_prefix], help="print the lab as JSON")
    for name, what in (("cut", "drop every packet between"), ("restore", "undo the cut between")):
        pair = commands.add_parser(
            name, parents=[with_prefix], help=f"{what} hosts A and B (no B: A and every other host)"
        )
        pair.add_argument("a", metavar="A")
        pair.add_argument("b", metavar="B", nargs="?", help="a host or control")
    delay = commands.add_parser("delay", parents=[with_prefix], help="set the underlay RTT between A and B (WAN)")
    delay.add_argument("a", metavar="A")
    delay.add_argument("b", metavar="B")
    delay.add_argument("ms", metavar="MS", type=float, help="round-trip time in milliseconds")
    commands.add_parser("wan", parents=[with_prefix], help="print the WAN emulator's pairs and counters as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        lab = Lab(args.prefix or default_prefix())
        if args.command == "up":
            try:
                lab.up(args.topology, app=not args.no_app, enroll=not args.no_enroll, wan=args.wan)
            except BaseException:
                if args.keep_on_failure:
                    print(f"lab: up failed; left as it is, remove with: python -m lab --prefix {lab.prefix} down")
                else:
                    lab.down()
                raise
            print(json.dumps(lab.status(), indent=2))
        elif args.command == "down":
            for prefix in all_lab_prefixes() if args.all else [lab.prefix]:
                Lab(prefix).down()
        elif args.command == "status":
            print(json.dumps(lab.status(), indent=2))
        elif args.command in ("cut", "restore"):
            lab.status()  # LabError if the lab is not up
            getattr(lab, args.command)(args.a, args.b)
        elif args.command == "delay":
            lab.set_rtt(args.a, args.b, args.ms)
        elif args.command == "wan":
            print(json.dumps(lab.wan().status(), indent=2))
        elif args.command == "exec":
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not command:
                raise LabError("exec needs a command: python -m lab exec HOST -- CMD …")
            argv = lab.command(args.host, command)
            os.execvp(argv[0], argv)  # noqa: S606 -- exec hands the terminal to the host command on purpose
    except (LabError, TopologyError, ApiError, WanError) as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(
            f"lab: {' '.join(map(str, error.cmd))} failed ({error.returncode}): {error.stderr or ''}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
