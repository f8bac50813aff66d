"""An LXD migration peer's header is hostile input: the protobuf offer and the JSON
index header go through the same checks as a native header (native.check_header),
and every malformed or malicious field is a clear 400, never a TypeError (a 500)
nor something half-made."""
from __future__ import annotations

import pytest

from runtime.errors import BadRequest
from runtime.base.idmap import IdMap
from runtime.migration import lxd_protocol as proto
from runtime.migration import native
from runtime.migration.lxd_peer import native_header


def _offer(snapshots=(), idmap=IdMap(1000000, 1000000000)):
    """An offer as LXD 5.0 sends it, serialised and parsed back like on the wire."""
    hdr = proto.offer(idmap, [{"name": n, "architecture": "x86_64", "config": {},
                               "created_at": 1700000000} for n in snapshots])
    return proto.parse(proto.MigrationHeader, hdr.SerializeToString())


def _info(container=None, profiles=None, snapshots=None) -> dict:
    config = {"Container": container if container is not None else {
        "name": "c1", "architecture": "x86_64", "config": {"limits.cpu": "1"},
        "devices": {}, "profiles": ["default"], "ephemeral": False, "description": ""}}
    if profiles is not None:
        config["Profiles"] = profiles
    if snapshots is not None:
        config["Snapshots"] = snapshots
    return {"config": config}


def _checked(offer, info, src_map=IdMap(1000000, 1000000000)) -> dict:
    return native.check_header(native_header(offer, info, src_map))


def test_a_well_formed_lxd_header_passes():
    header = _checked(_offer(["s0", "s1"]), _info(
        profiles=[{"name": "default", "config": {}, "devices": {}, "description": "d"}],
        snapshots=[{"name": "s0", "description": "first"}]))
    assert [s["name"] for s in header["snapshots"]] == ["s0", "s1"]
    assert header["snapshots"][0]["description"] == "first"
    assert header["snapshots"][0]["architecture"] == "x86_64"
    assert header["profiles"]["default"]["description"] == "d"
    assert header["instance"]["config"] == {"limits.cpu": "1"}


def _with_snapshot(**fields):
    offer = _offer(["s0"])
    for key, value in fields.items():
        if key == "localConfig":
            offer.snapshots[0].localConfig.add(key=value[0], value=value[1])
        elif key == "localDevices":
            dev = offer.snapshots[0].localDevices.add(name=value[0])
            for k, v in value[1].items():
                dev.config.add(key=k, value=v)
        else:
            setattr(offer.snapshots[0], key, value)
    if "name" in fields:
        offer.snapshotNames[0] = fields["name"]
    return offer


@pytest.mark.parametrize("offer", [
    _with_snapshot(name="../../etc"),                  # a path as a snapshot name
    _with_snapshot(name="a/b"),
    _with_snapshot(name=""),
    _with_snapshot(name="x\ny"),
    _with_snapshot(architecture=4242),                 # unknown architecture id
    _with_snapshot(creation_date=2**62),               # absurd time
    _with_snapshot(localConfig=("raw.lxc\n", "x")),    # a key with a newline
    _with_snapshot(localConfig=("no.such.key", "x")),  # unknown config key
    _with_snapshot(localConfig=("limits.cpu", "a\nlxc.hook.pre-start=/bin/x")),
    _with_snapshot(localDevices=("../d", {"type": "disk", "path": "/x", "source": "/"})),
    _with_snapshot(localDevices=("d", {"type": "bogus"})),
    _with_snapshot(localDevices=("d", {"type": "disk", "path": "/m",
                                       "source": "/etc\nlxc.mount.entry"})),
], ids=["dotdot-name", "slash-name", "empty-name", "newline-name", "bad-arch", "bad-time",
        "newline-key", "unknown-key", "injected-value", "bad-device-name",
        "bad-device-type", "injected-device-path"])
def test_malicious_snapshot_records_are_refused(offer):
    with pytest.raises(BadRequest):
        _checked(offer, _info())


def test_snapshot_names_must_match_their_records():
    offer = _offer(["s0", "s1"])
    offer.snapshotNames[1] = "other"
    with pytest.raises(proto.ProtocolError, match="record of"):
        _checked(offer, _info())
    offer = _offer(["s0"])
    offer.snapshotNames.append("s1")       # a name without a record
    with pytest.raises(proto.ProtocolError):
        _checked(offer, _info())


def test_duplicate_and_too_many_snapshots_are_refused():
    with pytest.raises(BadRequest, match="twice"):
        _checked(_offer(["s0", "s0"]), _info())
    offer = _offer()
    for i in range(native.MAX_SNAPSHOTS + 1):
        offer.snapshotNames.append(f"s{i}")
        offer.snapshots.add(name=f"s{i}", ephemeral=False, architecture=2, stateful=False)
    with pytest.raises(BadRequest, match="more than"):
        _checked(offer, _info())


