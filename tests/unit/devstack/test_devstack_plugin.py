"""The devstack plugin: syntax, shellcheck, and its phases run against a stub
of devstack's function library, checking the files it writes (nova.conf,
glance-api.conf, tempest.conf, the runtime's systemd unit)."""
from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys

import pytest
from oslo_config import cfg

from nova_lxd_py import conf as lxd_conf
from nova_lxd_py import support_matrix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = [os.path.join(REPO, "devstack", name)
           for name in ("plugin.sh", "settings", "lib/hypervisor-lxd_py")]
STUB = os.path.join(HERE, "devstack_stub.sh")


@pytest.mark.parametrize("path", SCRIPTS + [STUB])
def test_bash_syntax(path):
    subprocess.run(["bash", "-n", path], check=True)


def test_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (bindep.txt lists it for tests)")
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS, STUB], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _ini(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str
    parser.read(path)
    return parser


def _run_devstack(tmp_path, **overrides) -> tuple[str, dict[str, str]]:
    """Source settings and run every phase like stack.sh/unstack.sh/clean.sh."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "nova.conf").write_text("[DEFAULT]\ndebug = True\n")
    (etc / "glance-api.conf").write_text("[image_format]\ndisk_formats = raw,qcow2\n")
    (etc / "tempest.conf").write_text("[compute]\n")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path),
        "STUB_DIR": HERE, "STUB_PYTHON": sys.executable, "STUB_LOG": str(tmp_path / "log"),
        "STUB_ROOT": str(tmp_path / "root"), "REPO": REPO,
        "DEST": str(tmp_path / "opt"), "DATA_DIR": str(tmp_path / "data"),
        "STACK_USER": "stack", "PYTHON": sys.executable,
        "NOVA_CONF": str(etc / "nova.conf"), "GLANCE_API_CONF": str(etc / "glance-api.conf"),
        "TEMPEST_CONFIG": str(etc / "tempest.conf"),
        "ENABLED_SERVICES": "n-api,n-cpu,g-api,tempest",
        "NOVA_LXD_PY_DIR": REPO,
        "NOVA_LXD_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    env.update(overrides)
    script = """
        set -eu -o pipefail
        source "$STUB_DIR/devstack_stub.sh"
        source "$REPO/devstack/settings"
        # what devstack's lib/nova does with VIRT_DRIVER
        source "$TOP_DIR/lib/nova_plugins/hypervisor-$VIRT_DRIVER"
        install_nova_hypervisor
        configure_nova_hypervisor
        for phase in pre-install install post-config extra test-config; do
            source "$REPO/devstack/plugin.sh" stack "$phase"
        done
        echo "VIRT_DRIVER=$VIRT_DRIVER" >> "$STUB_LOG"
        source "$REPO/devstack/plugin.sh" unstack
        source "$REPO/devstack/plugin.sh" clean
    """
    (tmp_path / "devstack" / "lib" / "nova_plugins").mkdir(parents=True)
    env["TOP_DIR"] = str(tmp_path / "devstack")
    # The install phase waits for the runtime's socket: be the runtime.
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(runtime_dir / "unix.socket"))
    try:
        result = subprocess.run(["bash", "-c", script], env=env, capture_output=True,
                                text=True, timeout=120)
    finally:
        listener.close()
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{log}"
    files = {p.name: p.read_text() for p in etc.iterdir()}
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "nova-lxd-runtime.service"
    if unit.exists():
        files["unit"] = unit.read_text()
    return log, files


def test_phases_write_nova_glance_and_tempest_config(tmp_path):
    log, files = _run_devstack(tmp_path)
    nova = _ini(str(tmp_path / "etc" / "nova.conf"))
    assert nova.get("DEFAULT", "compute_driver") == "lxd_py.LXDDriver"
    assert nova.get("DEFAULT", "debug") == "True"  # devstack's own settings kept
    assert nova.get("lxd", "endpoint") == str(tmp_path / "runtime" / "unix.socket")
    assert not nova.has_option("lxd", "pool")
    # ...and it parses with the driver's real [lxd] options.
    conf = cfg.ConfigOpts()
    lxd_conf.register_opts(conf)
    conf(["--config-file", str(tmp_path / "etc" / "nova.conf")], project="nova")
    assert conf.lxd.endpoint == str(tmp_path / "runtime" / "unix.socket")

    glance = _ini(str(tmp_path / "etc" / "glance-api.conf"))
    assert glance.get("image_format", "disk_formats") == "raw,qcow2,root-tar,squashfs"

    tempest = _ini(str(tmp_path / "etc" / "tempest.conf"))
    flags = {k: tempest.get("compute-feature-enabled", k)
             for k in tempest.options("compute-feature-enabled")}
    expected = {k: str(v) for k, v in support_matrix.tempest_flags().items()}
    expected.update(cold_migration="False")  # one node: nowhere to migrate (resize: in place)
    expected.update(serial_console="False")  # no n-sproxy service: nowhere to connect
    assert flags == expected
    assert tempest.get("validation", "run_validation") == "False"
    assert tempest.get("compute", "image_ref") == "0f0e0d0c-0b0a-4909-8807-060504030201"

    unit = files["unit"]
    assert "@" not in unit.replace("multi-user", "")
    assert f"ExecStart={os.path.dirname(sys.executable)}/nova-lxd-runtime" in unit
    assert f"Environment=LXD_DIR={tmp_path / 'runtime'}" in unit
    assert "chgrp stack" in unit and "KillMode=process" in unit

    assert f"install_bindep {REPO}/bindep.txt compute" in log
    assert "install_package lxc uidmap" in log
    installed = log.split("install_package lxc", 1)[1].splitlines()[0]
    for test_only in ("shellcheck", "gcc", "busybox-static", "lxd-client"):
        assert test_only not in installed  # a compute host gets no test tools
    assert f"setup_develop {REPO}" in log
    assert "sudo systemctl enable --now nova-lxd-runtime.service" in log
    assert "core.https_address" not in log  # one node: no peers to pull from
    assert "--disk-format raw" in log and "image create busybox-lxd" in log
    assert "VIRT_DRIVER=lxd_py" in log
    unstack = log.split("VIRT_DRIVER=lxd_py", 1)[1]
    assert "sudo systemctl stop nova-lxd-runtime.service" in unstack
    assert "sudo rm -f /etc/systemd/system/nova-lxd-runtime.service" in unstack
    assert "die" not in log


def test_existing_lxd_instead_of_the_runtime(tmp_path):
    log, files = _run_devstack(tmp_path, NOVA_LXD_USE_RUNTIME="False",
                               NOVA_LXD_ENDPOINT="/var/lib/lxd/unix.socket",
                               NOVA_LXD_POOL="default", NOVA_LXD_MULTINODE="True",
                               ENABLED_SERVICES="n-api,n-cpu,n-sproxy,g-api,tempest")
    nova = _ini(str(tmp_path / "etc" / "nova.conf"))
    assert nova.get("lxd", "endpoint") == "/var/lib/lxd/unix.socket"
    assert nova.get("lxd", "pool") == "default"
    assert "unit" not in files
    assert "systemctl" not in log
    tempest = _ini(str(tmp_path / "etc" / "tempest.conf"))
    assert tempest.get("compute-feature-enabled", "cold_migration") == str(
        support_matrix.tempest_flags()["cold_migration"])  # NOVA_LXD_MULTINODE=True
    assert tempest.get("compute-feature-enabled", "serial_console") == str(
        support_matrix.tempest_flags()["serial_console"])  # n-sproxy enabled



def test_systemd_unit_verifies(tmp_path):
    """The unit, filled in as the plugin does, passes systemd's own checks."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    with open(os.path.join(REPO, "devstack", "files", "nova-lxd-runtime.service")) as f:
        unit = (f.read().replace("@BIN_DIR@", os.path.dirname(sys.executable))
                .replace("@LXD_DIR@", str(tmp_path / "runtime")).replace("@GROUP@", "root"))
    path = tmp_path / "nova-lxd-runtime.service"
    path.write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "nova-lxd-runtime.service" in line]
    assert not problems, "\n".join(problems)
