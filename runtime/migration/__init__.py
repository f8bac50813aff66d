"""Copy and move instances between hosts."""
from runtime.migration.native import *  # noqa: F401,F403
from runtime.migration.native import _ws_url  # noqa: F401
