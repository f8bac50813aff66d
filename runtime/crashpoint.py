"""Test-only crash injection: die with SIGKILL at a named step.

Recovery code (start-up reconciliation) is only as good as the crashes it was
tried against. `NLR_CRASH_AT=<step>` in the daemon's environment makes the
daemon kill itself, exactly as `kill -9` would, the first time it reaches that
step; `<step>@<n>` waits for the n-th time. Unset (production), `hit()` is one
string comparison against an empty value and does nothing.

Steps are named `<action>.<moment>`, e.g. `create.volume`, `restore.swapped`;
the functional tests in tests/functional/runtime/test_crash_recovery.py list them.
"""
import os
import signal

ENV = "NLR_CRASH_AT"
_step, _, _count = os.environ.get(ENV, "").partition("@")
_remaining = int(_count) if _count.isdigit() else 1


def hit(step: str) -> None:
    """Crash here if the environment names this step (and this is its n-th visit)."""
    global _remaining
    if not _step or step != _step:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
