"""Schemas, the identity catalogue and nova's cells: what exists before users.

Database schemas take most of a cold start (Neutron's and nova's migrations
alone run a minute on two cores), so once every schema is made and Keystone is
bootstrapped, the databases are dumped to ``.cache/cloud/`` (keyed by the
installed service versions and this module); a later ``up`` loads that dump
instead of migrating again. The dump holds no per-run state: no hosts, no
servers, no tokens (Fernet keys are made anew).
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import subprocess

from cloud import config, infra, layout

SERVICE_USERS = ("glance", "nova", "placement", "neutron")
CATALOG = [  # service name, type, url
    ("glance", "image", layout.url("glance")),
    ("placement", "placement", layout.url("placement")),
    ("nova", "compute", layout.url("nova-api", "/v2.1")),
    ("neutron", "network", layout.url("neutron-api")),
]


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed:\n{tail}")


def _seed_path() -> str:
    versions = [f"{d}={importlib.metadata.version(d)}" for d in
                ("keystone", "glance", "openstack-placement", "nova", "neutron")]
    with open(__file__, "rb") as f:
        versions.append(hashlib.sha256(f.read()).hexdigest())
    key = hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16]
    return os.path.join(layout.CACHE, f"db-seed-{key}.sql.gz")


def keys() -> None:
    """Keystone's Fernet and credential keys (per cloud, never cached)."""
    conf = layout.etc("keystone", "keystone.conf")
    manage = layout.bin_("keystone-manage")
    if not os.path.isdir(layout.etc("keystone", "fernet-keys")):
        _run(manage, "--config-file", conf, "fernet_setup", "--keystone-user", "root",
             "--keystone-group", "root")
    if not os.path.isdir(layout.etc("keystone", "credential-keys")):
        _run(manage, "--config-file", conf, "credential_setup", "--keystone-user", "root",
             "--keystone-group", "root")


def schemas(progress) -> None:
    """Every service's schema and Keystone's bootstrap: from the cached dump
    when there is one, else by migrating (and then cache the result)."""
    seed = _seed_path()
    if infra.sql("SELECT COUNT(*) FROM information_schema.tables WHERE "
                 "table_schema = 'neutron'").strip() not in ("", "0") and _marked():
        return
    if os.path.exists(seed):
        progress("loading the database schemas from the cache")
        with gzip.open(seed, "rb") as f:
            subprocess.run(["/usr/bin/mariadb", f"--socket={infra.MYSQL_SOCK}"], input=f.read(),
                           check=True, capture_output=True)
        _mark()
        return
    progress("creating the database schemas (cached for the next time)")
    _migrate()
    _mark()
    os.makedirs(layout.CACHE, exist_ok=True)
    for old in os.listdir(layout.CACHE):
        if old.startswith("db-seed-"):
            os.unlink(os.path.join(layout.CACHE, old))
    dump = subprocess.run(["/usr/bin/mariadb-dump", f"--socket={infra.MYSQL_SOCK}",
                           "--databases", *config.DATABASES, "--single-transaction"],
                          capture_output=True, check=True).stdout
    with gzip.open(seed + ".tmp", "wb", compresslevel=3) as f:
        f.write(dump)
    os.replace(seed + ".tmp", seed)


def _mark() -> None:
    infra.sql("CREATE TABLE IF NOT EXISTS keystone.nlxc_ready (done INT)")


def _marked() -> bool:
    return infra.sql("SELECT COUNT(*) FROM information_schema.tables WHERE "
                     "table_schema = 'keystone' AND table_name = 'nlxc_ready'").strip() == "1"


def _migrate() -> None:
    e = layout.etc
    _run(layout.bin_("keystone-manage"), "--config-file", e("keystone", "keystone.conf"),
         "db_sync")
    _run(layout.bin_("keystone-manage"), "--config-file", e("keystone", "keystone.conf"),
         "bootstrap", "--bootstrap-password", layout.ADMIN_PASSWORD,
         "--bootstrap-admin-url", layout.url("keystone", "/v3"),
         "--bootstrap-public-url", layout.url("keystone", "/v3"),
         "--bootstrap-internal-url", layout.url("keystone", "/v3"),
         "--bootstrap-region-id", layout.REGION)
    _run(layout.bin_("glance-manage"), "--config-file", e("glance", "glance-api.conf"),
         "db_sync")
    _run(layout.bin_("placement-manage"), "--config-file", e("placement", "placement.conf"),
         "db", "sync")
    nova = [layout.bin_("nova-manage"), "--config-file", e("nova", "nova.conf")]
    _run(*nova, "api_db", "sync")
    _run(*nova, "cell_v2", "map_cell0", "--database_connection", config.db_url("nova_cell0"))
    cells = subprocess.run([*nova, "cell_v2", "list_cells"], capture_output=True,
                           text=True).stdout
    if " cell1 " not in cells:
        _run(*nova, "cell_v2", "create_cell", "--name", "cell1")
    _run(*nova, "db", "sync")
    _run(layout.bin_("neutron-db-manage"), "--config-file", e("neutron", "neutron.conf"),
         "--config-file", e("neutron", "ml2_conf.ini"), "upgrade", "heads")


def identity() -> None:
    """Service users, the catalogue, and the member user (idempotent)."""
    from cloud.readiness import admin

    conn = admin()
    ident = conn.identity
    roles = {r.name: r for r in ident.roles()}
    for name in ("admin", "member", "reader", "service"):
        if name not in roles:
            roles[name] = ident.create_role(name=name)
    default = ident.find_domain("default")

    def project(name: str):
        return ident.find_project(name, domain_id=default.id) or ident.create_project(
            name=name, domain_id=default.id, description=f"nova-lxd cloud: {name}")

    def user(name: str, password: str):
        found = ident.find_user(name, domain_id=default.id)
        return found or ident.create_user(name=name, password=password,
                                          domain_id=default.id)

    service = project("service")
    for name in SERVICE_USERS:
        u = user(name, layout.SERVICE_PASSWORD)
        for role in ("admin", "service"):
            ident.assign_project_role_to_user(service, u, roles[role])
    demo = project(layout.MEMBER_PROJECT)
    member = user(layout.MEMBER_USER, layout.MEMBER_PASSWORD)
    for role in ("member", "reader"):
        ident.assign_project_role_to_user(demo, member, roles[role])
    known = {s.type: s for s in ident.services()}
    endpoints = {(e.service_id, e.interface) for e in ident.endpoints()}
    for name, kind, url in CATALOG:
        svc = known.get(kind) or ident.create_service(name=name, type=kind)
        for interface in ("public", "internal", "admin"):
            if (svc.id, interface) not in endpoints:
                ident.create_endpoint(service_id=svc.id, interface=interface, url=url,
                                      region_id=layout.REGION)


def discover_hosts() -> None:
    _run(layout.bin_("nova-manage"), "--config-file", layout.etc("nova", "nova.conf"),
         "cell_v2", "discover_hosts")
