"""The web applications: every resource module's endpoint table mounted, one error path.

The unix socket's app and the HTTPS app share the same routes; they differ in who
the caller is (root on the socket; a client certificate over HTTPS, judged by
`runtime.tls`). Instance endpoints are mounted a second time under the legacy
/1.0/containers prefix.
"""
from __future__ import annotations

import logging
from aiohttp import web

from runtime import auth, errors
from runtime.api import (MAX_JSON_BODY, certificates, console, events, exec, files, images,
                         instances, metrics, operations, profiles, projects, resources,
                         response, server, snapshots, storage, volumes)
from runtime.api import networks
from runtime.api.public_images import untrusted_handler
from runtime.appkeys import ACCESS, DAEMON, HTTPS_APP, PUBLIC_FALLBACK
from runtime.base import logs

LOG = logging.getLogger("runtime.api")
# Every resource module, in mounting order.
MODULES = (server, instances, console, exec, files, images, profiles, storage, networks,
           operations, events, snapshots, certificates, projects, resources, volumes, metrics)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """One error path, and the request id every log line of the request carries."""
    logs.REQUEST_ID.set(logs.new_request_id())
    try:
        return await handler(request)
    except errors.RuntimeAPIError as exc:
        if exc.status >= 500:
            LOG.error("%s %s: %s", request.method, request.path, exc)
        return response.error(str(exc), exc.status)
    except web.HTTPNotFound:
        return response.error("not found", 404)
    except web.HTTPMethodNotAllowed:
        return response.error("method not allowed", 405)
    except web.HTTPException:
        raise
    except Exception as exc:
        LOG.exception("%s %s failed", request.method, request.path)
        return response.error(f"Internal error: {type(exc).__name__}: {exc}", 500)


@web.middleware
async def unix_middleware(request: web.Request, handler):
    """The unix socket is root's (0660 root:root): its callers are administrators."""
    return await auth.authorize(request, handler, auth.UNIX)


def build_app(d) -> web.Application:
    """The unix socket's app; its HTTPS twin is kept under `HTTPS_APP` for the listener."""
    app = web.Application(middlewares=[error_middleware, unix_middleware],
                          client_max_size=MAX_JSON_BODY)
    https = web.Application(middlewares=[error_middleware, d.tls.middleware],
                            client_max_size=0)
    access: dict = {}
    for mod in MODULES:
        for method, path, handler, level in mod.ROUTES:
            if not isinstance(level, auth.Access):
                raise TypeError(f"{mod.__name__}: {method} {path} needs an access level")
            paths = [path]
            if path.startswith("/1.0/instances"):
                paths.append("/1.0/containers" + path[len("/1.0/instances"):])
            for p in paths:
                route = app.router.add_route(method, p, handler)
                access[(method, route.resource.canonical)] = level
    for resource in app.router.resources():
        https.router.register_resource(resource)
    for a in (app, https):
        a[DAEMON] = d
        a[ACCESS] = access
        a[PUBLIC_FALLBACK] = untrusted_handler
    app[HTTPS_APP] = https
    return app
