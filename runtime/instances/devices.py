"""Device handling around an instance's life: sources of disk devices, hooks, hotplug.

The lxc config renders devices at start; this module resolves what needs the
daemon (pool volumes as disk sources) and applies changes to running instances.
"""
import logging
import os

from runtime.errors import BadRequest

LOG = logging.getLogger(__name__)


class Devices:
    def __init__(self, daemon):
        self.d = daemon

    async def disk_sources(self, inst) -> dict[str, str]:
        """Host paths for disk devices backed by pool volumes (`pool` + `source`)."""
        out = {}
        for name, dev in inst.expanded_devices.items():
            if dev.get("type") != "disk" or dev.get("path") == "/" or not dev.get("pool"):
                continue
            pool = self.d.pool(dev["pool"])
            path = pool.custom_path(dev["source"])
            if not os.path.isdir(path):
                raise BadRequest(f"disk {name!r}: volume {dev['source']!r} not found in "
                                 f"pool {dev['pool']!r}")
            out[name] = path
        return out

    async def before_start(self, inst) -> None:
        return None

    async def after_stop(self, inst) -> None:
        return None

    async def before_delete(self, inst) -> None:
        return None

    async def hotplug(self, inst, old_devices: dict) -> None:
        changed = sorted(n for n in set(old_devices) | set(inst.expanded_devices)
                         if old_devices.get(n) != inst.expanded_devices.get(n))
        if changed:
            LOG.info("instance %s: device changes %s apply at next start", inst.name, changed)
