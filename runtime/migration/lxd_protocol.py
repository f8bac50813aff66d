"""LXD's migration protocol (LXD 5.0): its protobuf messages and what they mean.

Source read (not copied): LXD 5.0.2's `lxd/migration/migrate.proto` (field
numbers and types), `lxd/migrate.go` and `lxd/migrate_instance.go` (who sends
what when), `lxd/migration/utils.go` (offer/response feature matching, the
index header), `lxd/storage/drivers/generic_vfs.go` and `lxd/rsync/rsync.go`
(rsync over the `fs` websocket). The messages below are written here from those
field numbers and types; the wire format is proto2.

The conversation, for a stopped container on a directory-backed pool:
  control, source -> target: MigrationHeader, the offer (fs type RSYNC with
      rsync features, the id map the files on disk are owned by, snapshot names
      and records, criu unset for a stopped instance, index header version 1)
  control, target -> source: MigrationHeader, the response (the features both
      sides have, the index header version both know)
  fs, with index header version >= 1: source sends a JSON `Info` (the backup
      config: instance, snapshots, volume) ended by an empty text frame, the
      target answers a JSON `InfoResponse` the same way
  fs: one rsync run per snapshot (oldest first) then one for the instance, each
      direction of each run ended by an empty text frame
  control, target -> source: MigrationControl {success, message}
Either side may send MigrationControl {success: false, message} on control to
abort. Live migration (criu CRIU_RSYNC: a `criu` websocket with memory dumps)
and block volumes (virtual machines) are refused: see `refusal()`.
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from runtime import arch
from runtime.errors import BadRequest
from runtime.base.idmap import IdMap

INDEX_HEADER_VERSION = 1
# MigrationFSType and CRIUType enum values.
FS_RSYNC, FS_BTRFS, FS_ZFS, FS_RBD, FS_BLOCK_AND_RSYNC = 0, 1, 2, 3, 4
CRIU_RSYNC, CRIU_PHAUL, CRIU_NONE = 0, 1, 2
FS_NAMES = {FS_RSYNC: "RSYNC", FS_BTRFS: "BTRFS", FS_ZFS: "ZFS", FS_RBD: "RBD",
            FS_BLOCK_AND_RSYNC: "BLOCK_AND_RSYNC"}
# Go's zero time.Time as Unix seconds: what LXD sends for "no expiry".
GO_ZERO_TIME = -62135596800
# The rsync features this runtime takes part in. "compress" is left out: on the
# links migrations use, zlib costs more CPU than it saves, and LXD honours the
# target's answer (bidirectional negotiation).
RSYNC_FEATURES = ("xattrs", "delete", "bidirectional")

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REQ, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REQUIRED, _F.LABEL_REPEATED
_BOOL, _I32, _I64, _U32 = _F.TYPE_BOOL, _F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32
_STR, _MSG, _ENUM = _F.TYPE_STRING, _F.TYPE_MESSAGE, _F.TYPE_ENUM
_PKG = "novalxd.lxdmigration"

# name: [(field, number, label, type, message or enum type name)]
_MESSAGES: dict[str, list[tuple]] = {
    "IDMapType": [("isuid", 1, _REQ, _BOOL), ("isgid", 2, _REQ, _BOOL),
                  ("hostid", 3, _REQ, _I32), ("nsid", 4, _REQ, _I32),
                  ("maprange", 5, _REQ, _I32)],
    "Config": [("key", 1, _REQ, _STR), ("value", 2, _REQ, _STR)],
    "Device": [("name", 1, _REQ, _STR), ("config", 2, _REP, _MSG, "Config")],
    "Snapshot": [("name", 1, _REQ, _STR), ("localConfig", 2, _REP, _MSG, "Config"),
                 ("profiles", 3, _REP, _STR), ("ephemeral", 4, _REQ, _BOOL),
                 ("localDevices", 5, _REP, _MSG, "Device"),
                 ("architecture", 6, _REQ, _I32), ("stateful", 7, _REQ, _BOOL),
                 ("creation_date", 8, _OPT, _I64), ("last_used_date", 9, _OPT, _I64),
                 ("expiry_date", 10, _OPT, _I64)],
    "rsyncFeatures": [("xattrs", 1, _OPT, _BOOL), ("delete", 2, _OPT, _BOOL),
                      ("compress", 3, _OPT, _BOOL), ("bidirectional", 4, _OPT, _BOOL)],
    "zfsFeatures": [("compress", 1, _OPT, _BOOL), ("migration_header", 2, _OPT, _BOOL)],
    "btrfsFeatures": [("migration_header", 1, _OPT, _BOOL),
                      ("header_subvolumes", 2, _OPT, _BOOL),
                      ("header_subvolume_uuids", 3, _OPT, _BOOL)],
    "MigrationHeader": [("fs", 1, _REQ, _ENUM, "MigrationFSType"),
                        ("criu", 2, _OPT, _ENUM, "CRIUType"),
                        ("idmap", 3, _REP, _MSG, "IDMapType"),
                        ("snapshotNames", 4, _REP, _STR),
                        ("snapshots", 5, _REP, _MSG, "Snapshot"),
                        ("predump", 7, _OPT, _BOOL),
                        ("rsyncFeatures", 8, _OPT, _MSG, "rsyncFeatures"),
                        ("refresh", 9, _OPT, _BOOL),
                        ("zfsFeatures", 10, _OPT, _MSG, "zfsFeatures"),
                        ("volumeSize", 11, _OPT, _I64),
                        ("btrfsFeatures", 12, _OPT, _MSG, "btrfsFeatures"),
                        ("indexHeaderVersion", 13, _OPT, _U32)],
    "MigrationControl": [("success", 1, _REQ, _BOOL), ("message", 2, _OPT, _STR)],
    "MigrationSync": [("finalPreDump", 1, _REQ, _BOOL)],
}
_ENUMS = {"MigrationFSType": FS_NAMES,
          "CRIUType": {CRIU_RSYNC: "CRIU_RSYNC", CRIU_PHAUL: "PHAUL", CRIU_NONE: "NONE"}}


def _build() -> dict[str, type]:
    fdp = descriptor_pb2.FileDescriptorProto(name="novalxd_lxd_migration.proto",
                                             package=_PKG, syntax="proto2")
    for name, values in _ENUMS.items():
        enum = fdp.enum_type.add(name=name)
        for number, label in values.items():
            enum.value.add(name=label, number=number)
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for field in fields:
            f = msg.field.add(name=field[0], number=field[1], label=field[2], type=field[3])
            if len(field) > 4:
                f.type_name = f".{_PKG}.{field[4]}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.{name}"))
            for name in _MESSAGES}


_CLASSES = _build()
MigrationHeader = _CLASSES["MigrationHeader"]
MigrationControl = _CLASSES["MigrationControl"]
Snapshot = _CLASSES["Snapshot"]


class ProtocolError(BadRequest):
    """The LXD peer sent something this runtime cannot take part in."""


def parse(cls: type, data: bytes):
    """A message from the peer; a malformed one is a clear error, not a traceback."""
    msg = cls()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - DecodeError and friends
        raise ProtocolError(f"Malformed {cls.__name__} from the LXD peer: {exc}")
    if not msg.IsInitialized():
        raise ProtocolError(f"Malformed {cls.__name__} from the LXD peer: missing "
                            f"{', '.join(msg.FindInitializationErrors())}")
    return msg


# Offer and response ---------------------------------------------------------------
def rsync_features(header) -> list[str]:
    """The rsync features a header names; without `bidirectional` LXD assumes 3.7's set."""
    if not header.HasField("rsyncFeatures"):
        return ["xattrs", "delete", "compress"]
    rf = header.rsyncFeatures
    named = [n for n in ("xattrs", "delete", "compress", "bidirectional") if getattr(rf, n)]
    return named if "bidirectional" in named else ["xattrs", "delete", "compress"]


