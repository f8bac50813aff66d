"""``scripts/cloud tempest [args]``: Tempest against the running cloud.

Writes a Tempest workspace in ``.cache/cloud/tempest`` whose ``tempest.conf``
describes this cloud (endpoints, images, flavors, networks) and whose
``[compute-feature-enabled]`` flags come from the driver's support matrix
(``nova_lxd_py.support_matrix --tempest``), then runs ``tempest run`` with
the exclude list ``cloud/tempest-exclude.txt`` (every entry says which
support-matrix row it stands for). Without arguments it runs the API groups
the project keeps green (servers, images, flavors, keypairs) and the smoke
set.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from cloud import horizon, inifile, layout

WORKSPACE = os.path.join(layout.CACHE, "tempest")
EXCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tempest-exclude.txt")
DEFAULT_REGEX = ("(^tempest\\.api\\.compute\\.(servers|images|flavors|keypairs)\\.)"
                 "|(\\[.*\\bsmoke\\b.*\\])")


def feature_flags(hosts: int) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "nova_lxd_py.support_matrix", "--tempest"],
                          capture_output=True, text=True, check=True, cwd=layout.REPO)
    flags: dict[str, object] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition(" ")
        if name and value:
            flags[name] = value.strip()
    if hosts < 2:  # the driver moves instances to another host only
        flags["resize"] = flags["cold_migration"] = False
    return flags


def conf(hosts: int) -> inifile.Sections:
    from cloud.readiness import admin

    conn = admin()
    # Debian (systemd, sshd, cloud-init): Tempest logs in to servers, reads
    # their console, and its scenarios check connectivity over SSH.
    debian = conn.image.find_image("debian-12")
    tiny, small = conn.compute.find_flavor("c1.tiny"), conn.compute.find_flavor("c1.small")
    public = conn.network.find_network("public")
    return {
        "DEFAULT": {"log_dir": os.path.join(WORKSPACE, "logs"), "log_file": "tempest.log"},
        "oslo_concurrency": {"lock_path": os.path.join(WORKSPACE, "locks")},
        "auth": {"admin_username": "admin", "admin_password": layout.ADMIN_PASSWORD,
                 "admin_project_name": "admin", "admin_domain_name": "Default",
                 "use_dynamic_credentials": True, "tempest_roles": "member"},
        "identity": {"uri_v3": layout.url("keystone", "/v3"), "auth_version": "v3",
                     "region": layout.REGION, "v3_endpoint_type": "public",
                     "disable_ssl_certificate_validation": True},
        "identity-feature-enabled": {"api_v2": False},
        "compute": {"image_ref": debian.id, "image_ref_alt": debian.id,
                    "flavor_ref": tiny.id, "flavor_ref_alt": small.id,
                    "min_compute_nodes": hosts, "region": layout.REGION,
                    "build_timeout": 180, "max_microversion": "latest",
                    "fixed_network_name": "private"},
        "compute-feature-enabled": feature_flags(hosts),
        "network": {"public_network_id": public.id, "floating_network_name": "public",
                    "project_network_cidr": "10.100.0.0/16",
                    "project_networks_reachable": False},
        # What this Neutron serves (Tempest's default, "all", expects plugins
        # such as metering that ML2/OVS here does not load).
        "network-feature-enabled": {
            "ipv6": False, "port_security": True,
            "api_extensions": ",".join(sorted(e.alias for e in conn.network.extensions()))},
        "validation": {"run_validation": True, "connect_method": "floating",
                       "auth_method": "keypair", "image_ssh_user": "debian",
                       "image_alt_ssh_user": "debian", "ip_version_for_ssh": 4,
                       "ssh_timeout": 180, "ping_timeout": 120},
        "image": {"container_formats": "bare", "disk_formats": "raw,root-tar,squashfs"},
        "scenario": {"img_file": "", "img_disk_format": "raw"},
        "service_available": {"nova": True, "glance": True, "neutron": True,
                              "placement": True, "cinder": False, "swift": False,
                              "heat": False, "horizon": True, "designate": False},
        "dashboard": {"dashboard_url": horizon.url(),
                      "login_url": horizon.url() + "auth/login/"},
        "placement": {"region": layout.REGION},
    }


def write_workspace() -> None:
    """What ``tempest init`` makes, without registering a workspace in
    ~/.tempest (a second init of the same path would fail there)."""
    import tempest as tempest_pkg

    for d in ("etc", "logs", "locks"):
        os.makedirs(os.path.join(WORKSPACE, d), exist_ok=True)
    top = os.path.dirname(tempest_pkg.__file__)
    with open(os.path.join(WORKSPACE, ".stestr.conf"), "w") as f:
        f.write(f"[DEFAULT]\ntest_path={top}/test_discover\ntop_dir={top}\n"
                "group_regex=([^\\.]*\\.)*\n")


def run(args: list[str], progress) -> int:
    info = os.path.join(layout.CACHE, "cloud.json")
    if not os.path.exists(info):
        progress("the cloud is not up: `scripts/cloud up` first")
        return 2
    import json
    with open(info) as f:
        hosts = len(json.load(f)["hosts"])
    tempest = layout.bin_("tempest")
    write_workspace()
    path = inifile.write(os.path.join(WORKSPACE, "etc", "tempest.conf"), conf(hosts))
    progress(f"tempest.conf: {path}")
    argv = [tempest, "run", "--config-file", path, "--exclude-list", EXCLUDE]
    if not any(a.startswith(("--regex", "-r", "--smoke", "-s", "--include-list", "-i"))
               or not a.startswith("-") for a in args):
        argv += ["--regex", DEFAULT_REGEX]
    if not any(a.startswith("--concurrency") for a in args):
        argv += ["--concurrency", "2"]
    argv += args
    progress("running: " + " ".join(argv[1:]))
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    code = subprocess.run(argv, cwd=WORKSPACE, env=env).returncode
    progress(f"tempest finished in {time.monotonic() - started:.0f} s (exit {code})")
    return code
