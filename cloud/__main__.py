"""``python -m cloud up [--hosts N] | status | down | tempest [args]``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloud", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring the cloud up (idempotent)")
    p_up.add_argument("--hosts", type=int, default=2, help="compute hosts (default 2)")
    sub.add_parser("status", help="every service and its state")
    sub.add_parser("down", help="stop everything and remove all state")
    p_u = sub.add_parser("units", help="write systemd units for the services to DIR")
    p_u.add_argument("dir")
    p_u.add_argument("--hosts", type=int, default=2)
    sub.add_parser("tempest", help="write tempest.conf and run Tempest; further "
                   "arguments go to `tempest run`")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "tempest":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")

    from cloud import layout, orchestrate

    def progress(line: str) -> None:
        print(f"[cloud] {line}", flush=True)

    if args.command == "up":
        if not 1 <= args.hosts <= layout.MAX_HOSTS:
            parser.error(f"--hosts must be between 1 and {layout.MAX_HOSTS}")
        try:
            orchestrate.up(args.hosts, progress)
        except orchestrate.ServiceFailed as e:
            print(f"[cloud] FAILED: {e}", file=sys.stderr)
            print("[cloud] fix the cause and run `scripts/cloud up` again "
                  "(it resumes), or `scripts/cloud down`", file=sys.stderr)
            return 1
        return 0
    if args.command == "status":
        return orchestrate.status()
    if args.command == "units":
        from cloud import services, systemd
        nodes = orchestrate.computes(args.hosts)
        for path in systemd.write(args.dir, orchestrate._stages(services.table(nodes), nodes)):
            print(path)
        return 0
    if args.command == "down":
        orchestrate.down(progress)
        return 0
    from cloud import tempest
    return tempest.run(extra, progress)


if __name__ == "__main__":
    sys.exit(main())
