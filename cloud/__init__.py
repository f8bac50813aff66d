"""A real OpenStack on one machine, on the nova-lxd-py driver (``python -m cloud``).

Not part of the wheel: this package stands up upstream services (Keystone,
Glance, Placement, nova, Neutron with ML2/OVS) from the project's virtualenv
and Debian's MariaDB, RabbitMQ, memcached and Open vSwitch, each a separate
process under Debian's ``supervisor``, with every compute host in a network
namespace of its own. ``scripts/cloud`` and ``scripts/demo`` are thin wrappers.
"""
