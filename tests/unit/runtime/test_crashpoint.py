"""runtime.crashpoint: inert unless named, then a SIGKILL at the n-th visit."""
import os
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = """
from runtime import crashpoint
for i in range(3):
    crashpoint.hit("other.step")
    print("visit", i, flush=True)
    crashpoint.hit("create.volume")
print("done", flush=True)
"""


def _run(env_value):
    env = {k: v for k, v in os.environ.items() if k != "NLR_CRASH_AT"}
    if env_value is not None:
        env["NLR_CRASH_AT"] = env_value
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_unset_does_nothing():
    p = _run(None)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "done"


def test_named_step_kills_at_first_visit():
    p = _run("create.volume")
    assert p.returncode == -signal.SIGKILL
    assert p.stdout.splitlines() == ["visit 0"]


def test_nth_visit():
    p = _run("create.volume@3")
    assert p.returncode == -signal.SIGKILL
    assert p.stdout.splitlines() == ["visit 0", "visit 1", "visit 2"]


def test_other_step_names_never_kill():
    p = _run("create.vol")
    assert p.returncode == 0
