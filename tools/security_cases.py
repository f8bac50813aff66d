"""The security suite's figures for doc/source/admin/security.md, from pytest's own
collection (nothing runs): cases per class of issue 12, and where each reported
reproduction is tested.

`python -m tools.security_cases` prints the tables; tests/unit/doc checks that the
page holds exactly them, so a case added, removed or renamed shows up in the doc.
"""
from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEC = "tests/functional/runtime/security/"
RT = "tests/functional/runtime/"

# (class, node id prefixes whose collected cases it counts)
CLASSES: list[tuple[str, tuple[str, ...]]] = [
    ("Route x caller matrix (every endpoint table; admin, metrics, restricted, "
     "untrusted, none)", (SEC + "test_route_matrix.py",)),
    ("Views, operation secrets, events, tokens, metrics",
     (SEC + "test_views.py", SEC + "test_operations_events.py", SEC + "test_metrics.py")),
    ("Cross-project sources (copy, publish, volume copy, image copy, disk sources)",
     (SEC + "test_cross_project.py",)),
    ("`restricted.*` matrix (create, update, profile, profile edit, hot-plug, start, copy)",
     (SEC + "test_restricted_projects.py",)),
    ("Hostile images (templates, tar tricks, special files, setuid, bombs)",
     (SEC + "test_image_hostile.py",)),
    ("Files API on FIFOs, sockets, device nodes", (SEC + "test_input_files.py",)),
    ("Migration header and stream fuzzing (scripted peer)",
     (SEC + "test_peer_migration.py",)),
    ("Control characters in every rendered key", (SEC + "test_input_controlchars.py",)),
    ("Body, frame and input limits (daemon RSS measured)", (SEC + "test_input_limits.py",)),
    ("Crash recovery (atomic restore, sweeps, modes)",
     (SEC + "test_input_crash_recovery.py",)),
    ("Trust-model reproductions", (SEC + "test_reproductions.py",)),
    ("Host mounts of tenant volumes out of host users' reach",
     (RT + "test_block_disks.py::test_volume_mounts_are_out_of_host_users_reach",
      RT + "test_btrfs.py::test_pool_image_is_roots_alone")),
]

# (the reproduction, as issue 12 or this page reports it; the test that fails it)
REPRODUCTIONS: list[tuple[str, str]] = [
    ("A `metrics` certificate could `PATCH /1.0`",
     SEC + "test_reproductions.py::test_metrics_certificate_cannot_patch_server_config"),
    ("A p1 certificate read an admin's join-token secret, let a stranger join, "
     "`PATCH /1.0`",
     SEC + "test_reproductions.py::test_restricted_certificate_cannot_steal_a_join_token"),
    ("A p1 certificate copied p2's instance and read its files",
     SEC + "test_reproductions.py::"
     "test_restricted_certificate_cannot_copy_another_projects_instance"),
    ("A restricted certificate made a privileged container, `raw.lxc` hook, disk `/`",
     SEC + "test_reproductions.py::"
     "test_restricted_project_refuses_privileged_raw_lxc_and_host_root"),
    ("`template: ../../../../etc/hostname` read the host's hostname",
     SEC + "test_image_hostile.py::test_image_hostile[template-dotdot-host-hostname]"),
    ("A FIFO at the NoCloud `user-data` path froze the daemon",
     SEC + "test_input_files.py::"
     "test_input_files_fifo_at_seed_path_does_not_freeze_the_daemon"),
    ("A push-mode peer's absolute snapshot name made a root-owned file",
     SEC + "test_peer_migration.py::test_peer_header_fuzz[snapshot-name-absolute-path]"),
    ("A newline in `environment.X` added an `lxc.hook.pre-start`",
     SEC + "test_input_controlchars.py::"
     "test_input_reproduction_environment_newline_adds_a_host_hook"),
    ("A newline in a nic `name` added a mount",
     SEC + "test_input_controlchars.py::"
     "test_input_reproduction_nic_name_newline_adds_a_mount"),
    ("A 150 MB unauthenticated body drove the daemon to 495 MB",
     SEC + "test_input_limits.py::test_input_unauthenticated_150mb_body"),
    ("A host user reached a tenant volume's setuid-root file under `LXD_DIR/disks`",
     RT + "test_block_disks.py::test_volume_mounts_are_out_of_host_users_reach"),
    ("A host user read a btrfs pool's loop image (0644 in a traversable directory)",
     RT + "test_btrfs.py::test_pool_image_is_roots_alone"),
    ("A disk with source `p2_<vol>`, from a project using the default project's "
     "volumes, mounted p2's volume",
     SEC + "test_cross_project.py::test_pool_disk_cannot_name_another_projects_volume"),
]


def collected() -> list[str]:
    paths = sorted({p.split("::")[0] for _, prefixes in CLASSES for p in prefixes})
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", *paths], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def _matches(node: str, prefix: str) -> bool:
    return node == prefix or node.startswith(prefix + ("::" if "::" not in prefix else "["))


def tables(nodes: list[str] | None = None) -> str:
    nodes = collected() if nodes is None else nodes
    lines = ["| Class | Cases |", "|---|---:|"]
    total = 0
    for label, prefixes in CLASSES:
        count = sum(1 for n in nodes if any(_matches(n, p) for p in prefixes))
        total += count
        lines.append(f"| {label} | {count} |")
    lines += [f"| **Total** | **{total}** |", "", "| Reproduction | Test |", "|---|---|"]
    for what, node in REPRODUCTIONS:
        if not any(_matches(n, node) for n in nodes):
            raise LookupError(f"no collected test for {what!r}: {node}")
        lines.append(f"| {what} | `{node.removeprefix('tests/functional/runtime/')}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(tables())
