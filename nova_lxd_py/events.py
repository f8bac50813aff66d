"""Runtime lifecycle events to nova lifecycle events, as they happen.

Without this nova learns that a container stopped behind its back (poweroff
inside, killed, host trouble) only at its periodic power-state sync, 10
minutes by default. The runtime (and LXD) publish every start, stop, freeze
and thaw on ``/1.0/events``; a native thread follows that websocket (nova 34
runs native threads, no eventlet) and tells nova through the driver's
``emit_event``.

An event is only a hint: the listener reads the container's state again and
emits the transition of what it finds, and nova itself re-reads the power
state (``get_info``) before acting. So a late, repeated or forged event can
cause no wrong state. When the runtime restarts the websocket closes; the
thread reconnects with a short backoff and then reports the current state of
every instance once, since changes made while it was away produced no event.
Its connects go through the driver's connection watch: the stream's end and
reconnect are how nova-compute notices at once that the runtime went away and
came back (see ``runtime_health.ConnectionWatch``).
"""
from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib import parse

from nova.compute import power_state
from nova.virt import event as virtevent
from oslo_log import log as logging
from pylxd import client as pylxd_client
from ws4py.client import WebSocketBaseClient

from nova_lxd_py import client as lxd_client
from nova_lxd_py import runtime_health

LOG = logging.getLogger(__name__)

# While the runtime is away the stream is retried at most this far apart: its
# reconnect is also how nova-compute learns the runtime is back.
MAX_RETRY_INTERVAL = 10.0

# Runtime lifecycle actions after which an instance's power state may differ.
INSTANCE_ACTIONS = frozenset({
    "instance-started", "instance-stopped", "instance-restarted", "instance-paused",
    "instance-resumed", "instance-shutdown", "instance-updated"})

TRANSITIONS = {
    power_state.RUNNING: virtevent.EVENT_LIFECYCLE_STARTED,
    power_state.SHUTDOWN: virtevent.EVENT_LIFECYCLE_STOPPED,
    power_state.CRASHED: virtevent.EVENT_LIFECYCLE_STOPPED,
    power_state.PAUSED: virtevent.EVENT_LIFECYCLE_PAUSED,
    power_state.SUSPENDED: virtevent.EVENT_LIFECYCLE_SUSPENDED,
}

# (instance uuid, nova power state) of a container by name, or None if not ours.
StateReader = Callable[[str], "tuple[str, int] | None"]


def instance_name(source: str) -> str | None:
    """The instance name of a lifecycle event's source (/1.0/instances/<name>[?...])."""
    path = parse.urlparse(source or "").path
    for prefix in ("/1.0/instances/", "/1.0/containers/"):
        if path.startswith(prefix):
            name = parse.unquote(path[len(prefix):])
            return name if name and "/" not in name else None
    return None


def transition(previous: int | None, state: int) -> int | None:
    """The nova lifecycle transition for a power state (RESUMED after a pause)."""
    if state == power_state.RUNNING and previous in (power_state.PAUSED,
                                                     power_state.SUSPENDED):
        return virtevent.EVENT_LIFECYCLE_RESUMED
    return TRANSITIONS.get(state)


def ssl_options(endpoint: lxd_client.Endpoint) -> dict[str, Any]:
    """ws4py's TLS options: the client certificate, and the server verified
    against the pinned certificate (or the system store) as the API calls are."""
    paths = ssl.get_default_verify_paths()
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED,
                               "ca_certs": endpoint.server_cert or paths.cafile
                               or paths.openssl_cafile}
    if endpoint.client_cert:
        options.update(certfile=endpoint.client_cert, keyfile=endpoint.client_key)
    return options


class _Socket(WebSocketBaseClient):
    def __init__(self, url: str, on_message: Callable[[dict], None], **kwargs: Any):
        pylxd_client._ws_exclude_origin(kwargs)  # the runtime, like LXD, wants no Origin
        super().__init__(url, **kwargs)
        self._on_message = on_message

    def received_message(self, message: Any) -> None:
        try:
            self._on_message(json.loads(message.data.decode("utf-8")))
        except Exception:  # noqa: BLE001 - one bad event must not end the stream
            LOG.exception("Could not handle runtime event")


