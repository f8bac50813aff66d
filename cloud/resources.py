"""What a fresh cloud holds for its users (idempotent): images, flavors, the
networks and router, and security group rules for ICMP and SSH.

Images: ``busybox`` (the bundled unified tarball, disk format ``raw``) and
``debian-12`` (a Debian 12 system container with systemd, cloud-init and
sshd, built by ``tools/images/build-debian`` and cached in ``.cache/images``).
"""
from __future__ import annotations

import os
import platform
import subprocess

from cloud import layout

IMAGES_DIR = os.path.join(layout.REPO, ".cache", "images")
FLAVORS = {  # name: (vcpus, ram MB, disk GB)
    "c1.tiny": (1, 128, 1),
    "c1.small": (1, 512, 4),
}


def image_files(progress) -> dict[str, tuple[str, str]]:
    """name -> (file, disk format); builds what is missing."""
    files = {}
    busybox = os.path.join(IMAGES_DIR, "busybox.tar.xz")
    if not os.path.exists(busybox):
        subprocess.run([os.path.join(layout.REPO, "tools", "images", "build-busybox"),
                        busybox], check=True)
    files["busybox"] = (busybox, "raw")
    builder = os.path.join(layout.REPO, "tools", "images", "build-debian")
    if os.environ.get("NLX_CLOUD_DEBIAN_IMAGE"):  # a prebuilt image, e.g. in tests
        files["debian-12"] = (os.environ["NLX_CLOUD_DEBIAN_IMAGE"], "raw")
    elif os.path.exists(builder):
        # The builder keeps its image in .cache/images and rebuilds it only when
        # its recipe changed; it prints the image's path.
        progress("  debian-12 image: tools/images/build-debian (cached while its recipe holds)")
        done = subprocess.run([builder], check=True, stdout=subprocess.PIPE, text=True)
        files["debian-12"] = (done.stdout.strip().splitlines()[-1], "raw")
    else:
        progress("  debian-12 image: tools/images/build-debian is not there yet; skipped")
    return files


def member():
    import openstack

    return openstack.connect(
        auth_url=layout.url("keystone", "/v3"), username=layout.MEMBER_USER,
        password=layout.MEMBER_PASSWORD, project_name=layout.MEMBER_PROJECT,
        user_domain_name="Default", project_domain_name="Default",
        region_name=layout.REGION, compute_api_version="2.96",
        connect_retries=3)


def _images(conn, progress) -> dict[str, str]:
    ids = {}
    for name, (path, disk_format) in image_files(progress).items():
        found = conn.image.find_image(name)
        if found and found.status == "active":
            ids[name] = found.id
            continue
        if found:
            conn.image.delete_image(found)
        progress(f"  uploading {name} ({os.path.getsize(path) // 2**20} MB, {disk_format})")
        image = conn.image.create_image(
            name=name, filename=path, disk_format=disk_format, container_format="bare",
            visibility="public", wait=True, allow_duplicates=False,
            hw_architecture=platform.machine(), validate_checksum=False)
        ids[name] = image.id
    return ids


def _flavors(conn) -> None:
    existing = {f.name for f in conn.compute.flavors()}
    for name, (vcpus, ram, disk) in FLAVORS.items():
        if name not in existing:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk,
                                       is_public=True)


def _networks(admin, user) -> None:
    net = admin.network
    public = net.find_network("public")
    if public is None:
        public = net.create_network(name="public", is_router_external=True,
                                    provider_network_type="flat",
                                    provider_physical_network=layout.PHYSNET,
                                    is_shared=False)
    if not list(net.subnets(network_id=public.id)):
        # No gateway: floating IPs reach the machine's address on this
        # network and nothing beyond it (no default route out of the cloud).
        net.create_subnet(network_id=public.id, name="public-subnet", ip_version=4,
                          cidr=layout.EXT_CIDR, gateway_ip=None, is_dhcp_enabled=False,
                          allocation_pools=[{"start": layout.EXT_POOL[0],
                                             "end": layout.EXT_POOL[1]}])
    un = user.network
    private = un.find_network("private")
    if private is None:
        private = un.create_network(name="private")
    subnet = next(iter(un.subnets(network_id=private.id)), None)
    if subnet is None:
        subnet = un.create_subnet(network_id=private.id, name="private-subnet", ip_version=4,
                                  cidr=layout.PRIVATE_CIDR, dns_nameservers=[])
    router = un.find_router("router1")
    if router is None:
        router = un.create_router(name="router1",
                                  external_gateway_info={"network_id": public.id})
    ports = list(un.ports(device_id=router.id, network_id=private.id))
    if not ports:
        un.add_interface_to_router(router, subnet_id=subnet.id)
    group = un.find_security_group("default", project_id=user.current_project_id)
    have = {(r.protocol, r.port_range_min) for r in
            un.security_group_rules(security_group_id=group.id)
            if r.direction == "ingress" and r.remote_ip_prefix}
    for protocol, port in (("icmp", None), ("tcp", 22)):
        if (protocol, port) not in have:
            un.create_security_group_rule(
                security_group_id=group.id, direction="ingress", ethertype="IPv4",
                protocol=protocol, port_range_min=port, port_range_max=port,
                remote_ip_prefix="0.0.0.0/0")


def ensure(progress) -> dict[str, str]:
    from cloud.readiness import admin

    conn = admin()
    images = _images(conn, progress)
    _flavors(conn)
    _networks(conn, member())
    return images
