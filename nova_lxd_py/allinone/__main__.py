import os
import sys

# nova's functional machinery monkey-patches eventlet unless told not to;
# nova 34's services run on native threads, and so does this cloud. The
# decision must be taken before anything imports eventlet (futurist would).
os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")
from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

from nova_lxd_py.allinone.demo import main  # noqa: E402

sys.exit(main())
