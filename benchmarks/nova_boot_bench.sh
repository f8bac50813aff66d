#!/usr/bin/env bash
# Issue 5's figure: boot N servers (default 20) on 2 compute hosts through the nova
# API with our driver (real containers, one runtime per host) and, in the same run,
# with nova's fake driver; prints time to ACTIVE per server for both and the
# difference. The harness is nova's functional framework, which lives with the nova
# functional tests, so this runs the script there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
exec "$ROOT/.venv/bin/python" "$ROOT/tests/functional/nova/bench_boot.py" "${1:-20}"
