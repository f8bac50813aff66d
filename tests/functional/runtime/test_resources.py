"""/1.0/resources: the host as the nova driver's inventory sees it."""
import os


def test_resources_describe_the_host(client):
    res = client.api.resources.get().json()["metadata"]
    assert res["cpu"]["total"] == len(os.sched_getaffinity(0))
    threads = [t for s in res["cpu"]["sockets"] for c in s["cores"] for t in c["threads"]]
    assert sorted(t["id"] for t in threads if t["online"]) == sorted(os.sched_getaffinity(0))
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    assert res["memory"]["total"] == total_kb * 1024
    assert 0 < res["memory"]["used"] < res["memory"]["total"]
    assert res["storage"]["total"] == len(res["storage"]["disks"]) >= 1
    assert all(d["size"] > 0 for d in res["storage"]["disks"])
    assert "cards" in res["network"]
    pool = res["storage_pools"]["default"]["space"]
    assert pool["total"] > pool["used"] > 0


def test_pylxd_host_resources(client):
    assert client.resources["cpu"]["total"] >= 1


def test_host_stats(client):
    """Uptime, load and cpu times of the runtime's host, for a remote nova driver."""
    assert "nova_lxd_host_stats" in client.host_info["api_extensions"]
    first = client.api.resources.get().json()["metadata"]["host_stats"]
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    assert abs(first["uptime"] - uptime) < 60
    assert len(first["load_average"]) == 3 and all(v >= 0 for v in first["load_average"])
    assert set(first["cpu_time"]) == {"user", "kernel", "idle", "iowait"}
    with open("/proc/stat") as f:
        idle_ticks = int(f.readline().split()[4])
    idle_ns = idle_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert first["cpu_time"]["idle"] >= idle_ns * 0.99
    second = client.api.resources.get().json()["metadata"]["host_stats"]
    assert second["cpu_time"]["idle"] >= first["cpu_time"]["idle"]
    assert second["uptime"] >= first["uptime"]
