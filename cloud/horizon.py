"""Horizon (the dashboard) for this cloud: settings, static files, the WSGI app.

Horizon 27 comes from PyPI into the cloud's virtualenv; nothing is written
into the virtualenv. Horizon's own settings module imports
``local.local_settings`` (its documented hook, found on ``sys.path``); the
cloud writes that module under ``$STATE/etc/horizon/local/`` and puts
``$STATE/etc/horizon`` first on the dashboard's ``PYTHONPATH``. Sessions live
in memcached (Django's cache session engine), as Horizon recommends.

Static files: ``collectstatic`` and django-compressor's offline ``compress``
(the SCSS themes compiled once, not on a user's first page) take about a
minute, so their output is kept in ``.cache/cloud/`` keyed by the versions of
Horizon, Django and the XStatic packages, like the schema dump: a second ``up``
reuses it. gunicorn serves the dashboard with WhiteNoise in front for the
static files (``cloud/horizon_wsgi.py``).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess

from cloud import config, inifile, layout

CONSOLE_TYPE = "SERIAL"   # the only console nova offers for containers here


def settings_dir() -> str:
    """Goes first on the dashboard's PYTHONPATH (holds the ``local`` package)."""
    return layout.etc("horizon")


def settings_file() -> str:
    return os.path.join(settings_dir(), "local", "local_settings.py")


def url() -> str:
    return layout.url("horizon", "/")


def _static_key() -> str:
    """Versions that decide what collectstatic and compress produce."""
    names = sorted(
        f"{d.metadata['Name'].lower()}=={d.version}" for d in importlib.metadata.distributions()
        if d.metadata["Name"] and d.metadata["Name"].lower().startswith(
            ("horizon", "django", "xstatic")))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def static_root() -> str:
    return os.path.join(layout.CACHE, f"horizon-static-{_static_key()}")


def settings() -> str:
    """The text of local_settings.py for this cloud."""
    return f'''"""Horizon's local settings for this cloud (written by cloud/horizon.py)."""
import os

from horizon.utils import secret_key

DEBUG = False
ALLOWED_HOSTS = [{layout.MGMT_IP!r}]
WEBROOT = "/"
TIME_ZONE = "UTC"
OPENSTACK_HOST = {layout.MGMT_IP!r}
OPENSTACK_KEYSTONE_URL = {layout.url("keystone", "/v3")!r}
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = "Default"
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "member"
OPENSTACK_ENDPOINT_TYPE = "publicURL"
SECRET_KEY = secret_key.generate_or_read_from_file({layout.etc("horizon", "secret_key")!r})

# Sessions in memcached, the cloud's cache. `collectstatic` and `compress` run
# at `up` before memcached does (and templates' cache tags would wait on it).
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                        "LOCATION": {config.MEMCACHE!r}}}}}
if os.environ.get("NLXC_HORIZON_BUILD") == "1":
    CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}}}

# Collected and compressed once per Horizon version (cloud/horizon.py).
STATIC_ROOT = {static_root()!r}
COMPRESS_OFFLINE = True

# Containers have serial consoles only (nova-serialproxy); no VNC or SPICE.
CONSOLE_TYPE = {CONSOLE_TYPE!r}
# The Console tab frames Horizon's own serial console page: Django's default
# (DENY) would blank it; other sites still may not frame the dashboard.
X_FRAME_OPTIONS = "SAMEORIGIN"
# No Cinder in this cloud: servers boot from their image.
LAUNCH_INSTANCE_DEFAULTS = {{
    "config_drive": False, "create_volume": False, "hide_create_volume": True,
    "disable_image": False, "disable_instance_snapshot": False, "disable_volume": True,
    "disable_volume_snapshot": True, "enable_scheduler_hints": True,
    "enable_metadata": True, "enable_net_ports": True, "default_availability_zone": "Any",
}}
OPENSTACK_CINDER_FEATURES = {{"enable_backup": False}}

LOGGING = {{
    "version": 1, "disable_existing_loggers": False,
    "formatters": {{"line": {{"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}}}},
    "handlers": {{"stderr": {{"class": "logging.StreamHandler", "formatter": "line"}}}},
    "root": {{"handlers": ["stderr"], "level": "WARNING"}},
    "loggers": {{"horizon": {{"level": "INFO"}}, "openstack_dashboard": {{"level": "INFO"}},
                 "openstack_auth": {{"level": "INFO"}}, "django": {{"level": "WARNING"}}}},
}}
'''


def write_settings() -> None:
    os.makedirs(os.path.join(settings_dir(), "local"), exist_ok=True)
    init = os.path.join(settings_dir(), "local", "__init__.py")
    if not os.path.exists(init):
        open(init, "w").close()
    inifile.write_text(settings_file(), settings(), mode=0o640)


def env() -> dict[str, str]:
    return {"PYTHONPATH": f"{settings_dir()}:{layout.REPO}",
            "DJANGO_SETTINGS_MODULE": "openstack_dashboard.settings"}


def collect_static(progress) -> None:
    """collectstatic and compress into the cache, once per set of versions.
    A marker file says the directory is complete; anything else is redone."""
    root = static_root()
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(layout.CACHE, exist_ok=True)  # a fresh checkout has no .cache yet
    progress("  dashboard static files: collectstatic and compress (once per Horizon "
             "version, kept in .cache/cloud)")
    for stale in os.listdir(layout.CACHE):
        if stale.startswith("horizon-static-"):
            shutil.rmtree(os.path.join(layout.CACHE, stale), ignore_errors=True)
    run_env = {**os.environ, **env(), "NLXC_HORIZON_BUILD": "1"}
    for args in (["collectstatic", "--noinput", "--verbosity", "0"],
                 ["compress", "--force", "--verbosity", "0"]):
        done = subprocess.run([layout.bin_("python"), "-m", "django", *args], env=run_env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"horizon {args[0]} failed:\n{done.stderr[-3000:]}")
    open(marker, "w").close()
