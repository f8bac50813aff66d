"""Instance config and device validation: the keys LXD knows, with their types.

A bad key or value raises BadRequest naming the key, so a client is told exactly
what to fix. Unknown keys are refused, except in the free-form namespaces.
"""
import ipaddress
import re
from collections.abc import Callable

from runtime import controlchars
from runtime.base.values import (  # noqa: F401 - instance keys use them too
    any_value, is_bool, is_interface_name, is_size, is_uint, one_of, parse_size, truthy,
    validate_snapshot_name)
from runtime.errors import BadRequest

def parse_cpuset(value: str) -> list[int]:
    """CPU ids from a pinning spec ("0-1,3")."""
    cpus: set[int] = set()
    for part in value.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            if int(lo) > int(hi):
                raise ValueError(f"invalid cpu range {part!r}")
            cpus.update(range(int(lo), int(hi) + 1))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def is_memory(v: str) -> None:
    if str(v).endswith("%"):
        pct = str(v)[:-1]
        if not pct.isdigit() or not 0 < int(pct) <= 100:
            raise ValueError("percentage must be 1-100%")
        return
    if parse_size(v) < 4 * 2**20:
        raise ValueError("must be at least 4MiB")


def is_cpu(v: str) -> None:
    s = str(v).strip()
    if s.isdigit():
        if int(s) < 1:
            raise ValueError("must be at least 1")
        return
    if not re.fullmatch(r"[\d,\-\s]+", s):
        raise ValueError("must be a count (\"2\") or a cpu set (\"0-1,3\")")
    parse_cpuset(s)


def is_allowance(v: str) -> None:
    s = str(v)
    if s.endswith("%") and s[:-1].isdigit():
        return
    if re.fullmatch(r"\d+ms/\d+ms", s):
        return
    raise ValueError("must be a percentage (\"50%\") or a time slice (\"25ms/100ms\")")


def is_priority(v: str) -> None:
    if not str(v).isdigit() or int(v) > 10:
        raise ValueError("must be an integer 0-10")


