"""The CLI's list output as lxc writes it: RFC 4180 csv, compact, -c columns."""
import csv
import io

import pytest

from runtime.cli import columns, output

INSTANCES = [
    {"name": "c1", "status": "Running", "type": "container", "ephemeral": False,
     "architecture": "x86_64", "profiles": ["default", "web, tls"], "snapshots": [{}],
     "config": {"user.role": 'say "hi", then'}, "expanded_config": {
         "user.role": 'say "hi", then', "limits.memory": "128MiB"},
     "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "default"},
                          "eth0": {"type": "nic", "hwaddr": "00:16:3e:00:00:01"}},
     "state": {"pid": 42, "memory": {"usage": 64 * 1024 * 1024},
               "network": {"eth0": {"addresses": [
                   {"family": "inet", "address": "10.0.0.2", "scope": "global"},
                   {"family": "inet", "address": "10.0.0.3", "scope": "global"},
                   {"family": "inet6", "address": "fd00::2", "scope": "global"}]},
                   "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1",
                                         "scope": "local"}]}}}},
    {"name": "c2", "status": "Stopped", "type": "container", "ephemeral": True,
     "snapshots": [], "state": {}},
]


def _render(spec, fmt):
    rows, cols = columns.rows(INSTANCES, spec)
    return output.render(rows, cols, fmt)


def test_csv_is_rfc4180_not_python_reprs():
    text = _render("ns4P,user.role", "csv")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["c1", "RUNNING", "10.0.0.2 (eth0)\n10.0.0.3 (eth0)",
                         "default\nweb, tls", 'say "hi", then']
    assert parsed[1] == ["c2", "STOPPED", "", "", ""]
    assert "[" not in text and "'" not in text


def test_default_columns_match_lxc():
    assert [h for h, _get in columns.parse(None)] == [
        "NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]
    assert _render(None, "csv").splitlines()[-1] == "c2,STOPPED,,,CONTAINER (EPHEMERAL),0"


def test_shorthands_and_custom_columns():
    rows, cols = columns.rows(INSTANCES, "npmMb,config:limits.memory:MEM,devices:eth0.hwaddr")
    assert [h for h, _k in cols] == ["NAME", "PID", "MEMORY USAGE", "MEMORY USAGE%",
                                     "STORAGE POOL", "MEM", "ETH0.HWADDR"]
    assert list(rows[0].values()) == ["c1", 42, "64.00MiB", "50%", "default", "128MiB",
                                      "00:16:3e:00:00:01"]


@pytest.mark.parametrize("spec", ["nz", "n,,s", "devices:eth0", "config:a:b:c:d"])
def test_bad_columns_are_refused(spec):
    with pytest.raises(columns.ColumnError):
        columns.parse(spec)


def test_compact_has_no_borders():
    lines = _render("ns", "compact").splitlines()
    assert lines[0].split() == ["NAME", "STATE"]
    assert lines[1].split() == ["c1", "RUNNING"]
    assert not any(c in "".join(lines) for c in "|+")
    assert _render("ns", "table").startswith("+")
