"""Runtime demo: start the bundled runtime, import the busybox image, launch a
container, run a command in it and show it running. Cleans up unless --keep."""
import argparse
import os
import subprocess
import sys
import time

from tests.functional.runtime.harness import RuntimeDaemon, import_busybox


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the runtime running")
    parser.add_argument("--lxd-dir", default="/var/tmp/nova-lxd-demo")
    args = parser.parse_args()
    os.makedirs(args.lxd_dir, mode=0o711, exist_ok=True)
    d = RuntimeDaemon(args.lxd_dir)
    print(f"[demo] starting the runtime (LXD_DIR={args.lxd_dir})")
    d.start()
    try:
        client = d.client()
        fp = import_busybox(client)
        print(f"[demo] busybox image {fp[:12]} imported")
        if client.instances.exists("demo1"):
            old = client.instances.get("demo1")
            if old.status != "Stopped":
                old.stop(force=True, wait=True)
            old.delete(wait=True)
        t0 = time.time()
        inst = client.instances.create({"name": "demo1", "source": {
            "type": "image", "alias": "busybox"}, "config": {"limits.memory": "64MiB"}},
            wait=True)
        inst.start(wait=True)
        print(f"[demo] launched demo1 in {1000 * (time.time() - t0):.0f} ms")
        res = inst.execute(["sh", "-c", "echo \"hello from $(hostname), pid 1 is "
                            "$(cat /proc/1/comm)\"; cat /sys/fs/cgroup/memory/"
                            "memory.limit_in_bytes"])
        print("[demo] exec:", res.stdout.strip().replace("\n", " | memory limit: "))
        env = dict(os.environ, LXD_DIR=args.lxd_dir)
        subprocess.run(["lxc", "list"], env=env, check=False)
        if args.keep:
            print(f"[demo] kept running: LXD_DIR={args.lxd_dir} lxc list; "
                  f"stop the daemon with: kill {client.host_info['environment']['server_pid']}")
            d.proc = None  # detach: leave it running
            return 0
        inst.stop(force=True, wait=True)
        inst.delete(wait=True)
        print("[demo] cleaned up")
        return 0
    finally:
        if not args.keep:
            d.destroy()


if __name__ == "__main__":
    sys.exit(main())
