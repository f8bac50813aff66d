"""nova's services in native threads, as nova-compute 34 runs them.

Imported first by every module here. nova's functional package monkey-patches
eventlet unless told not to; in that mode the harness keeps each cell in one
in-memory SQLite connection shared by all green threads, and writes made by
the compute manager's background network allocation (the instance's network
info cache) were lost: servers showed no ``addresses`` and destroy got an
empty ``network_info``, whatever the driver. In native-threads mode nova's
fixtures use a file-backed SQLite per cell with a writer lock, as production
nova-compute uses a real database. The decision must be taken before anything
imports eventlet (oslo.privsep tries to).
"""
import os

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")
from nova import monkey_patch  # noqa: E402

monkey_patch.patch()
