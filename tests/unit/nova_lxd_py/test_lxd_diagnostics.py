"""Diagnostics from a runtime state document."""
import datetime

from nova.compute import power_state

from nova_lxd_py import diagnostics

STATE = {
    "status": "Running", "status_code": 103,
    "cpu": {"usage": 1_500_000_000},
    "memory": {"usage": 50 * 1024 * 1024},
    "disk": {"root": {"usage": 4096}},
    "network": {
        "lo": {"type": "loopback", "hwaddr": "", "counters": {"bytes_received": 9}},
        "eth0": {"type": "broadcast", "hwaddr": "fa:16:3e:00:00:01",
                 "counters": {"bytes_received": 100, "bytes_sent": 200,
                              "packets_received": 3, "packets_sent": 4,
                              "errors_received": 0, "errors_sent": 1,
                              "packets_dropped_inbound": 2,
                              "packets_dropped_outbound": 0}},
    },
}


def test_legacy():
    out = diagnostics.legacy(STATE, 128)
    assert out["cpu0_time"] == 1_500_000_000
    assert out["memory"] == 128 * 1024 and out["memory-actual"] == 50 * 1024
    assert (out["eth0_rx"], out["eth0_tx"], out["eth0_rx_drop"]) == (100, 200, 2)
    assert out["root_usage"] == 4096
    assert not any(k.startswith("lo_") for k in out)


def test_instance_diagnostics():
    launched = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=30)
    d = diagnostics.instance_diagnostics(STATE, power_state.RUNNING, 128, launched, True)
    assert d.state == "running" and d.hypervisor == "lxd" and d.config_drive
    assert 29 <= d.uptime <= 60
    assert d.num_cpus == 1 and d.cpu_details[0].time == 1_500_000_000
    assert d.num_nics == 1
    nic = d.nic_details[0]
    assert (nic.mac_address, nic.rx_octets, nic.tx_octets, nic.tx_errors) == (
        "fa:16:3e:00:00:01", 100, 200, 1)
    assert d.num_disks == 1
    assert (d.memory_details.maximum, d.memory_details.used) == (128, 50)


def test_stopped_container_has_zero_usage():
    d = diagnostics.instance_diagnostics({"status_code": 102}, power_state.SHUTDOWN, 64,
                                         None, False)
    assert d.state == "shutdown" and d.uptime is None and d.num_nics == 0
