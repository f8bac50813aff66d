"""Project restrictions: `restricted=true` and the `restricted.*` keys, as LXD
enforces them (lxd/project/permissions.go).

A restricted project is one a tenant may run without being trusted with the
host: its instances stay unprivileged, without low-level `raw.*` keys, host
paths, host devices or host nic parents, unless the administrator allows each
by setting its `restricted.*` key. The rules hold whoever makes the change (an
administrator on the unix socket too), on every path that can give an instance
a forbidden setting: creation (also by copy or migration), update and hot-plug,
and edits of the profiles it uses. A refusal is a 403 naming the key.

Defaults are LXD's: with `restricted=true` and nothing else set, containers are
unprivileged and un-nested, disks must come from a storage pool, nics from a
managed network, snapshots and backups are blocked.
"""
from __future__ import annotations

import os

from runtime.errors import BadRequest, Forbidden
from runtime.instances.model import expand

_BLOCK_ALLOW = ("block", "allow")
# key -> (default, allowed values or None for free-form)
KEYS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "restricted.backups": ("block", _BLOCK_ALLOW),
    "restricted.containers.interception": ("block", _BLOCK_ALLOW),
    "restricted.containers.lowlevel": ("block", _BLOCK_ALLOW),
    "restricted.containers.nesting": ("block", _BLOCK_ALLOW),
    "restricted.containers.privilege": ("unprivileged", ("unprivileged", "isolated", "allow")),
    "restricted.devices.disk": ("managed", ("block", "managed", "allow")),
    "restricted.devices.disk.paths": ("", None),
    "restricted.devices.gpu": ("block", _BLOCK_ALLOW),
    "restricted.devices.infiniband": ("block", _BLOCK_ALLOW),
    "restricted.devices.nic": ("managed", ("block", "managed", "allow")),
    "restricted.devices.pci": ("block", _BLOCK_ALLOW),
    "restricted.devices.proxy": ("block", _BLOCK_ALLOW),
    "restricted.devices.unix-block": ("block", _BLOCK_ALLOW),
    "restricted.devices.unix-char": ("block", _BLOCK_ALLOW),
    "restricted.devices.unix-hotplug": ("block", _BLOCK_ALLOW),
    "restricted.devices.usb": ("block", _BLOCK_ALLOW),
    "restricted.idmap.gid": ("", None),
    "restricted.idmap.uid": ("", None),
    "restricted.networks.access": ("", None),
    "restricted.snapshots": ("block", _BLOCK_ALLOW),
    # Accepted for LXD compatibility; this runtime has no VMs, clusters or OVN.
    "restricted.cluster.groups": ("", None),
    "restricted.cluster.target": ("block", _BLOCK_ALLOW),
    "restricted.networks.subnets": ("", None),
    "restricted.networks.uplinks": ("", None),
    "restricted.networks.zones": ("", None),
    "restricted.virtual-machines.lowlevel": ("block", _BLOCK_ALLOW),
}
# Device types whose restricted.devices.<type> key is simply block/allow.
_DEVICE_SWITCHES = ("unix-char", "unix-block", "unix-hotplug", "gpu", "usb", "pci",
                    "proxy", "infiniband")
# Low-level container keys (LXD's isContainerLowLevelOptionForbidden).
LOWLEVEL_KEYS = frozenset({
    "boot.host_shutdown_timeout", "linux.kernel_modules", "raw.apparmor", "raw.idmap",
    "raw.lxc", "raw.seccomp", "security.devlxd.images", "security.idmap.base",
    "security.idmap.size"})
INTERCEPT_KEYS = frozenset({
    "security.syscalls.intercept.bpf", "security.syscalls.intercept.bpf.devices",
    "security.syscalls.intercept.mknod", "security.syscalls.intercept.mount",
    "security.syscalls.intercept.mount.fuse", "security.syscalls.intercept.setxattr",
    "security.syscalls.intercept.sysinfo"})
# Daemon-kept keys a client of a restricted project may set (LXD's safe list).
_SAFE_VOLATILE = frozenset({"volatile.apply_template", "volatile.base_image",
                            "volatile.last_state.power"})


def _truthy(value: object) -> bool:
    return str(value or "").lower() in ("true", "1", "yes", "on")


def validate_key(key: str, value: str) -> None:
    """A `restricted*` project config value, or ValueError (what LXD accepts)."""
    if key == "restricted":
        if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off", ""):
            raise ValueError("must be true or false")
        return
    if key not in KEYS:
        raise ValueError("unknown restriction")
    choices = KEYS[key][1]
    if choices is not None:
        if value not in choices + ("",):
            raise ValueError(f"must be one of {', '.join(choices)}")
    elif key == "restricted.devices.disk.paths":
        for path in _split(value):
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is not an absolute path")
    elif key in ("restricted.idmap.uid", "restricted.idmap.gid"):
        for part in _split(value):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and (not hi.isdigit() or int(hi) < int(lo))):
                raise ValueError(f"{part!r} is not a host id or range (1000-1999)")


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


