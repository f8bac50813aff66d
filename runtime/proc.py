"""Running external tools (lxc-*, tar, cp, mount, btrfs) from the event loop.

One place for it so every failure becomes a CommandFailed carrying the tool's
own stderr, which is what an operator needs to see.
"""
import asyncio
import subprocess
from collections.abc import Sequence

from runtime.errors import CommandFailed


async def run(argv: Sequence[str], *, input: bytes | None = None, check: bool = True,
              timeout: float | None = None, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandFailed(f"{argv[0]} timed out after {timeout}s")
    rc = proc.returncode
    if check and rc != 0:
        msg = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise CommandFailed(f"{' '.join(argv[:3])} failed (exit {rc}): {msg[-2000:]}")
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def run_sync(argv: Sequence[str], check: bool = True) -> tuple[int, str, str]:
    p = subprocess.run(list(argv), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise CommandFailed(f"{' '.join(argv[:3])} failed (exit {p.returncode}): "
                            f"{(p.stderr or p.stdout).strip()[-2000:]}")
    return p.returncode, p.stdout, p.stderr
