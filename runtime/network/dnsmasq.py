"""dnsmasq as the DHCP (and DNS) server of one managed bridge.

It binds only to its bridge (`--bind-interfaces --interface`, `--except-interface=lo`),
runs detached from the daemon (a daemon restart keeps leases served), and is
found again through its pid file.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time


def _alive(pid: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"dnsmasq") and \
        f"--interface={name}".encode() in argv


def pid_of(rundir: str, name: str) -> int | None:
    try:
        with open(os.path.join(rundir, "dnsmasq.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, name) else None


def dhcp_range(config: dict) -> tuple[str, str] | None:
    """First and last lease addresses: ipv4.dhcp.ranges or the subnet minus the gateway."""
    ranges = config.get("ipv4.dhcp.ranges")
    if ranges:
        first, last = ranges.split(",")[0].split("-")
        return first.strip(), last.strip()
    iface = ipaddress.ip_interface(config["ipv4.address"])
    hosts = list(iface.network.hosts())
    hosts = [h for h in hosts if h != iface.ip]
    if not hosts:
        return None
    return str(hosts[0]), str(hosts[-1])


def argv(name: str, rundir: str, config: dict) -> list[str]:
    iface = ipaddress.ip_interface(config["ipv4.address"])
    rng = dhcp_range(config)
    args = ["dnsmasq", "--keep-in-foreground", "--strict-order", "--bind-interfaces",
            f"--interface={name}", "--except-interface=lo", "--no-ping", "--no-resolv",
            "--no-hosts", f"--listen-address={iface.ip}", "--dhcp-no-override",
            "--dhcp-authoritative", f"--dhcp-leasefile={os.path.join(rundir, 'dnsmasq.leases')}",
            f"--dhcp-hostsfile={os.path.join(rundir, 'dnsmasq.hosts')}",
            f"--pid-file={os.path.join(rundir, 'dnsmasq.pid')}", "--user=root", "--group=root",
            "--conf-file=/dev/null", "--log-facility=" + os.path.join(rundir, "dnsmasq.log")]
    if rng:
        lease = config.get("ipv4.dhcp.expiry", "1h")
        args.append(f"--dhcp-range={rng[0]},{rng[1]},{iface.network.netmask},{lease}")
        args.append(f"--dhcp-option-force=3,{iface.ip}")
    domain = config.get("dns.domain", "lxd")
    args += [f"--domain={domain}", f"--local=/{domain}/"]
    raw = config.get("raw.dnsmasq")
    if raw:
        path = os.path.join(rundir, "dnsmasq.raw")
        with open(path, "w") as f:
            f.write(raw + "\n")
        args.append(f"--conf-file={path}")
    return args


def start(name: str, rundir: str, config: dict) -> int:
    """(Re)start dnsmasq for a bridge; returns its pid.

    dnsmasq daemonizes itself once its sockets are bound, so a bind error comes
    back as the exit status of the launching process, with its message logged.
    """
    stop(rundir, name)
    os.makedirs(rundir, exist_ok=True)
    open(os.path.join(rundir, "dnsmasq.hosts"), "a").close()
    errfile = os.path.join(rundir, "dnsmasq.err")
    with open(errfile, "w") as err:
        rc = subprocess.run([a for a in argv(name, rundir, config)
                             if a != "--keep-in-foreground"], stdin=subprocess.DEVNULL,
                            stdout=err, stderr=err, start_new_session=True).returncode
    if rc != 0:
        with open(errfile, errors="replace") as f:
            raise RuntimeError(f"dnsmasq for {name} failed: {f.read().strip()}")
    pid = pid_of(rundir, name)
    if pid is None:
        raise RuntimeError(f"dnsmasq for {name} did not stay up")
    return pid


def stop(rundir: str, name: str) -> None:
    pid = pid_of(rundir, name)
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            if not _alive(pid, name):
                break
            time.sleep(0.02)


def reload_hosts(rundir: str, name: str) -> None:
    pid = pid_of(rundir, name)
    if pid:
        os.kill(pid, signal.SIGHUP)


def leases(rundir: str) -> list[dict]:
    out = []
    try:
        with open(os.path.join(rundir, "dnsmasq.leases")) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4:
                    out.append({"hwaddr": parts[1], "address": parts[2],
                                "hostname": "" if parts[3] == "*" else parts[3],
                                "type": "dynamic", "location": "none"})
    except OSError:
        pass
    return out


class Backoff:
    """When to try restarting a dead dnsmasq again: at once the first time, then
    after doubling delays (capped), so a dnsmasq that cannot start (its address
    taken, a bad raw.dnsmasq) is not respawned in a tight loop. A restart that
    stays up for `settle` seconds forgets the failures."""

    def __init__(self, first: float = 1.0, cap: float = 60.0, settle: float = 30.0):
        self.first, self.cap, self.settle = first, cap, settle
        self.failures = 0
        self.not_before = 0.0
        self.restarted_at = 0.0

    def due(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.not_before

    def died(self, now: float | None = None) -> float:
        """Record a death (or a failed start); returns the delay before the next try."""
        now = time.monotonic() if now is None else now
        if self.restarted_at and now - self.restarted_at >= self.settle:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else min(self.cap,
                                                    self.first * 2 ** (self.failures - 1))
        self.failures += 1
        self.not_before = now + delay
        return delay

    def started(self, now: float | None = None) -> None:
        self.restarted_at = time.monotonic() if now is None else now
