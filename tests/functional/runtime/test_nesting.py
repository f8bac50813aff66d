"""A container inside a security.nesting container starts a container of its own.

The busybox image has no liblxc, so the outer container gets the host's /usr
read-only at /host/usr and runs the host's lxc-start through the host's dynamic
loader. The nested container is unprivileged inside the outer one (its own
user namespace mapped to ids 100000-165535 of the outer container), on cgroups
the outer container owns (cgroup namespace, cgroupfs mounted rw).

Note: on this host (no AppArmor) LXD itself only differs for unprivileged
containers with security.nesting in its AppArmor profile; we apply the nesting
flag's mounts and prove the nested start works with it.
"""
import os

import pytest

LOADER = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"

NEST_SCRIPT = r"""set -e
H=/host/usr/lib/x86_64-linux-gnu
L="$H/ld-linux-x86-64.so.2 --library-path $H"
R=/var/lib/nlxc/nested/rootfs
mkdir -p /var/lib/nmnt $R/bin $R/proc $R/sys $R/dev $R/tmp
cp /bin/busybox $R/bin/busybox
ln -sf busybox $R/bin/sh
ln -sf busybox $R/bin/sleep
printf '#!/bin/sh\necho nested-ok > /ran\nexec sleep 600\n' > $R/init.sh
chmod 755 $R/init.sh
chown -R 100000:100000 $R
cat > /var/lib/nlxc/nested/config <<EOC
lxc.rootfs.path = dir:$R
lxc.rootfs.mount = /var/lib/nmnt
lxc.uts.name = nested
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.mount.auto = proc:mixed sys:mixed
lxc.autodev = 1
lxc.net.0.type = empty
lxc.tty.max = 0
lxc.pty.max = 8
lxc.init.cmd = /init.sh
EOC
$L /host/usr/bin/lxc-start -n nested -P /var/lib/nlxc -d -o /var/lib/nlxc/log -l warn
for i in $(seq 1 25); do [ -e $R/ran ] && break; sleep 0.2; done
echo "state=$($L /host/usr/bin/lxc-info -n nested -P /var/lib/nlxc -sH)"
echo "ran=$(cat $R/ran)"
PID=$($L /host/usr/bin/lxc-info -n nested -P /var/lib/nlxc -pH)
echo "uidmap=$(tr -s ' ' < /proc/$PID/uid_map)"
$L /host/usr/bin/lxc-stop -n nested -P /var/lib/nlxc -k
echo "after=$($L /host/usr/bin/lxc-info -n nested -P /var/lib/nlxc -sH)"
"""


def test_container_in_nesting_container_starts_a_container(make_instance):
    if not (os.path.exists(LOADER) and os.path.exists("/usr/bin/lxc-start")):
        pytest.skip("the host's liblxc tools and loader are needed inside the container")
    outer = make_instance(config={"security.nesting": "true"},
                          devices={"hostusr": {"type": "disk", "source": "/usr",
                                               "path": "/host/usr", "readonly": "true"}})
    outer.files.put("/tmp/nest.sh", NEST_SCRIPT)
    res = outer.execute(["sh", "/tmp/nest.sh"])
    log = outer.execute(["cat", "/var/lib/nlxc/log"]).stdout
    assert res.exit_code == 0, res.stdout + res.stderr + log
    out = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    assert out["state"] == "RUNNING", res.stdout + log
    assert out["ran"] == "nested-ok"
    assert out["uidmap"].split() == ["0", "100000", "65536"], "nested is unprivileged"
    assert out["after"] == "STOPPED"
