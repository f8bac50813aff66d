"""The typed keys of the runtime's web applications (aiohttp's `web.AppKey`).

Kept apart from `runtime.api` so that the layers below it (`runtime.auth`, the
HTTPS listener) can read the same keys without importing the API package.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

# The daemon whose subsystems every handler uses (a runtime.daemon.Daemon; not
# imported here, even for typing, so that nothing below the daemon refers to it).
DAEMON: web.AppKey[Any] = web.AppKey("daemon")
# (method, canonical path) -> runtime.auth.Access: who may call it; set as routes mount.
ACCESS: web.AppKey[dict[tuple[str, str], Any]] = web.AppKey("access")
# The HTTPS application (same routes, behind the trust gate); the TLS listener serves it.
HTTPS_APP: web.AppKey[web.Application] = web.AppKey("https_app")
# request -> handler or None: what an untrusted caller gets where it may not go
# (public images); runtime.api.public_images.untrusted_handler.
PUBLIC_FALLBACK: web.AppKey[Callable[[web.Request], Any]] = web.AppKey("public_fallback")
