"""Pure logic of the cloud launcher (no services started): the service table,
the supervisor configuration made from it, the services' configuration files,
the start stages and Tempest's feature flags."""
from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, REPO)

from cloud import config, inifile, layout, orchestrate, services, supervisor  # noqa: E402

NODES = orchestrate.computes(2)


def test_every_service_once_with_own_log():
    table = services.table(NODES)
    names = [s.name for s in table]
    assert len(names) == len(set(names))
    assert len({s.log for s in table}) == len(table)
    assert all(s.log.startswith(layout.path("logs")) for s in table)


def test_each_host_runs_its_services_in_its_namespace():
    table = {s.name: s for s in services.table(NODES)}
    for node in NODES:
        for name in (f"runtime-{node.short}", f"nova-compute-{node.short}",
                     f"neutron-ovs-agent-{node.short}", f"ovs-vswitchd-{node.short}",
                     f"ovsdb-server-{node.short}"):
            assert table[name].namespace == node.name, name
            assert table[name].command[:2] == [services.NS_EXEC, node.name]
    for name in ("neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"):
        assert table[name].namespace == layout.NETWORK_NODE.name
    # the control plane stays in the machine's namespace, on the management address
    assert table["keystone"].namespace is None
    assert f"{layout.MGMT_IP}:{layout.PORTS['keystone']}" in table["keystone"].argv


def test_stages_start_every_service_once():
    table = services.table(NODES)
    staged = [s.name for _, batch in orchestrate._stages(table, NODES) for s in batch]
    assert sorted(staged) == sorted(s.name for s in table)
    order = [stage for stage, _ in orchestrate._stages(table, NODES)]
    assert order.index("infra") < order.index("identity") < order.index("agents")


def test_many_hosts_start_in_waves_after_the_network_node():
    """Ten hosts' agents and computes at once overran their readiness timeouts
    on two cores: they start a few hosts at a time; two hosts stay one stage."""
    two = [stage for stage, _ in orchestrate._stages(services.table(NODES), NODES)]
    assert two == ["infra", "identity", "control", "agents"]
    nodes = orchestrate.computes(10)
    table = services.table(nodes)
    stages = orchestrate._stages(table, nodes)
    staged = [s.name for _, batch in stages for s in batch]
    assert sorted(staged) == sorted(s.name for s in table)
    waves = [[s.name for s in batch] for stage, batch in stages
             if stage == "agents" or stage.startswith("hosts ")]
    assert "neutron-dhcp-agent" in waves[0] and "nova-compute-host1" in waves[0]
    assert all(sum(n.startswith("nova-compute-") for n in w) <= orchestrate.HOST_WAVE
               for w in waves)
    assert "nova-compute-host10" in waves[-1] and "neutron-ovs-agent-host10" in waves[-1]


def test_readiness_lists_nova_services_once_for_every_check(monkeypatch):
    from types import SimpleNamespace

    from cloud import readiness
    calls = []

    class Compute:
        def services(self):
            calls.append(1)
            return [SimpleNamespace(binary="nova-compute", host="nlxc-host1", state="up")]

    monkeypatch.setattr(readiness, "admin", lambda: SimpleNamespace(compute=Compute()))
    readiness._listings.clear()
    checks = [readiness.nova_service("nova-compute", f"nlxc-host{i}") for i in (1, 2, 3)]
    results = [check() for check in checks]
    assert results[0] is None and "has not registered" in results[1]
    assert len(calls) == 1
    readiness._listings.clear()


def test_supervisor_programs_do_not_autostart_and_escape_percent():
    table = services.table(NODES)
    table[0].env["X"] = '50% "q"'
    text = supervisor.render(table)
    assert text.count("[program:") == len(table)
    assert "autostart = true" not in text
    assert 'X="50%% \\"q\\""' in text


def test_ini_render_and_merge():
    merged = inifile.merge({"a": {"x": 1, "y": [1, 2]}}, {"a": {"x": 2}, "b": {"z": True}})
    assert inifile.render(merged) == "[a]\nx = 2\ny = 1,2\n\n[b]\nz = True\n"


def test_service_configuration():
    node = NODES[0]
    conf = "/x/nova-compute.conf"
    compute = config.nova_compute(node, conf)
    assert compute["DEFAULT"]["compute_driver"] == "lxd_py.LXDDriver"
    assert compute["DEFAULT"]["host"] == node.name
    assert compute["lxd"]["endpoint"] == layout.runtime_socket(node)
    for section in ("nova_sys_admin", "vif_plug_ovs_privileged", "nova_lxd_py_privileged"):
        assert f"--config-file {conf}" in compute[section]["helper_command"]
    formats = config.glance()["image_format"]["disk_formats"].split(",")
    assert {"raw", "root-tar", "squashfs"} <= set(formats)
    agent = config.ovs_agent(node)
    assert agent["ovs"]["datapath_type"] == "netdev"
    assert agent["ovs"]["local_ip"] == node.tun_ip
    assert agent["ovs"]["bridge_mappings"] == ""
    assert config.ovs_agent(layout.NETWORK_NODE)["ovs"]["bridge_mappings"] == "public:br-ex"


