"""Managed networks (Linux bridges with optional dnsmasq) and nic plumbing.

Everything that talks netlink imports pyroute2 lazily: a daemon that never
touches a network should not pay its import cost in resident memory.
"""
