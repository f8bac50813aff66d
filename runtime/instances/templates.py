"""Image templates (metadata.yaml `templates:`), rendered on create, copy, start, rename.

LXD writes them in pongo2; the common subset (`{{ instance.name }}`,
`{{ config_get("k", "default") }}`, `{% if %}`) is also Jinja2. An image is
tenant input, so:

- a template file is read only from below the volume's `templates/` directory:
  no `..`, no symlink anywhere, regular files only, at most MAX_SOURCE bytes
  (runtime.safepath); an image naming `../../../../etc/hostname` fails to start;
- rendering runs in a separate worker process (template_worker) that forks a
  child per start with memory, CPU, wall-clock and output limits, never in the
  daemon;
- output is written through InstanceFS, so a target path can't escape the
  container root, and a FIFO or device node at the target is refused.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import sys

from runtime import safepath
from runtime.errors import BadRequest
from runtime.images import metadata
from runtime.instances.files import InstanceFS

LOG = logging.getLogger(__name__)
MAX_SOURCE = 1024 * 1024          # one template file
LIMITS = {"seconds": 5.0, "cpu": 3, "memory": 256 * 1024 * 1024, "output": 4 * 1024 * 1024}
IDLE_SECONDS = 300.0              # the worker exits when unused this long
_HEAD = struct.Struct("!I")


class TemplateError(BadRequest):
    """The image's templates can't be used; the instance does not start."""


def load_metadata(volume_dir: str) -> dict:
    return metadata.read(os.path.join(volume_dir, "metadata.yaml"))


def _jobs(volume_dir: str, fs: InstanceFS, trigger: str) -> list[dict]:
    """The templates to render for trigger, their sources read safely (blocking)."""
    templates = load_metadata(volume_dir).get("templates") or {}
    jobs = []
    for path, spec in sorted(templates.items()):
        if trigger not in (spec.get("when") or []):
            continue
        if spec.get("create_only") and trigger != "create":
            try:
                fs.stat(path)
                continue
            except Exception:  # noqa: BLE001 - missing: render it
                pass
        name = str(spec.get("template") or "")
        try:
            source = safepath.read_beneath(os.path.join(volume_dir, "templates"), name,
                                           MAX_SOURCE)
        except FileNotFoundError:
            LOG.warning("image template %r for %s is missing: skipped", name, path)
            continue
        except (OSError, ValueError) as exc:
            raise TemplateError(f"Image template {name!r} for {path}: can't be used ({exc})")
        try:
            mode = int(str(spec.get("mode") or "644"), 8)
            if not 0 <= mode <= 0o7777:
                raise ValueError
        except ValueError:
            raise TemplateError(f"Image template for {path}: invalid mode {spec.get('mode')!r}")
        try:
            text = source.decode()
        except UnicodeDecodeError:
            raise TemplateError(f"Image template {name!r} is not UTF-8 text")
        jobs.append({"path": path, "trigger": trigger, "source": text, "mode": mode,
                     "properties": {str(k): v for k, v in (spec.get("properties") or {}).items()}})
    return jobs


def _write(fs: InstanceFS, path: str, text: str, mode: int) -> None:
    fd = fs.open_write(path, 0, 0, mode, append=False)
    with os.fdopen(fd, "w") as out:
        out.write(text)


async def render_all(renderer: "Renderer", volume_dir: str, fs: InstanceFS, trigger: str,
                     context: dict) -> list[str]:
    """Render templates whose `when` has trigger; returns the paths written."""
    jobs = await asyncio.to_thread(_jobs, volume_dir, fs, trigger)
    if not jobs:
        return []
    results = await renderer.render(jobs, context)
    for job, result in zip(jobs, results, strict=True):
        if "error" in result:
            raise TemplateError(f"Image template for {job['path']} failed: {result['error']}")
        await asyncio.to_thread(_write, fs, job["path"], result["text"], job["mode"])
    return [job["path"] for job in jobs]


class Renderer:
    """The daemon's side of the template worker: started on first use, replaced when
    it misbehaves, stopped when idle."""

    def __init__(self, limits: dict | None = None):
        self.limits = dict(limits or LIMITS)
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()
        self._idle: asyncio.TimerHandle | None = None

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self.proc is not None and self.proc.returncode is None:
            return self.proc
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runtime.instances.template_worker", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return self.proc

    async def render(self, jobs: list[dict], context: dict) -> list[dict]:
        request = json.dumps({"templates": jobs, "context": context,
                              "limits": self.limits}).encode()
        async with self.lock:
            if self._idle is not None:
                self._idle.cancel()
            proc = await self._ensure()
            try:
                proc.stdin.write(_HEAD.pack(len(request)) + request)
                await proc.stdin.drain()
                wait = self.limits["seconds"] + 10
                head = await asyncio.wait_for(proc.stdout.readexactly(_HEAD.size), wait)
                size = _HEAD.unpack(head)[0]
                if size > self.limits["output"] * len(jobs) * 6 + 65536:
                    raise ValueError("reply too large")
                reply = json.loads(await asyncio.wait_for(proc.stdout.readexactly(size), wait))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                await self.close()
                raise TemplateError(f"Image templates could not be rendered: the template "
                                    f"worker failed ({exc or type(exc).__name__})")
            finally:
                self._idle = asyncio.get_running_loop().call_later(
                    IDLE_SECONDS, lambda: asyncio.ensure_future(self._close_idle()))
        if "error" in reply:
            raise TemplateError(f"Image templates could not be rendered: {reply['error']}")
        return reply["results"]

    async def _close_idle(self) -> None:
        if not self.lock.locked():
            await self.close()

    async def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