def test_a_service_reads_its_config_files():
    table = {s.name: s for s in services.table(NODES)}
    compute = table["nova-compute-host1"]
    assert compute.reads(layout.etc("nova", "nova-compute-nlxc-host1.conf"))
    assert not compute.reads(layout.etc("nova", "nova-compute-nlxc-host2.conf"))
    assert table["nova-api"].reads(layout.etc("nova", "nova.conf"))
    assert table["glance-api"].reads(layout.etc("glance", "glance-api.conf"))


def test_tempest_flags_follow_the_matrix_and_hosts():
    from cloud import tempest

    two, one = tempest.feature_flags(2), tempest.feature_flags(1)
    assert two["snapshot"] == "True"
    assert one["resize"] is False and one["cold_migration"] is False
    assert two["live_migration"] == "False"


def test_systemd_units_from_the_same_table(tmp_path):
    from cloud import systemd

    table = services.table(NODES)
    paths = systemd.write(str(tmp_path), orchestrate._stages(table, NODES))
    assert len(paths) == len(table) + 1
    unit = (tmp_path / "nlxc-nova-compute-host1.service").read_text()
    assert f"ExecStart={services.NS_EXEC} nlxc-host1 " in unit
    assert "After=" in unit and "nlxc-runtime-host1.service" in unit
    assert "KillMode=process" in (tmp_path / "nlxc-runtime-host1.service").read_text()
    assert "After=" not in (tmp_path / "nlxc-mariadb.service").read_text()


def test_a_failed_service_names_itself_and_shows_its_log(tmp_path, monkeypatch):
    import pytest

    log = tmp_path / "nova-api.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "ImportError: no memcache\n")

    class Logged(services.Service):
        @property
        def log(self):
            return str(log)

    service = Logged("nova-api", ["x"], lambda: "not answering", "control", timeout=0)
    monkeypatch.setattr(supervisor, "states",
                        lambda: {"nova-api": {"statename": "BACKOFF"}})
    with pytest.raises(orchestrate.ServiceFailed) as failed:
        orchestrate._wait([service], lambda line: None)
    text = str(failed.value)
    assert text.startswith("nova-api did not become ready: its process is BACKOFF")
    assert "ImportError: no memcache" in text and "line 99" in text
    assert "line 50" not in text  # only the last lines
    # running but never ready: the readiness check's reason is given
    monkeypatch.setattr(supervisor, "states",
                        lambda: {"nova-api": {"statename": "RUNNING"}})
    with pytest.raises(orchestrate.ServiceFailed, match="not answering"):
        orchestrate._wait([service], lambda line: None)


def test_serial_consoles_through_the_proxy_to_each_compute():
    node = NODES[1]
    compute = config.nova_compute(node, "/x/nova-compute.conf")["serial_console"]
    assert compute["enabled"] is True
    assert compute["proxyclient_address"] == node.mgmt_ip  # the proxy reaches it there
    proxy = config.nova()["serial_console"]
    assert compute["base_url"] == proxy["base_url"] == (
        f"ws://{proxy['serialproxy_host']}:{proxy['serialproxy_port']}/")
    table = {s.name: s for s in services.table(NODES)}
    assert table["nova-serialproxy"].namespace is None
    assert table["nova-serialproxy"].reads(layout.etc("nova", "nova.conf"))


def test_dashboard_settings_and_service(monkeypatch, tmp_path):
    from cloud import horizon

    monkeypatch.setattr(layout, "STATE", str(tmp_path))
    text = horizon.settings()
    compile(text, "local_settings.py", "exec")  # valid Python
    assert f"OPENSTACK_KEYSTONE_URL = '{layout.url('keystone', '/v3')}'" in text
    assert "PyMemcacheCache" in text and config.MEMCACHE in text
    assert "X_FRAME_OPTIONS = \"SAMEORIGIN\"" in text  # the Console tab frames the console
    assert f"STATIC_ROOT = '{horizon.static_root()}'" in text
    assert horizon.static_root().startswith(layout.CACHE)  # kept across clouds
    assert str(tmp_path) in text  # the secret key lives with the cloud's state
    service = services.dashboard()
    assert service.env["PYTHONPATH"].split(":")[0] == horizon.settings_dir()
    assert service.reads(horizon.settings_file())  # restarted when settings change
    assert f"{layout.MGMT_IP}:{layout.PORTS['horizon']}" in service.argv
