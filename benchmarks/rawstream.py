"""The yardstick for copy throughput: `tar -c | loopback TCP | tar -x`."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time


class RawStream:
    """tar -c | loopback TCP | tar -x of the busybox rootfs plus mb MB of random data."""

    def __init__(self, image: str, mb: int):
        self.mb = mb
        self.base = tempfile.mkdtemp(prefix="bench-mstream-", dir="/var/tmp")
        self.src = os.path.join(self.base, "src")
        subprocess.run(["tar", "-C", self.base, "-xf", image, "rootfs"], check=True)
        os.rename(os.path.join(self.base, "rootfs"), self.src)
        with open(os.path.join(self.src, "big"), "wb") as f:
            f.writelines(os.urandom(1 << 20) for _ in range(mb))
        subprocess.run(["sync"], check=False)

    def __call__(self) -> float:
        """One stream into a fresh directory: MB/s."""
        dst = tempfile.mkdtemp(prefix="dst-", dir=self.base)
        srv = socket.create_server(("127.0.0.1", 0))
        os.sync()  # same start as the copies it is compared with: no writeback left
        t0 = time.perf_counter()
        cli = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        rx = subprocess.Popen(["tar", "-C", dst, "-xf", "-"], stdin=conn.fileno())
        tx = subprocess.Popen(["tar", "-C", self.src, "-cf", "-", "."], stdout=cli.fileno())
        cli.close()
        tx.wait()
        conn.close()
        rx.wait()
        took = time.perf_counter() - t0
        srv.close()
        shutil.rmtree(dst, ignore_errors=True)
        return self.mb / took

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