def is_raw_lxc(v: str) -> None:
    """raw.lxc is passed to liblxc verbatim: at least catch what it would refuse to parse."""
    for n, line in enumerate(str(v).split("\n"), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not re.match(r"^lxc\.[A-Za-z0-9_.\-]+\s*=", text):
            raise ValueError(f"line {n} is not 'lxc.<key> = <value>': {text!r}")
        key = text.split("=", 1)[0].strip()
        if key in ("lxc.logfile", "lxc.log.file", "lxc.syslog", "lxc.ephemeral",
                   "lxc.rootfs.path", "lxc.uts.name"):
            raise ValueError(f"line {n}: {key} is managed by the runtime")


def unsupported(why: str) -> Callable[[str], None]:
    """A key LXD has but this runtime can't honour: refuse it rather than ignore it."""
    def check(v: str) -> None:
        raise ValueError(f"not supported by this runtime ({why})")
    return check


def only_false(why: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if truthy(v):
            raise ValueError(f"only 'false' is supported ({why})")
    return check


def syscall_list(v: str) -> None:
    """Syscall names separated by whitespace: each becomes a line of the seccomp policy."""
    for name in v.split():
        if not re.fullmatch(r"[a-z0-9_]{1,64}", name):
            raise ValueError(f"{name!r} is not a syscall name")


_RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
            "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def is_prlimit(v: str) -> None:
    if not re.fullmatch(r"(\d+|unlimited)(:(\d+|unlimited))?", v):
        raise ValueError("must be a limit or soft:hard (numbers or 'unlimited')")


INSTANCE_KEYS: dict[str, Callable[[str], None]] = {
    "boot.autostart": is_bool, "boot.autostart.delay": is_uint,
    "boot.autostart.priority": is_uint, "boot.host_shutdown_timeout": is_uint,
    "boot.stop.priority": is_uint,
    "cloud-init.network-config": any_value, "cloud-init.user-data": any_value,
    "cloud-init.vendor-data": any_value,
    "limits.cpu": is_cpu, "limits.cpu.allowance": is_allowance,
    "limits.cpu.priority": is_priority, "limits.disk.priority": is_priority,
    "limits.memory": is_memory, "limits.memory.enforce": one_of("hard", "soft"),
    "limits.memory.swap": is_bool, "limits.memory.swap.priority": is_priority,
    "limits.network.priority": is_priority, "limits.processes": is_uint,
    "linux.kernel_modules": any_value,
    "migration.incremental.memory": is_bool, "migration.stateful": is_bool,
    "raw.apparmor": any_value,
    "raw.idmap": unsupported("use security.idmap.isolated, .base or .size"), "raw.lxc": is_raw_lxc,
    "raw.seccomp": any_value,
    "security.devlxd": only_false("there is no /dev/lxd guest API"),
    "security.devlxd.images": only_false("there is no /dev/lxd guest API"),
    "security.idmap.base": is_uint, "security.idmap.isolated": is_bool,
    "security.idmap.size": is_uint, "security.nesting": is_bool,
    "security.privileged": is_bool, "security.protection.delete": is_bool,
    "security.protection.shift": is_bool, "security.syscalls.allow": syscall_list,
    "security.syscalls.deny": syscall_list, "security.syscalls.deny_compat": is_bool,
    "security.syscalls.deny_default": is_bool,
    "snapshots.schedule": any_value, "snapshots.schedule.stopped": is_bool,
    "snapshots.pattern": any_value, "snapshots.expiry": any_value,
}
FREE_PREFIXES = ("user.", "environment.", "image.", "volatile.", "linux.sysctl.",
                 "limits.kernel.", "security.syscalls.intercept.", "limits.hugepages.")
# Free-form keys whose name is rendered into lxc.conf: the part after the prefix.
_RENDERED_NAMES = {"environment.": re.compile(r"[^=]{1,255}"),
                   "linux.sysctl.": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}"),
                   "limits.kernel.": re.compile("|".join(_RLIMITS))}
_FREE_CHECKS = {"limits.kernel.": is_prlimit}


# Set while an instance is being made (create, copy, migration) and cleared when
# it is whole; a daemon that restarts removes instances still marked.
INCOMPLETE_KEY = "volatile.incomplete"
# Keys only the daemon writes: a client's value (a PUT of what a GET returned, say)
# is dropped, so no client can mark an instance for removal.
DAEMON_KEYS = (INCOMPLETE_KEY,)


def validate_config(config: dict, where: str = "instance") -> dict[str, str]:
    if not isinstance(config, dict):
        raise BadRequest(f"Invalid {where} config: must be an object")
    out = {}
    for key, value in config.items():
        controlchars.check_key(key, f"{where} config")
        if key in DAEMON_KEYS:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise BadRequest(f"Invalid value for {where} config key {key!r}: must be a string")
        controlchars.check_value(key, value, f"{where} config")
        check = INSTANCE_KEYS.get(key)
        if check is None:
            prefix = next((p for p in FREE_PREFIXES if key.startswith(p)), None)
            if prefix is None:
                raise BadRequest(f"Unknown {where} config key: {key!r}")
            rule = _RENDERED_NAMES.get(prefix)
            if rule is not None and not rule.fullmatch(key[len(prefix):]):
                raise BadRequest(f"Invalid {where} config key {key!r}")
            check = _FREE_CHECKS.get(prefix, any_value)
        if value != "":
            try:
                check(value)
            except ValueError as exc:
                raise BadRequest(f"Invalid value for {where} config key {key!r}: {exc}")
        out[key] = value
    return out


_COMMON = {"type"}
DEVICE_KEYS: dict[str, set[str]] = {
    "none": set(),
    "disk": {"path", "source", "pool", "size", "readonly", "recursive", "required",
             "propagation", "shift", "limits.read", "limits.write", "limits.max",
             "boot.priority", "raw.mount.options", "ceph.cluster_name", "ceph.user_name",
             "size.state", "initial.uid", "initial.gid", "initial.mode"},
    "nic": {"nictype", "network", "parent", "name", "hwaddr", "mtu", "host_name",
            "limits.ingress", "limits.egress", "limits.max", "limits.priority",
            "ipv4.address", "ipv6.address", "ipv4.routes", "ipv6.routes",
            "ipv4.routes.external", "ipv6.routes.external", "security.mac_filtering",
            "security.ipv4_filtering", "security.ipv6_filtering", "security.port_isolation",
            "vlan", "vlan.tagged", "mode", "maas.subnet.ipv4", "maas.subnet.ipv6",
            "boot.priority", "queue.tx.length", "acceleration", "gvrp"},
    "unix-char": {"source", "path", "major", "minor", "uid", "gid", "mode", "required"},
    "unix-block": {"source", "path", "major", "minor", "uid", "gid", "mode", "required"},
    "unix-hotplug": {"vendorid", "productid", "uid", "gid", "mode", "required"},
    "usb": {"vendorid", "productid", "busnum", "devnum", "uid", "gid", "mode", "required"},
    "gpu": {"gputype", "vendorid", "productid", "id", "pci", "uid", "gid", "mode"},
    "proxy": {"listen", "connect", "bind", "uid", "gid", "mode", "nat", "proxy_protocol",
              "security.uid", "security.gid"},
    "infiniband": {"nictype", "name", "hwaddr", "mtu", "parent"},
    "tpm": {"path", "pathrm"},
}
NIC_TYPES = {"bridged", "macvlan", "p2p", "physical", "sriov", "ipvlan", "routed"}
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}$")


