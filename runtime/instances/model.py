"""The instance record and its expansion over profiles.

Profiles apply in order, then the instance's own config and devices on top
(a device of the same name replaces the profile's whole).
"""
import hashlib
import json
from dataclasses import dataclass, field

from runtime.base.timefmt import timestamp

STATUS_CODES = {"Running": 103, "Stopped": 102, "Frozen": 110, "Error": 112,
                "Starting": 106, "Stopping": 107, "Freezing": 109}
# Keys whose value only the daemon sets; clients may read but not write them.
WRITABLE = ("architecture", "config", "devices", "ephemeral", "profiles", "description")


def expand(profiles: list[dict], config: dict, devices: dict) -> tuple[dict, dict]:
    econfig: dict = {}
    edevices: dict = {}
    for profile in profiles:
        econfig.update(profile.get("config") or {})
        edevices.update(profile.get("devices") or {})
    econfig.update(config)
    edevices.update(devices)
    return econfig, edevices


def lxd_volatile(config: dict) -> dict:
    """config as the API shows it: `volatile.last_state.idmap` in LXD's JSON form
    (stored as ours, "base:size"), since clients carry it to LXD in a move."""
    value = config.get("volatile.last_state.idmap")
    if not value or value.lstrip().startswith("["):
        return config
    from runtime.base.idmap import IdMap
    try:
        return {**config, "volatile.last_state.idmap": IdMap.decode(value).lxd_json()}
    except ValueError:
        return config


def root_disk(devices: dict) -> tuple[str, dict] | None:
    for name, dev in sorted(devices.items()):
        if dev.get("type") == "disk" and dev.get("path") == "/":
            return name, dev
    return None


@dataclass
class Instance:
    id: int
    project: str
    name: str
    architecture: str
    config: dict
    devices: dict
    profiles: list
    ephemeral: bool = False
    stateful: bool = False
    description: str = ""
    created_at: float = 0.0
    last_used_at: float = 0.0
    pool: str = ""
    type: str = "container"
    expanded_config: dict = field(default_factory=dict)
    expanded_devices: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict, profile_rows: list[dict]) -> "Instance":
        inst = cls(id=row["id"], project=row["project"], name=row["name"],
                   architecture=row["architecture"], config=row["config"],
                   devices=row["devices"], profiles=row["profiles"],
                   ephemeral=bool(row["ephemeral"]), stateful=bool(row["stateful"]),
                   description=row["description"], created_at=row["created_at"],
                   last_used_at=row["last_used_at"], pool=row["pool"], type=row["type"])
        inst.expanded_config, inst.expanded_devices = expand(
            profile_rows, inst.config, inst.devices)
        return inst

    @property
    def url(self) -> str:
        suffix = "" if self.project == "default" else f"?project={self.project}"
        return f"/1.0/instances/{self.name}{suffix}"

    def render(self, status: str) -> dict:
        return {
            "architecture": self.architecture, "config": lxd_volatile(self.config),
            "devices": self.devices, "ephemeral": self.ephemeral,
            "profiles": self.profiles, "stateful": self.stateful,
            "description": self.description,
            "created_at": timestamp(self.created_at),
            "last_used_at": timestamp(self.last_used_at or 0),
            "expanded_config": lxd_volatile(self.expanded_config),
            "expanded_devices": self.expanded_devices,
            "name": self.name, "status": status, "status_code": STATUS_CODES[status],
            "location": "none", "type": self.type, "project": self.project,
        }

    def etag(self) -> str:
        data = {k: getattr(self, k) for k in WRITABLE}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
