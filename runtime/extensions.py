"""Subsystems that plug into the daemon at start-up, each owning its own module.

Each module named here exposes `attach(daemon)`; it may set attributes the core
looks up (`snapshots`, `publisher`, `transfers`, `remote_images`, `networks`,
`tls`...) or wrap hooks such as `daemon.devices`. A module that is not present
in this build is skipped, so the core stays usable on its own.
"""
import importlib
import logging

LOG = logging.getLogger(__name__)

MODULES = [
    "runtime.instances.snapshots",    # snapshots, restore, copy, publish (issue 3)
    "runtime.network.attach",          # managed bridges, nic hotplug (issue 3)
    "runtime.instances.seccomp_notify",  # syscall interception proxy (issue 3)
    "runtime.projects",                # project features (issue 3)
    "runtime.tls",                     # HTTPS listener and trust store (issue 4)
    "runtime.migration",               # copy/move between hosts (issue 4)
    "runtime.images.remote",           # image servers (issue 4)
]


def attach(daemon) -> None:
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or name.startswith(str(exc.name) + "."):
                continue
            raise
        hook = getattr(mod, "attach", None)
        if hook is not None:
            hook(daemon)
