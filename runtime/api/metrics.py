"""/1.0/metrics: instance metrics in LXD's OpenMetrics text (runtime.metrics).

The one endpoint a `metrics` certificate reaches. Each caller gets the projects it
may see: all for administrators and unrestricted metrics certificates, its own
for a restricted certificate (`?project=` narrows to one).
"""
from aiohttp import web

from runtime import auth, metrics
from runtime.api import daemon, requested_project
from runtime.auth import METRICS


async def get_metrics(request: web.Request) -> web.Response:
    d = daemon(request)
    requestor = auth.of(request)
    if request.query.get("project"):
        projects = {auth.require(request, requested_project(request))}
    elif requestor.restricted:
        projects = set(requestor.projects)
    else:
        projects = None
    text = await metrics.collect(d, projects, server=projects is None)
    return web.Response(text=text, content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


ROUTES = [("GET", "/1.0/metrics", get_metrics, METRICS)]
