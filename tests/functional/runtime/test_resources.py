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