@pytest.mark.parametrize("container", [
    "not an object", ["a"],
    {"config": {"raw.lxc": "lxc.mount.entry = / host none bind\x00"}, "devices": {}},
    {"config": "x"},
    {"devices": {"eth0": {"type": "nic", "nictype": "bridged",
                          "parent": "br0\nlxc.hook.start=/x"}}},
    {"devices": {"root": "not a device"}},
    {"profiles": [{"name": "x"}]},                 # unhashable profile name
    {"profiles": "default"},
    {"profiles": ["../p"]},
    {"architecture": ["x86_64"]},
    {"ephemeral": "yes"},
], ids=["string", "list", "raw-lxc-mount", "config-string", "injected-parent",
        "device-string", "dict-profile", "profiles-string", "dotdot-profile",
        "list-arch", "string-ephemeral"])
def test_malicious_instance_records_are_refused(container):
    with pytest.raises(BadRequest):
        _checked(_offer(), _info(container=container))


@pytest.mark.parametrize("profiles", [
    "nope", [1, 2],
    [{"name": "default", "config": {"security.privileged": "maybe"}}],
    [{"name": "default", "devices": {"d": {"type": "unix-char", "path": "/dev/x",
                                           "major": "1\nx"}}}],
    [{"name": "default", "config": "x"}],
], ids=["string", "ints", "bad-bool", "injected-major", "config-string"])
def test_malicious_profiles_are_refused(profiles):
    with pytest.raises(BadRequest):
        _checked(_offer(), _info(profiles=profiles))


def test_profiles_the_instance_does_not_use_are_ignored():
    header = _checked(_offer(), _info(profiles=[
        {"name": "unused", "config": {"raw.lxc": "x"}}, {"name": 7},
        {"name": ["default"]}]))
    assert header["profiles"] == {}


@pytest.mark.parametrize("entries", [
    [dict(isuid=True, isgid=False, hostid=1000, nsid=0, maprange=0),
     dict(isuid=False, isgid=True, hostid=1000, nsid=0, maprange=0)],      # empty range
    [dict(isuid=True, isgid=False, hostid=-5, nsid=0, maprange=10),
     dict(isuid=False, isgid=True, hostid=-5, nsid=0, maprange=10)],       # negative
    [dict(isuid=True, isgid=False, hostid=1000, nsid=0, maprange=65536),
     dict(isuid=False, isgid=True, hostid=2000, nsid=0, maprange=65536)],  # uid != gid
    [dict(isuid=True, isgid=True, hostid=1000, nsid=5, maprange=65536)],   # not from 0
    [dict(isuid=True, isgid=True, hostid=1000, nsid=0, maprange=10),
     dict(isuid=True, isgid=True, hostid=5000, nsid=10, maprange=10)],     # raw.idmap holes
], ids=["empty", "negative", "uid-gid-differ", "not-from-zero", "two-ranges"])
def test_malicious_id_maps_are_refused(entries):
    offer = _offer()
    del offer.idmap[:]
    for e in entries:
        offer.idmap.add(**e)
    with pytest.raises(proto.ProtocolError):
        proto.idmap_from(offer.idmap)


def test_id_map_beyond_32_bits_is_refused():
    with pytest.raises(BadRequest, match="id map"):
        _checked(_offer(), _info(), IdMap(2**31 + 5, 2**31))


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x08\x09", b"\x0a\x05abc"],
                         ids=["garbage", "bad-enum", "truncated"])
def test_malformed_protobuf_is_a_protocol_error(data):
    with pytest.raises(proto.ProtocolError):
        proto.parse(proto.MigrationHeader, data)


def test_live_and_block_offers_are_refused_with_reason():
    offer = _offer()
    offer.criu = proto.CRIU_RSYNC
    assert "CRIU" in proto.refusal(offer)
    offer = _offer()
    offer.fs = proto.FS_BLOCK_AND_RSYNC
    assert "virtual machines" in proto.refusal(offer)


def test_id_map_in_lxd_json_form_round_trips():
    """The API shows volatile.last_state.idmap as LXD does (clients carry it to LXD,
    which parses it as JSON); both forms decode to the same map."""
    from runtime.instances.model import lxd_volatile
    m = IdMap(1000000, 1000000000)
    shown = lxd_volatile({"volatile.last_state.idmap": m.encode(), "x": "y"})
    assert shown["x"] == "y" and shown["volatile.last_state.idmap"].startswith("[")
    assert IdMap.decode(shown["volatile.last_state.idmap"]) == m
    assert IdMap.decode("[]").privileged
    for bad in ('[{"Isuid":true,"Isgid":true,"Hostid":5,"Nsid":3,"Maprange":9}]', "[1]",
                '[{"Isuid":true,"Isgid":false,"Hostid":5,"Nsid":0,"Maprange":9}]', "[oops"):
        with pytest.raises(ValueError):
            IdMap.decode(bad)
