#!/usr/bin/env bash
# Boot from a Cinder volume (os-brick local connector over a loop device holding a
# root filesystem) against boot from a Glance image: time to ACTIVE through the
# nova API with our driver, N of each (default 10), alternating, in the same run.
# Runs in nova's functional harness, which lives with the nova functional tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
exec \
    "$ROOT/.venv/bin/python" "$ROOT/tests/functional/nova/bench_bfv.py" "${1:-10}"