def set_rsync_features(header, features) -> None:
    for name in ("xattrs", "delete", "compress", "bidirectional"):
        setattr(header.rsyncFeatures, name, name in features)


def refusal(offer, live_allowed: bool = False) -> str | None:
    """Why this runtime cannot receive what the offer describes (None: it can)."""
    if offer.fs not in (FS_RSYNC, FS_BTRFS, FS_ZFS):
        return (f"the source offers only {FS_NAMES.get(offer.fs, offer.fs)} transfers "
                "(block volumes: virtual machines), this runtime runs containers")
    if offer.HasField("criu") and offer.criu == CRIU_RSYNC and not live_allowed:
        return ("the source asks for live migration (CRIU): CRIU does not work on this "
                "host; stop the instance first or move it stateless")
    if offer.HasField("criu") and offer.criu == CRIU_PHAUL:
        return "the source asks for P.Haul live migration, which this runtime does not speak"
    if offer.refresh:
        return "refreshing an existing instance from an LXD source is not supported"
    return None


def response_for(offer, features=RSYNC_FEATURES):
    """The target's answer: rsync with the features both sides have, index header v1."""
    resp = MigrationHeader()
    resp.fs = FS_RSYNC
    theirs = rsync_features(offer)
    set_rsync_features(resp, [f for f in features if f in theirs or f == "bidirectional"])
    resp.indexHeaderVersion = min(offer.indexHeaderVersion, INDEX_HEADER_VERSION)
    resp.snapshotNames.extend(offer.snapshotNames)
    resp.snapshots.extend(offer.snapshots)
    resp.refresh = False
    resp.predump = False
    if offer.HasField("criu") and offer.criu == CRIU_NONE:
        resp.criu = CRIU_NONE
    return resp