def validate_devices(devices: dict, where: str = "instance") -> dict[str, dict[str, str]]:
    if not isinstance(devices, dict):
        raise BadRequest(f"Invalid {where} devices: must be an object")
    out = {}
    for name, dev in devices.items():
        if not isinstance(name, str) or not _DEVICE_NAME.match(name):
            raise BadRequest(f"Invalid device name {name!r}")
        if not isinstance(dev, dict):
            raise BadRequest(f"Invalid device {name!r}: must be an object")
        dtype = dev.get("type")
        if dtype not in DEVICE_KEYS:
            raise BadRequest(f"Invalid device {name!r}: unknown or missing type {dtype!r}")
        allowed = DEVICE_KEYS[dtype] | _COMMON
        clean = {}
        for key, value in dev.items():
            controlchars.check_key(key, f"device {name!r}")
            if key not in allowed and not key.startswith("user."):
                raise BadRequest(f"Invalid device {name!r}: unknown key {key!r} "
                                 f"for type {dtype!r}")
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)):
                value = str(value)
            elif not isinstance(value, str):
                raise BadRequest(f"Invalid device {name!r}: value of {key!r} must be a string")
            clean[key] = controlchars.check_value(key, value, f"device {name!r}")
        _check_device(name, clean)
        out[name] = clean
    return out


def _check_device(name: str, dev: dict[str, str]) -> None:
    dtype = dev["type"]
    if dtype == "disk":
        if "path" not in dev:
            raise BadRequest(f"Invalid device {name!r}: disk needs a 'path'")
        if not dev["path"].startswith("/"):
            raise BadRequest(f"Invalid device {name!r}: disk 'path' must be absolute "
                             f"(got {dev['path']!r})")
        if dev["path"] != "/" and "source" not in dev:
            raise BadRequest(f"Invalid device {name!r}: disk at {dev['path']!r} needs "
                             "a 'source'")
        if dev.get("size"):
            try:
                parse_size(dev["size"])
            except ValueError as exc:
                raise BadRequest(f"Invalid device {name!r}: size: {exc}")
    elif dtype == "nic":
        nictype = dev.get("nictype")
        if nictype is None and "network" not in dev:
            raise BadRequest(f"Invalid device {name!r}: nic needs 'nictype' or 'network'")
        if nictype is not None and nictype not in NIC_TYPES:
            raise BadRequest(f"Invalid device {name!r}: unknown nictype {nictype!r}")
        hw = dev.get("hwaddr")
        if hw and not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", hw):
            raise BadRequest(f"Invalid device {name!r}: bad hwaddr {hw!r}")
        if dev.get("mtu") and not dev["mtu"].isdigit():
            raise BadRequest(f"Invalid device {name!r}: mtu must be an integer")
        for key in ("name", "host_name", "parent", "network"):
            if dev.get(key) and not is_interface_name(dev[key]):
                raise BadRequest(f"Invalid device {name!r}: {key} {dev[key]!r} is not a valid "
                                 "interface name (1-15 characters, no '/', ':' or whitespace)")
        if dev.get("mode") and dev["mode"] not in ("bridge", "vepa", "private", "passthru",
                                                   "l2", "l3s"):
            raise BadRequest(f"Invalid device {name!r}: unknown mode {dev['mode']!r}")
        if dev.get("ipv4.address"):
            try:
                ipaddress.IPv4Address(dev["ipv4.address"])
            except ValueError:
                raise BadRequest(f"Invalid device {name!r}: ipv4.address "
                                 f"{dev['ipv4.address']!r} is not an IPv4 address")
    elif dtype in ("unix-char", "unix-block"):
        if "source" not in dev and "path" not in dev:
            raise BadRequest(f"Invalid device {name!r}: needs 'source' or 'path'")
        for key in ("source", "path"):
            if key in dev and not dev[key].startswith("/"):
                raise BadRequest(f"Invalid device {name!r}: {key!r} must be absolute")
        for key in ("major", "minor", "uid", "gid"):
            if dev.get(key) and not dev[key].isdigit():
                raise BadRequest(f"Invalid device {name!r}: {key} must be an integer")
        if dev.get("mode") and not re.fullmatch(r"0?[0-7]{3,4}", dev["mode"]):
            raise BadRequest(f"Invalid device {name!r}: mode must be octal")


_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")


def validate_name(name: object, what: str = "instance") -> str:
    """Instance names are hostnames: letters, digits, hyphens; no leading digit/hyphen."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith("-"):
        raise BadRequest(f"Invalid {what} name {name!r}: use 1-63 letters, digits and "
                         "hyphens, starting with a letter and not ending with a hyphen")
    return name


def validate_profile_name(name: object) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") \
            or name != name.strip() or not name.isprintable() or len(name) > 255:
        raise BadRequest(f"Invalid profile name {name!r}")
    return name


def split_source(name: object) -> tuple[str, str | None]:
    """`inst` or `inst/snap` as used by copy and publish sources."""
    if not isinstance(name, str) or not name:
        raise BadRequest("The source needs the name of an instance (or instance/snapshot)")
    inst, _, snap = name.partition("/")
    return inst, (snap or None)
