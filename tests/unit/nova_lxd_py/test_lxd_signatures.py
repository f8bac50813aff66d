"""Every ComputeDriver method LXDDriver overrides takes nova's parameters in nova's order.

nova calls several driver methods positionally (resume_state_on_host_boot gets
share_info before block_device_info), so a reordered parameter list silently
swaps arguments instead of failing.
"""
import inspect

import pytest
from nova.virt import driver as nova_driver

from nova_lxd_py.driver import LXDDriver

OVERRIDDEN = sorted(
    name for name, fn in inspect.getmembers(nova_driver.ComputeDriver, inspect.isfunction)
    if not name.startswith("__") and getattr(LXDDriver, name) is not fn)


def test_some_methods_are_overridden():
    assert "spawn" in OVERRIDDEN and "resume_state_on_host_boot" in OVERRIDDEN


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_parameters_match_nova(name):
    base = inspect.signature(getattr(nova_driver.ComputeDriver, name)).parameters
    mine = inspect.signature(getattr(LXDDriver, name)).parameters
    assert list(mine) == list(base), f"{name}: {list(mine)} != nova's {list(base)}"
    for param, spec in base.items():
        if spec.default is not inspect.Parameter.empty:
            assert mine[param].default == spec.default, f"{name}({param}) default differs"
