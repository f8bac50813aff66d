"""get_console_output hands nova bytes: nova-compute latin-1-encodes a str
(and fails on any other character, such as the U+2026 systemd prints)."""
from types import SimpleNamespace

from nova_lxd_py.driver import LXDDriver


def test_console_output_is_bytes_nova_can_tail():
    log = "Starting systemd\u2026 ok\n".encode() * 3
    driver = LXDDriver.__new__(LXDDriver)
    driver._rt = SimpleNamespace(console_log=lambda name: log, get=lambda name: {})
    driver._console_max = 1024
    driver._require = lambda instance: None
    out = driver.get_console_output(None, SimpleNamespace(name="instance-1"))
    assert out == log
    # what nova-compute then does with it (ComputeManager.get_console_output)
    assert out.decode("ascii", "replace").count("Starting systemd") == 3
