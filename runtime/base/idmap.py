"""User-namespace id maps for unprivileged containers, from /etc/subuid and /etc/subgid.

Default containers share one map (the whole range given to root, as LXD does), so
they can share one shifted copy of each image. Isolated containers get a range of
their own, allocated above everything else that is in use.
"""
import json
import os
from dataclasses import dataclass

DEFAULT_RANGE = (1000000, 1000000000)
ISOLATED_SIZE = 65536


@dataclass(frozen=True)
class IdMap:
    base: int       # host id that container id 0 maps to (0 = privileged, no map)
    size: int

    @property
    def privileged(self) -> bool:
        return self.base == 0

    def lxc_lines(self) -> list[str]:
        if self.privileged:
            return []
        return [f"lxc.idmap = u 0 {self.base} {self.size}",
                f"lxc.idmap = g 0 {self.base} {self.size}"]

    def to_host(self, cid: int) -> int:
        if self.privileged:
            return cid
        if not 0 <= cid < self.size:
            raise ValueError(f"id {cid} is outside the container's map (0-{self.size - 1})")
        return self.base + cid

    def to_container(self, hid: int) -> int:
        if self.privileged:
            return hid
        if self.base <= hid < self.base + self.size:
            return hid - self.base
        return 65534  # overflow id: what the container sees for unmapped owners

    def encode(self) -> str:
        return f"{self.base}:{self.size}"

    def lxd_json(self) -> str:
        """The map as LXD writes `volatile.last_state.idmap` (a JSON IdmapSet).

        Clients copy an instance's config to the other side of a move (`lxc move`,
        pylxd's migrate()), and LXD parses this key as JSON there.
        """
        if self.privileged:
            return "[]"
        return json.dumps([{"Isuid": uid, "Isgid": not uid, "Hostid": self.base, "Nsid": 0,
                            "Maprange": self.size} for uid in (True, False)],
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "IdMap":
        """Ours ("base:size") or LXD's JSON form (one range from 0 for uids and gids)."""
        if text.lstrip().startswith("["):
            return cls._from_lxd_json(text)
        base, size = text.split(":")
        return cls(int(base), int(size))

    @classmethod
    def _from_lxd_json(cls, text: str) -> "IdMap":
        try:
            entries = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"invalid id map {text!r}: {exc}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"invalid id map {text!r}")
        if not entries:
            return PRIVILEGED
        uid = [(e.get("Nsid"), e.get("Hostid"), e.get("Maprange"))
               for e in entries if e.get("Isuid")]
        gid = [(e.get("Nsid"), e.get("Hostid"), e.get("Maprange"))
               for e in entries if e.get("Isgid")]
        if len(uid) != 1 or uid != gid or uid[0][0] != 0 or \
                not all(isinstance(v, int) and v >= 0 for v in uid[0]):
            raise ValueError(f"id map {text!r} is not one range from 0 for uids and gids")
        return cls(uid[0][1], uid[0][2])


PRIVILEGED = IdMap(0, 0)


def _read_range(path: str, user: str = "root") -> tuple[int, int] | None:
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, str(os.getuid())):
                    return int(parts[1]), int(parts[2])
    except FileNotFoundError:
        return None
    return None


def ensure_ranges(subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> tuple[int, int]:
    """The root range usable by containers; written to both files when missing."""
    ranges = []
    for path in (subuid, subgid):
        found = _read_range(path)
        if found is None:
            with open(path, "a") as f:
                f.write(f"root:{DEFAULT_RANGE[0]}:{DEFAULT_RANGE[1]}\n")
            found = DEFAULT_RANGE
        ranges.append(found)
    base = max(ranges[0][0], ranges[1][0])
    end = min(sum(ranges[0]), sum(ranges[1]))
    return base, end - base


def default_map(host_range: tuple[int, int]) -> IdMap:
    return IdMap(host_range[0], host_range[1])


def allocate_isolated(host_range: tuple[int, int], used: list[IdMap],
                      size: int = ISOLATED_SIZE) -> IdMap:
    """A fresh range above 65536 that overlaps no other isolated container's."""
    start, length = host_range
    candidate = start + ISOLATED_SIZE
    for m in sorted((m for m in used if not m.privileged and m.size <= length // 2),
                    key=lambda m: m.base):
        if m.base >= candidate + size:
            break
        candidate = max(candidate, m.base + m.size)
    if candidate + size > start + length:
        raise ValueError("no free id range left for an isolated container")
    return IdMap(candidate, size)