class Rules:
    """The restrictions of one project (enabled only with `restricted=true`)."""

    def __init__(self, project: str, config: dict[str, str]):
        self.project = project
        self.config = config
        self.enabled = _truthy(config.get("restricted"))

    def value(self, key: str) -> str:
        return self.config.get(key) or KEYS[key][0]

    def refuse(self, what: str, why: str):
        raise Forbidden(f"{what} of project {self.project!r}: {why}")

    # Config ----------------------------------------------------------------
    def check_config(self, what: str, config: dict[str, str], instance: bool) -> None:
        if not self.enabled:
            return
        lowlevel = self.value("restricted.containers.lowlevel") == "allow"
        config = dict(config)
        if instance:   # unset means not isolated: the rule can't be dodged by omission
            config.setdefault("security.idmap.isolated", "false")
        for key, value in sorted(config.items()):
            if not lowlevel and (key in LOWLEVEL_KEYS or key.startswith(
                    ("security.syscalls.intercept.", "security.delegate_bpf"))
                    and key not in INTERCEPT_KEYS):
                self.refuse(what, f"low-level config {key!r} is forbidden "
                                   "(restricted.containers.lowlevel)")
            if key in INTERCEPT_KEYS and _truthy(value) and \
                    self.value("restricted.containers.interception") != "allow":
                self.refuse(what, f"{key!r}: container syscall interception is forbidden "
                                   "(restricted.containers.interception)")
            if key == "security.nesting" and _truthy(value) and \
                    self.value("restricted.containers.nesting") != "allow":
                self.refuse(what, "container nesting is forbidden "
                                   "(restricted.containers.nesting)")
            privilege = self.value("restricted.containers.privilege")
            if key == "security.privileged" and _truthy(value) and privilege != "allow":
                self.refuse(what, "privileged containers are forbidden "
                                   "(restricted.containers.privilege)")
            if key == "security.idmap.isolated" and not _truthy(value) and \
                    privilege == "isolated":
                self.refuse(what, "non-isolated containers are forbidden "
                                   "(restricted.containers.privilege=isolated)")

    def check_volatile(self, what: str, config: dict[str, str], current: dict[str, str],
                       strip: bool) -> dict[str, str]:
        """Daemon-kept keys: a restricted project's client sets none but the safe ones
        (a copy or migration has them stripped), nor changes what the daemon keeps."""
        if not self.enabled or self.value("restricted.containers.lowlevel") == "allow":
            return config
        out = dict(config)
        for key, value in config.items():
            if not key.startswith("volatile.") or key in _SAFE_VOLATILE or \
                    key.endswith((".hwaddr", ".apply_quota")):
                continue
            if strip:
                del out[key]
            elif current.get(key) != value:
                self.refuse(what, f"setting {key!r} is forbidden "
                                   "(restricted.containers.lowlevel)")
        return out

    # Devices ---------------------------------------------------------------
    def check_devices(self, what: str, devices: dict[str, dict]) -> None:
        if not self.enabled:
            return
        for name, dev in sorted(devices.items()):
            dtype = dev.get("type")
            label = f"{what}, device {name!r}"
            if dtype in _DEVICE_SWITCHES:
                if self.value(f"restricted.devices.{dtype}") != "allow":
                    self.refuse(label, f"{dtype} devices are forbidden "
                                        f"(restricted.devices.{dtype})")
            elif dtype == "disk":
                self._check_disk(label, dev)
            elif dtype == "nic":
                self._check_nic(label, dev)

    def _check_disk(self, label: str, dev: dict) -> None:
        if dev.get("pool"):
            source = dev.get("source", "")
            if "/" in source or source in (".", ".."):
                self.refuse(label, f"pool volume name {source!r} is not a volume")
            if dev.get("path") == "/":
                return   # the root disk is always allowed
        mode = self.value("restricted.devices.disk")
        if mode == "block":
            self.refuse(label, "disk devices are forbidden (restricted.devices.disk)")
        if dev.get("pool"):
            return
        if mode == "managed":
            self.refuse(label, "disks not backed by a storage pool are forbidden "
                                "(restricted.devices.disk=managed)")
        if self.allowed_parent(dev.get("source", "")) is None:
            self.refuse(label, f"disk source path {dev.get('source')!r} is not allowed "
                                "(restricted.devices.disk.paths)")
        if self.value("restricted.devices.disk.paths") and _truthy(dev.get("shift")):
            self.refuse(label, "'shift' can't be used with a restricted source path")

    def allowed_parent(self, source: str) -> str | None:
        """The restricted.devices.disk.paths entry holding `source` (lexically, as LXD:
        the symlinks are resolved at start, see resolve_disk_source), "" when any path
        is allowed, None when none matches."""
        paths = _split(self.value("restricted.devices.disk.paths"))
        if not paths:
            return ""
        wanted = os.path.normpath("/" + source.lstrip("/")).rstrip("/") + "/"
        for parent in paths:
            if wanted.startswith(os.path.normpath(parent).rstrip("/") + "/"):
                return parent
        return None

    def _check_nic(self, label: str, dev: dict) -> None:
        mode = self.value("restricted.devices.nic")
        if mode == "block":
            self.refuse(label, "network devices are forbidden (restricted.devices.nic)")
        if mode == "managed" and not dev.get("network"):
            self.refuse(label, "only nics on a managed network are allowed "
                                "(restricted.devices.nic=managed)")
        if dev.get("network"):
            if not self.network_allowed(dev["network"], managed=True):
                self.refuse(label, f"network {dev['network']!r} is not allowed "
                                    "(restricted.networks.access)")
        elif dev.get("parent") and not self.network_allowed(dev["parent"], managed=False):
            self.refuse(label, f"host interface {dev['parent']!r} is not allowed "
                                "(restricted.devices.nic, restricted.networks.access)")

    def network_allowed(self, name: str, managed: bool) -> bool:
        """LXD's NetworkAllowed."""
        if not self.enabled:
            return True
        mode = self.value("restricted.devices.nic")
        if mode == "block" or (mode == "managed" and not managed):
            return False
        access = _split(self.value("restricted.networks.access"))
        return not access or name in access

    # Everything an instance (or a profile) holds ----------------------------------
    def check(self, what: str, config: dict, devices: dict, instance: bool = True) -> None:
        self.check_config(what, config, instance)
        self.check_devices(what, devices)

    def check_snapshots(self, what: str) -> None:
        if self.enabled and self.value("restricted.snapshots") != "allow":
            self.refuse(what, "snapshots are forbidden (restricted.snapshots)")


