"""The driver's privsep context starts the way a deployer wires it: nova-compute
runs ``nova-rootwrap <rootwrap.conf> privsep-helper ...`` with this project's
filter file (etc/nova/rootwrap.d/nova-lxd-py.filters), and the daemon keeps
CAP_NET_ADMIN and nothing else. A real daemon, no in-process shortcut."""
from __future__ import annotations

import os
import sys
import tempfile
import time

import pytest
from oslo_config import cfg

from nova_lxd_py import privsep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
FILTERS = os.path.join(REPO, "etc", "nova", "rootwrap.d")
BIN = os.path.dirname(sys.executable)
CAP_NET_ADMIN = 12

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="rootwrap needs root")


@pytest.fixture
def helper_command(tmp_path, monkeypatch):
    conf = tmp_path / "rootwrap.conf"
    conf.write_text(f"[DEFAULT]\nfilters_path={FILTERS}\n"
                    f"exec_dirs={BIN},/usr/sbin,/usr/bin,/sbin,/bin\nuse_syslog=False\n")
    # The filters only admit config files under /etc, as nova's do.
    fd, nova_conf = tempfile.mkstemp(prefix="nlx-privsep-test-", suffix=".conf", dir="/etc")
    os.close(fd)
    # ... and a socket under /tmp (oslo.privsep makes it with tempfile).
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    command = f"{BIN}/nova-rootwrap {conf} privsep-helper --config-file {nova_conf}"
    cfg.CONF.set_override("helper_command", command, group=privsep.net_pctxt.cfg_section)
    yield command
    privsep.net_pctxt.stop()
    cfg.CONF.clear_override("helper_command", group=privsep.net_pctxt.cfg_section)
    os.unlink(nova_conf)


def _daemons() -> dict[int, str]:
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "privsep-helper" in cmdline and "nova_lxd_py.privsep.net_pctxt" in cmdline \
                and "nova-rootwrap" not in cmdline:
            found[int(pid)] = cmdline
    return found


def _effective_caps(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


def test_context_starts_through_rootwrap_with_net_admin_only(helper_command):
    before = set(_daemons())
    assert privsep.link_exists("lo") is True  # runs in the daemon
    assert privsep.link_exists("nlx-no-such-link") is False
    started = {pid: cmd for pid, cmd in _daemons().items() if pid not in before}
    assert len(started) == 1, started
    [(pid, cmdline)] = started.items()
    assert "--privsep_sock_path /tmp/" in cmdline
    assert _effective_caps(pid) == 1 << CAP_NET_ADMIN
    privsep.net_pctxt.stop()
    deadline = time.monotonic() + 10
    while pid in _daemons() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in _daemons(), "the daemon outlived its client"
