"""Pure parts of the fault handling: dnsmasq restart back-off and the mapping of
ENOSPC to a "pool full" answer."""
import errno

from runtime import errors
from runtime.network.dnsmasq import Backoff


def test_backoff_first_restart_at_once_then_doubling_capped():
    b = Backoff(first=1, cap=8, settle=30)
    delays = [b.died(now=0) for _ in range(6)]
    assert delays == [0, 1, 2, 4, 8, 8]


def test_backoff_forgets_after_a_restart_that_stayed_up():
    b = Backoff(first=1, cap=60, settle=30)
    b.died(now=0)
    b.died(now=0)
    b.started(now=1)
    assert b.died(now=40) == 0          # up for 39 s: a fresh death
    b.started(now=40)
    assert b.died(now=45) == 1          # died again within 5 s: back off
    assert not b.due(now=45.5) and b.due(now=46)


def test_no_space_names_the_pool():
    full = errors.no_space(OSError(errno.ENOSPC, "No space left on device", "/p/x"), "p1")
    assert isinstance(full, errors.StorageFull) and full.status == 507
    assert str(full) == "Storage pool 'p1' is full: no space left on device (writing /p/x)"
    cmd = errors.CommandFailed("cp -a failed (exit 1): cp: error writing 'a': "
                               "No space left on device\ncp: other")
    assert "cp: error writing 'a': No space left on device" in str(errors.no_space(cmd, "p"))
    assert errors.no_space(OSError(errno.EACCES, "denied"), "p") is None
    assert errors.no_space(errors.CommandFailed("tar: bad"), "p") is None


def test_raise_if_no_space_leaves_other_errors_alone():
    errors.raise_if_no_space(ValueError("x"), "p")
    try:
        errors.raise_if_no_space(OSError(errno.ENOSPC, "No space left on device"), "p")
    except errors.StorageFull as exc:
        assert "'p' is full" in str(exc)
    else:
        raise AssertionError("not raised")
