"""The serial console listeners' own logic, with real sockets but no runtime:
ports from an allocator, a taken port skipped and handed back, nothing listening
once released, a refusal line for the TCP client, and the switch in nova.conf."""
import socket

import pytest

from nova import exception as nova_exception
from nova_lxd_py import client as lxd_client
from nova_lxd_py import console


class Allocator:
    def __init__(self, ports):
        self.ports = list(ports)
        self.held: set[int] = set()
        self.released: list[int] = []

    def acquire(self, host):
        port = self.ports.pop(0)
        self.held.add(port)
        return port

    def release(self, host, port):
        self.held.discard(port)
        self.released.append(port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def consoles(tmp_path):
    made = []

    def make(ports):
        alloc = Allocator(ports)
        # A runtime socket that doesn't exist: connections get a refusal line.
        endpoint = lxd_client.Endpoint(str(tmp_path / "no-runtime.socket"))
        c = console.SerialConsoles(endpoint, alloc.acquire, alloc.release)
        made.append(c)
        return c, alloc
    yield make
    for c in made:
        c.shutdown()


def test_listens_on_the_allocated_port_until_released(consoles):
    port = _free_port()
    c, alloc = consoles([port])
    assert c.ensure("inst-1", "127.0.0.1") == ("127.0.0.1", port)
    assert c.ensure("inst-1", "127.0.0.1") == ("127.0.0.1", port)  # idempotent
    assert _listening(port)
    c.release("inst-1")
    assert not _listening(port)
    assert alloc.released == [port] and not alloc.held
    assert c.get("inst-1") is None


def test_a_port_taken_meanwhile_is_skipped_and_handed_back(consoles):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    free = _free_port()
    try:
        c, alloc = consoles([taken.getsockname()[1], free])
        assert c.ensure("inst-1", "127.0.0.1") == ("127.0.0.1", free)
        assert taken.getsockname()[1] in alloc.released
        assert alloc.held == {free}
    finally:
        taken.close()


def test_tcp_client_is_told_when_the_runtime_refuses(consoles):
    port = _free_port()
    c, _ = consoles([port])
    c.ensure("inst-1", "127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"\r\n[console unavailable: ") and data.endswith(b"]\r\n")


def test_shutdown_releases_everything(consoles):
    ports = [_free_port(), _free_port()]
    c, alloc = consoles(list(ports))
    for name in ("a", "b"):
        c.ensure(name, "127.0.0.1")
    c.shutdown()
    assert sorted(alloc.released) == sorted(ports)
    assert not any(_listening(p) for p in ports)
    # a later start (nova-compute restarted on the same driver) works again
    again = _free_port()
    alloc.ports.append(again)
    assert c.ensure("a", "127.0.0.1") == ("127.0.0.1", again)
    assert _listening(again)


def test_disabled_means_unavailable_and_no_listener(consoles):
    from nova import conf as nova_conf
    conf = nova_conf.CONF
    c, alloc = consoles([_free_port()])
    conf.set_override("enabled", False, group="serial_console")
    try:
        c.up("inst-1")
        assert c.get("inst-1") is None and not alloc.held
        with pytest.raises(nova_exception.ConsoleTypeUnavailable):
            c.connect_info("inst-1", "inst-1")
    finally:
        conf.clear_override("enabled", group="serial_console")


def test_up_never_fails_the_action(consoles):
    c, _ = consoles([])  # an empty allocator: acquire raises
    from nova import conf as nova_conf
    nova_conf.CONF.set_override("enabled", True, group="serial_console")
    try:
        c.up("inst-1")  # logged, not raised
        assert c.get("inst-1") is None
    finally:
        nova_conf.CONF.clear_override("enabled", group="serial_console")
