"""Copy and move instances between hosts (placeholder, filled below)."""
from runtime.migration.native import *  # noqa: F401,F403
from runtime.migration.native import _ws_url, attach, overlay_base  # noqa: F401