def offer(idmap: IdMap, snapshots: list, running: bool = False):
    """The source's offer for an instance with these snapshot records (oldest first)."""
    hdr = MigrationHeader()
    hdr.fs = FS_RSYNC
    set_rsync_features(hdr, RSYNC_FEATURES)
    hdr.indexHeaderVersion = INDEX_HEADER_VERSION
    hdr.idmap.extend(idmap_entries(idmap))
    hdr.predump = False
    if running:
        hdr.criu = CRIU_NONE
    for snap in snapshots:
        hdr.snapshotNames.append(snap["name"])
        hdr.snapshots.append(snapshot_message(snap))
    return hdr


def control(success: bool, message: str = ""):
    msg = MigrationControl()
    msg.success = success
    msg.message = message
    return msg


# Id maps ------------------------------------------------------------------------
def idmap_entries(idmap: IdMap) -> list:
    """Our map as LXD's entries (one uid and one gid range); none for privileged."""
    if idmap.privileged:
        return []
    cls = _CLASSES["IDMapType"]
    return [cls(isuid=True, isgid=False, hostid=idmap.base, nsid=0, maprange=idmap.size),
            cls(isuid=False, isgid=True, hostid=idmap.base, nsid=0, maprange=idmap.size)]


def idmap_from(entries) -> IdMap:
    """The map files on the source's disk are owned by, as one of ours.

    No entries: the files carry container ids (a privileged container, or an
    idmapped-mount storage that keeps them unshifted). One range starting at
    container id 0, the same for uids and gids, is what LXD gives every
    unprivileged container (isolated ones too). Anything else (raw.idmap holes)
    is refused rather than shifted wrongly.
    """
    if not entries:
        return IdMap(0, 0)
    uid, gid = [], []
    for e in entries:
        if e.maprange <= 0 or e.hostid < 0 or e.nsid < 0:
            raise ProtocolError(f"Invalid id map entry from the LXD peer: {e}")
        if e.isuid:
            uid.append((e.nsid, e.hostid, e.maprange))
        if e.isgid:
            gid.append((e.nsid, e.hostid, e.maprange))
    if len(uid) != 1 or uid != gid or uid[0][0] != 0:
        raise ProtocolError(
            "The LXD source's id map is not one range for both uids and gids "
            f"(uids {uid}, gids {gid}; raw.idmap?): this runtime can't shift it")
    return IdMap(uid[0][1], uid[0][2])


# Snapshots -----------------------------------------------------------------------
def _pairs(cls_name: str, mapping: dict) -> list:
    cls = _CLASSES[cls_name]
    return [cls(key=str(k), value=str(v)) for k, v in sorted(mapping.items())]


def snapshot_message(snap: dict):
    """One of our snapshot rows as LXD's Snapshot record."""
    msg = Snapshot()
    msg.name = snap["name"]
    msg.localConfig.extend(_pairs("Config", snap.get("config") or {}))
    msg.profiles.extend(snap.get("profiles") or [])
    msg.ephemeral = bool(snap.get("ephemeral"))
    for name, dev in sorted((snap.get("devices") or {}).items()):
        msg.localDevices.add(name=name).config.extend(_pairs("Config", dev))
    msg.architecture = arch.lxd_id(snap.get("architecture") or arch.host())
    msg.stateful = bool(snap.get("stateful"))
    created = int(snap.get("created_at") or 0)
    msg.creation_date = created
    msg.last_used_date = GO_ZERO_TIME
    expires = int(snap.get("expires_at") or 0)
    msg.expiry_date = expires if expires > 0 else GO_ZERO_TIME
    return msg


def snapshot_record(msg) -> dict:
    """LXD's Snapshot record as the fields of one of our snapshot rows (unchecked)."""
    created = msg.creation_date if msg.creation_date > 0 else 0
    expires = msg.expiry_date if msg.expiry_date > 0 else 0
    return {"name": msg.name, "created_at": float(created), "expires_at": float(expires),
            "stateful": msg.stateful, "ephemeral": msg.ephemeral, "description": "",
            "architecture": msg.architecture or None,
            "config": {c.key: c.value for c in msg.localConfig},
            "devices": {d.name: {c.key: c.value for c in d.config} for d in msg.localDevices},
            "profiles": list(msg.profiles)}