class LifecycleListener:
    """Follows the runtime's lifecycle events in a daemon thread."""

    def __init__(self, endpoint: lxd_client.Endpoint, read_state: StateReader,
                 emit: Callable[[virtevent.Event], None], list_names: Callable[[], list[str]],
                 retry_interval: float = 1.0,
                 watch: runtime_health.ConnectionWatch | None = None):
        self._endpoint = endpoint
        self._watch = watch
        self._read_state = read_state
        self._emit = emit
        self._list_names = list_names
        self._retry = retry_interval
        self._stopping = threading.Event()
        self._wake = threading.Event()   # cut a retry wait short (the runtime is back)
        self._thread: threading.Thread | None = None
        self._socket: _Socket | None = None
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}   # uuid -> last power state reported
        self.connected = threading.Event()

    # -- thread ------------------------------------------------------------------
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="nova-lxd-events",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        self.reconnect()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def reconnect(self) -> None:
        """Drop the stream: a runtime that stopped answering (SIGSTOP) keeps its
        socket open and silent, so the stream would never end by itself."""
        with self._lock:
            sock = self._socket
        if sock is not None:
            try:
                sock.close_connection()
            except Exception:  # noqa: BLE001 - already closed
                pass

    def kick(self) -> None:
        """Retry now rather than after the backoff (the runtime answers again)."""
        self._wake.set()

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        first = True
        delay = self._retry
        while not self._stopping.is_set():
            try:
                sock = self._connect()
            except Exception as exc:  # noqa: BLE001 - runtime down: retry, backing off
                LOG.debug("Runtime events unavailable (%s), retrying in %.0fs", exc, delay)
                self._pause(delay)
                delay = min(delay * 2, MAX_RETRY_INTERVAL)
                continue
            delay = self._retry
            LOG.info("Following runtime lifecycle events at %s", self._endpoint.describe())
            self.connected.set()
            if not first:
                self._resync()
            first = False
            try:
                sock.run()
            except Exception as exc:  # noqa: BLE001 - stream broke: reconnect
                LOG.debug("Runtime event stream ended: %s", exc)
            finally:
                self.connected.clear()
                with self._lock:
                    self._socket = None
            if not self._stopping.is_set():
                LOG.warning("Lost the runtime's event stream at %s; reconnecting",
                            self._endpoint.describe())
                self._pause(self._retry)

    def _connect(self) -> _Socket:
        client = lxd_client.make_client(self._endpoint, self._watch)
        url = client.websocket_url
        kwargs: dict[str, Any] = {}
        if not self._endpoint.is_unix:
            kwargs["ssl_options"] = ssl_options(self._endpoint)
            kwargs["heartbeat_freq"] = 30.0
        sock = _Socket(url, self._on_event, **kwargs)
        sock.resource = parse.urlparse(client.api.events._api_endpoint).path + \
            "?type=lifecycle"
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("stopping")
            self._socket = sock
        sock.connect()
        return sock

    # -- events ------------------------------------------------------------------
    def _on_event(self, message: dict) -> None:
        if message.get("type") != "lifecycle":
            return
        meta = message.get("metadata") or {}
        if meta.get("action") not in INSTANCE_ACTIONS:
            return
        name = instance_name(meta.get("source", ""))
        if name:
            self.report(name)

    def report(self, name: str) -> None:
        """Read name's state and emit its transition if it changed."""
        try:
            found = self._read_state(name)
        except Exception as exc:  # noqa: BLE001 - gone meanwhile, or runtime busy
            LOG.debug("No state for %s after an event: %s", name, exc)
            return
        if found is None:
            return
        uuid, state = found
        previous = self._last.get(uuid)
        if previous == state:
            return
        self._last[uuid] = state
        kind = transition(previous, state)
        if kind is None:
            return
        LOG.debug("Container %s is now in power state %s", name, state)
        self._emit(virtevent.LifecycleEvent(uuid, kind))

    def _resync(self) -> None:
        """After a reconnect: what happened while the stream was down made no event."""
        try:
            names = self._list_names()
        except Exception as exc:  # noqa: BLE001 - next reconnect tries again
            LOG.debug("Could not list instances after reconnecting: %s", exc)
            return
        for name in names:
            self.report(name)
