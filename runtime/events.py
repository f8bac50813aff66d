"""The event bus behind /1.0/events: operation, lifecycle and logging events.

Subscribers get a bounded queue each; a slow listener loses its oldest events
instead of growing the daemon's memory without limit. Each subscriber listens as
someone (a `runtime.auth.Requestor`): a restricted client gets only its projects'
events, server-level ones (trust tokens, logging) reach administrators only, and
an event with private parts (an operation's secrets) goes whole only to the one
who owns them, everyone else getting its public form.
"""
import asyncio
from typing import Any

from runtime.base.timefmt import timestamp

QUEUE_LIMIT = 1024


class Subscriber:
    def __init__(self, types: set[str], project: str | None, viewer=None):
        self.types = types
        self.project = project
        self.viewer = viewer      # a runtime.auth.Requestor; None: the daemon itself
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)

    def wants(self, event: dict, admin_only: bool = False) -> bool:
        if self.types and event["type"] not in self.types:
            return False
        viewer = self.viewer
        if viewer is not None and not viewer.admin:
            if admin_only or not event.get("project") or \
                    not viewer.can_access(event["project"]):
                return False
        return self.project is None or event.get("project") in (self.project, "", None)


class EventBus:
    def __init__(self):
        self.subscribers: set[Subscriber] = set()

    def subscribe(self, types: set[str], project: str | None = None,
                  viewer=None) -> Subscriber:
        sub = Subscriber(types, project, viewer)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, kind: str, metadata: Any, project: str = "default", owner=None,
                public: Any = None, admin_only: bool = False) -> None:
        """`public`: what everyone but `owner` (a requestor identity) gets instead of
        `metadata`; `admin_only`: a server-level event (see the module docstring)."""
        event = {"type": kind, "timestamp": timestamp(), "metadata": metadata,
                 "location": "none", "project": project}
        shown = event if public is None else dict(event, metadata=public)
        for sub in list(self.subscribers):
            mine = sub.viewer is not None and owner is not None and \
                sub.viewer.identity == owner
            if not sub.wants(event, admin_only and not mine):
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
            sub.queue.put_nowait(event if mine or sub.viewer is None else shown)

    def lifecycle(self, action: str, source: str, project: str = "default",
                  context: dict | None = None) -> None:
        self.publish("lifecycle", {"action": action, "source": source,
                                   "context": context or {}, "requestor": None}, project)

    def log(self, level: str, message: str, context: dict | None = None) -> None:
        if self.subscribers:
            self.publish("logging", {"message": message, "level": level,
                                     "context": context or {}}, "", admin_only=True)
