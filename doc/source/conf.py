# Sphinx configuration of nova-lxd-py's documentation (tox -e docs).
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "nova-lxd-py"
copyright = "nova-lxd-py developers; Apache License 2.0"
extensions = [
    "oslo_config.sphinxext",   # .. show-options:: (configuration reference)
    "myst_parser",             # Markdown pages shared with the repository
    "sphinxarg.ext",           # .. argparse:: (the nova-lxd CLI)
    "runtime_routes",          # .. runtime-routes:: (the runtime's REST endpoints)
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]
