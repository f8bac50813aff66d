"""`nova-lxd`: a command-line client for the runtime (and for LXD servers).

It speaks the LXD REST API through pylxd: `local` is the runtime's unix socket,
other remotes are HTTPS servers added with a fingerprint check, or simplestreams
image servers. Run it as `nova-lxd` or `python -m runtime.cli`.
"""
