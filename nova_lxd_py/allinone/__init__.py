"""The all-in-one cloud: nova's services on the LXD driver, two compute hosts
each with its own runtime daemon, on one machine (``python -m
nova_lxd_py.allinone``)."""
