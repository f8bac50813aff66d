"""The one LXD client: what the driver, the `nova-lxd` CLI, the tests and the
benchmarks use to talk to a runtime (or to a real LXD).

It is pylxd (a well-kept library every LXD user knows) plus the thin layer pylxd
lacks: a session that ignores CA/proxy variables of the environment
(`connection`), operations waited for with a deadline and failures raised
(`api.LXDAPI.wait`), typed calls the callers share (`api`), and exec in
record-output mode without pylxd's 100 ms polling. Like LXD's own `client/`
package it speaks only the REST API: an import contract keeps the daemon's
internals (and nova) out of it.
"""
from runtime.client.api import LXDAPI
from runtime.client.connection import Endpoint, connect, session
from runtime.client.errors import (ClientError, ConfigError, OperationFailed,
                                   OperationTimeout, Unreachable)

__all__ = ["LXDAPI", "ClientError", "ConfigError", "Endpoint", "OperationFailed",
           "OperationTimeout", "Unreachable", "connect", "session"]
