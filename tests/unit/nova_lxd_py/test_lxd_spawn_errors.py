"""Which start errors mean the image itself can't boot (fail the build, no reschedule)."""
import pytest

from nova_lxd_py.driver import unbootable_image_reason


@pytest.mark.parametrize("message, init", [
    # the bundled runtime's start error
    ('Failed to start the container: ../src/lxc/start.c:start:2197 - No such file or '
     'directory - Failed to exec "/sbin/init"', "/sbin/init"),
    ('Container exited at start: Failed to exec "/lib/systemd/systemd"',
     "/lib/systemd/systemd"),
])
def test_missing_init_is_the_images_fault(message, init):
    reason = unbootable_image_reason(RuntimeError(message))
    assert reason is not None and init in reason


@pytest.mark.parametrize("message", [
    "Unsafe image: entry '/etc/evil' has an absolute path",
    "Image template '../../../../etc/hostname' for /etc/hostname: can't be used (x)",
    "Image templates could not be rendered: rendering took longer than 5.0 s",
    "Invalid metadata.yaml: YAML aliases are not allowed",
    "Image unpacks to more than 10485760 bytes",
    "Path '/var/lib/cloud/seed/nocloud/user-data' is a fifo: only regular files, "
    "directories and symlinks can be read or written",
])
def test_hostile_image_refusals_are_the_images_fault(message):
    reason = unbootable_image_reason(RuntimeError(message))
    assert reason is not None and message[:30] in reason


@pytest.mark.parametrize("message", [
    "nic 'eth0': parent 'br-x' does not exist on this host",
    "Path '/etc/x' is a directory",
    "Failed to start the container: Failed to mount rootfs",
    # LXD 5.0's start error only points at its log: rescheduled like any failure
    "Failed to run: /usr/bin/lxd forkstart c1 /var/lib/lxd/containers "
    "/var/log/lxd/c1/lxc.conf: exit status 1",
    "",
])
def test_other_start_errors_are_not(message):
    assert unbootable_image_reason(RuntimeError(message)) is None
