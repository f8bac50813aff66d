"""Resource limits: applied at start, changed live, visible inside the container.

The container sees its own cgroups (cgroup namespace, cgroupfs mounted rw), so
each assertion reads the value from inside, as a user of the instance would.
"""
import os

import pytest

from runtime.instances import cgroups


def sh(inst, script: str) -> str:
    res = inst.execute(["sh", "-c", script])
    assert res.exit_code == 0, (script, res.stdout, res.stderr)
    return res.stdout.strip()


def cg(inst, controller: str, knob: str) -> str:
    return sh(inst, f"cat /sys/fs/cgroup/{controller}/{knob}")


def test_limits_applied_at_start(make_instance):
    inst = make_instance(config={
        "limits.cpu": "1", "limits.memory": "64MB", "limits.processes": "40",
        "limits.cpu.allowance": "25ms/100ms", "limits.memory.swap": "false"})
    assert sh(inst, "nproc") == "1"
    assert cg(inst, "memory", "memory.limit_in_bytes") == str(64 * 10**6)
    assert cg(inst, "memory", "memory.swappiness") == "0"
    assert cg(inst, "pids", "pids.max") == "40"
    assert cg(inst, "cpu", "cpu.cfs_quota_us") == "25000"
    assert cg(inst, "cpu", "cpu.cfs_period_us") == "100000"


def test_cpu_pinning_and_share_allowance(make_instance):
    cpus = sorted(os.sched_getaffinity(0))
    last = cpus[-1]
    # A bare number is a count (as in LXD); "N-N" pins to cpu N.
    inst = make_instance(config={"limits.cpu": f"{last}-{last}",
                                 "limits.cpu.allowance": "50%"})
    assert cg(inst, "cpuset", "cpuset.cpus") == str(last)
    assert sh(inst, "nproc") == "1"
    assert cg(inst, "cpu", "cpu.shares") == "512"


def test_soft_memory_limit(make_instance):
    inst = make_instance(config={"limits.memory": "96MiB", "limits.memory.enforce": "soft"})
    assert cg(inst, "memory", "memory.soft_limit_in_bytes") == str(96 * 2**20)


def test_limits_change_live(make_instance):
    inst = make_instance(config={"limits.cpu": "1", "limits.memory": "64MB",
                                 "limits.processes": "40"})
    pid = inst.state().pid
    inst.config.update({"limits.cpu": str(len(os.sched_getaffinity(0))),
                        "limits.memory": "128MB", "limits.processes": "60"})
    inst.save(wait=True)
    assert inst.state().pid == pid, "a limit change must not restart the instance"
    assert sh(inst, "nproc") == str(len(os.sched_getaffinity(0)))
    assert cg(inst, "memory", "memory.limit_in_bytes") == str(128 * 10**6)
    assert cg(inst, "pids", "pids.max") == "60"


def test_process_limit_is_enforced(make_instance):
    inst = make_instance(config={"limits.processes": "15"})
    res = inst.execute(["sh", "-c", "n=0; for i in $(seq 1 30); do sleep 3 & "
                        "[ $? -eq 0 ] && n=$((n+1)); done; echo $n"])
    started = int(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else 0
    assert started < 15, res.stdout + res.stderr
    assert "fork" in res.stderr.lower() or "resource" in res.stderr.lower() or started < 15


def test_memory_limit_is_enforced(make_instance):
    inst = make_instance(config={"limits.memory": "32MB", "limits.memory.swap": "false"})
    # Allocate ~64 MB in a shell variable: the kernel's OOM killer must stop it.
    res = inst.execute(["sh", "-c", "head -c 67108864 /dev/zero | tr '\\0' a > /dev/shm/big"
                        " ; echo rc=$?"])
    usage = int(cg(inst, "memory", "memory.max_usage_in_bytes"))
    assert usage <= 32 * 10**6 + 4096, (usage, res.stdout, res.stderr)


def test_profile_limit_change_reaches_running_instances(client, make_instance):
    prof = client.profiles.create("nt-lim", config={"limits.memory": "64MiB"})
    inst = None
    try:
        inst = make_instance(profiles=["default", "nt-lim"])
        assert cg(inst, "memory", "memory.limit_in_bytes") == str(64 * 2**20)
        prof.config["limits.memory"] = "80MiB"
        prof.save()
        assert cg(inst, "memory", "memory.limit_in_bytes") == str(80 * 2**20)
    finally:
        if inst is not None:
            inst.stop(force=True, wait=True)
            inst.delete(wait=True)
        prof.delete()


def test_disk_priority(make_instance):
    knob = cgroups.blkio_weight_knob()
    inst = make_instance(config={"limits.disk.priority": "10"})
    assert inst.status == "Running"
    if knob is None:
        pytest.skip("this kernel has neither blkio.weight (CFQ) nor blkio.bfq.weight "
                    "(BFQ group scheduling off or not the disk's scheduler): "
                    "limits.disk.priority is accepted but cannot be enforced")
    assert cg(inst, "blkio", knob) == "1000"


def test_disk_io_limits_at_start_and_live(make_instance):
    inst = make_instance(devices={"root": {"type": "disk", "path": "/", "pool": "default",
                                           "limits.read": "10MB", "limits.write": "200iops"}})
    read_bps = cg(inst, "blkio", "blkio.throttle.read_bps_device")
    if not read_bps:
        pytest.skip("the default pool is not on a block device: throttles can't apply")
    assert read_bps.split()[1] == str(10 * 10**6)
    assert cg(inst, "blkio", "blkio.throttle.write_iops_device").split()[1] == "200"
    inst.devices["root"]["limits.read"] = "20MB"
    inst.save(wait=True)
    assert cg(inst, "blkio", "blkio.throttle.read_bps_device").split()[1] == str(20 * 10**6)


def test_removed_limits_stop_applying_live(make_instance):
    inst = make_instance(config={"limits.cpu": "1", "limits.memory": "64MiB",
                                 "limits.processes": "40", "limits.cpu.allowance": "10%"})
    for key in ("limits.cpu", "limits.memory", "limits.processes", "limits.cpu.allowance"):
        del inst.config[key]
    inst.save(wait=True)
    assert sh(inst, "nproc") == str(len(os.sched_getaffinity(0)))
    assert int(cg(inst, "memory", "memory.limit_in_bytes")) > 2**50
    assert cg(inst, "pids", "pids.max") == "max"
    assert cg(inst, "cpu", "cpu.shares") == "1024"
