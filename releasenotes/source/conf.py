# Sphinx configuration of the release notes (tox -e releasenotes).
project = "nova-lxd-py release notes"
copyright = "nova-lxd-py developers; Apache License 2.0"
extensions = ["reno.sphinxext"]
master_doc = "index"
html_theme = "alabaster"
