"""Loader shim: nova imports drivers only from ``nova.virt.<name>``.

With ``compute_driver = lxd_py.LXDDriver`` nova's load_compute_driver imports
this module and instantiates the driver that lives in ``nova_lxd_py``. The
package ships only this module of nova's namespace.
"""
from nova_lxd_py.driver import LXDDriver

__all__ = ["LXDDriver"]