def rules(d, project: str) -> Rules:
    row = d.project_rows.get(project)
    return Rules(project, (row or {}).get("config") or {})


def check_instance(d, project: str, name: str, config: dict, devices: dict) -> None:
    """An instance's expanded config and devices (its profiles' included)."""
    rules(d, project).check(f"instance {name!r}", config, devices)


def check_profile(d, profile_project: str, via_project: str, name: str, config: dict,
                  devices: dict) -> None:
    """A profile's new content: against its own project, the project it was edited
    through (a project without features.profiles uses the default project's), and
    every instance of a restricted project that uses it."""
    what = f"profile {name!r}"
    for project in {profile_project, via_project}:
        rules(d, project).check(what, config, devices, instance=False)
    for inst in d.instances.list(None):
        if name not in inst.profiles or d.profile_project(inst.project) != profile_project:
            continue
        r = rules(d, inst.project)
        if not r.enabled:
            continue
        profiles = [{"config": config, "devices": devices} if p == name else
                    d.profile_rows.get(profile_project, p) or
                    {"config": {}, "devices": {}} for p in inst.profiles]
        econfig, edevices = expand(profiles, inst.config, inst.devices)
        r.check(f"instance {inst.name!r} (using {what})", econfig, edevices)


def check_snapshot_copies(d, project: str, name: str, rows: list[dict]) -> None:
    """Snapshots arriving with a copy or migration: allowed at all, and each within
    the project's rules (a snapshot can be restored later)."""
    if not rows:
        return
    r = rules(d, project)
    r.check_snapshots(f"instance {name!r}")
    if not r.enabled:
        return
    pproj = d.profile_project(project)
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        config, devices = row.get("config") or {}, row.get("devices") or {}
        if not isinstance(config, dict) or not isinstance(devices, dict):
            continue   # malformed: the input validation refuses it
        profiles = [p for p in (d.profile_rows.get(pproj, n)
                                for n in row.get("profiles") or [] if isinstance(n, str)) if p]
        r.check(f"snapshot {row.get('name')!r} of instance {name!r}",
                *expand(profiles, config, devices))


def check_project(d, project: str, config: dict) -> None:
    """New restrictions must not contradict what the project already holds."""
    r = Rules(project, config)
    if not r.enabled:
        return
    try:
        for inst in d.instances.list(project):
            r.check(f"instance {inst.name!r}", inst.expanded_config, inst.expanded_devices)
        if d.profile_project(project) == project:
            for prof in d.profile_rows.list(project):
                r.check(f"profile {prof['name']!r}", prof["config"], prof["devices"],
                        instance=False)
    except Forbidden as exc:
        raise BadRequest(f"Conflict detected when restricting project {project!r}: {exc}")


def resolve_disk_source(d, project: str, name: str, source: str) -> str:
    """Where a host-path disk of a restricted project really points, refused if its
    symlinks lead outside restricted.devices.disk.paths (checked at each start and
    hot-plug: the tree may have changed since the device was added)."""
    r = rules(d, project)
    if not r.enabled or not r.value("restricted.devices.disk.paths"):
        return source
    parent = r.allowed_parent(source)
    real = os.path.realpath(source)
    if parent is None or not (real + "/").startswith(
            os.path.realpath(parent).rstrip("/") + "/"):
        r.refuse(f"disk {name!r}", f"source {source!r} resolves to {real!r}, outside "
                                    "restricted.devices.disk.paths")
    return real
