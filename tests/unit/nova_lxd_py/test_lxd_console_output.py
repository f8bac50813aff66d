"""get_console_output returns a str (nova's driver contract) that nova-compute
can latin-1-encode: a UTF-8 log decoded as UTF-8 failed there on the first
character above U+00FF (such as the U+2026 systemd prints), a 500 for
`openstack console log show`."""
from types import SimpleNamespace

from nova_lxd_py.driver import LXDDriver


def test_console_output_survives_novas_latin1_round_trip():
    log = "Starting systemd\u2026 ok\n".encode() * 3
    driver = LXDDriver.__new__(LXDDriver)
    driver._rt = SimpleNamespace(console_log=lambda name: log)
    driver._console_max = 1024
    driver._require = lambda instance: None
    out = driver.get_console_output(None, SimpleNamespace(name="instance-1"))
    assert isinstance(out, str)
    # what nova-compute does with it (ComputeManager.get_console_output)
    assert out.encode("latin-1") == log
    assert out.encode("latin-1").decode("ascii", "replace").count("Starting systemd") == 3
