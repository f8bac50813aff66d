"""The `nova-lxd` CLI (`python -m runtime.cli`) against two real daemons: remotes
with fingerprint confirmation, launch/list/exec (piped and with a terminal),
files, snapshots, copy/move between remotes, images, profiles, config, and the
json/yaml output formats."""
import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from tests.functional.runtime.harness import BUSYBOX, REPO

if os.geteuid() != 0:
    pytest.skip("needs root (real containers)", allow_module_level=True)


@pytest.fixture(scope="module")
def cli(hosts, tmp_path_factory):
    conf = str(tmp_path_factory.mktemp("mgcliconf"))
    # The CA variables that make plain requests ignore pylxd's pinned certificate
    # (DESIGN.md section 5) are set on purpose: the CLI's client must not care.
    env = dict(os.environ, REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt",
               CURL_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
    env.update(NOVA_LXD_CONF=conf, LXD_DIR=hosts.daemons[0].lxd_dir, PYTHONPATH=REPO)

    def run(*args, stdin="", check=True, timeout=120):
        p = subprocess.run([sys.executable, "-m", "runtime.cli", *args], input=stdin,
                           env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=REPO)
        if check and p.returncode != 0:
            raise AssertionError(f"nova-lxd {' '.join(args)} -> {p.returncode}: "
                                 f"{p.stdout}{p.stderr}")
        return p
    run.env = env
    # the image everybody uses, through the CLI itself
    run("image", "import", BUSYBOX, "--alias", "busybox", "--public")
    hosts.local(1).api.patch(json={"config": {"core.trust_password": "mg-cli-pw"}})
    yield run


def _fp(path):
    import hashlib
    import ssl
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(path).read())).hexdigest()


def test_remote_add_checks_fingerprint(hosts, cli):
    url = hosts.daemons[1].url
    p = cli("remote", "add", "two", url, "--password", "mg-cli-pw", stdin="n\n", check=False)
    assert p.returncode == 1 and _fp(hosts.daemons[1].server_crt) in p.stdout
    assert "NACK" in p.stderr
    assert "two" not in cli("remote", "list", "--format", "json").stdout
    p = cli("remote", "add", "bad", url, "--password", "wrong", "--accept-certificate",
            check=False)
    assert p.returncode == 1 and "refused" in p.stderr
    cli("remote", "add", "two", url, "--password", "mg-cli-pw",
        stdin=_fp(hosts.daemons[1].server_crt) + "\n")
    remotes = json.loads(cli("remote", "list", "--format", "json").stdout)
    assert remotes["two"]["addr"] == url
    assert "Client certificate" not in cli("list", "two:").stderr


def test_launch_list_exec_formats(cli):
    name = f"mg-{uuid.uuid4().hex[:6]}"
    try:
        assert f"Launched {name}" in cli("launch", "busybox", name, "-c", "user.t=1").stdout
        table = cli("list").stdout
        assert name in table and "RUNNING" in table and table.startswith("+")
        data = json.loads(cli("list", "--format", "json").stdout)
        assert any(i["name"] == name and i["config"]["user.t"] == "1" for i in data)
        data = yaml.safe_load(cli("list", "--format", "yaml").stdout)
        assert any(i["name"] == name for i in data)
        # lxc's column strings and csv/compact, as scripts use them
        rows = list(csv.reader(io.StringIO(
            cli("list", "-c", "ns,user.t:T,P", "--format", "csv").stdout)))
        assert [name, "RUNNING", "1", "default"] in rows
        compact = cli("list", "-c", "nsp", "--format", "compact").stdout.splitlines()
        assert compact[0].split() == ["NAME", "STATE", "PID"]
        assert any(line.split()[:2] == [name, "RUNNING"] and line.split()[2].isdigit()
                   for line in compact[1:])
        bad = cli("list", "-c", "nZ", check=False)
        assert bad.returncode != 0 and "shorthand" in bad.stderr
        p = cli("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
        assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
        assert cli("exec", name, "--", "cat", stdin="piped in").stdout == "piped in"
        assert cli("exec", name, "--env", "MG=x", "--", "sh", "-c",
                   "echo $MG").stdout == "x\n"
        info = yaml.safe_load(cli("info", name).stdout)
        assert info["status"] == "Running" and info["pid"] > 0
    finally:
        cli("delete", "-f", name, check=False)


def test_interactive_exec_with_terminal(cli):
    name = f"mg-{uuid.uuid4().hex[:6]}"
    cli("launch", "busybox", name)
    try:
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(REPO)
            os.execvpe(sys.executable, [sys.executable, "-m", "runtime.cli", "exec", name,
                                        "--", "sh"], cli.env)
        out = b""
        stage = 0
        deadline = time.time() + 30
        poller = select.poll()    # not select(): descriptors can pass 1024 in a long run
        poller.register(fd, select.POLLIN)
        while time.time() < deadline:
            if poller.poll(200):
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if b"\x1b[6n" in chunk:      # busybox asks where the cursor is
                    os.write(fd, b"\x1b[1;1R")
            if stage == 0 and b"# " in out:
                os.write(fd, b"tty; echo $((6*7))\r")
                stage = 1
            elif stage == 1 and b"42" in out:
                os.write(fd, b"exit 5\r")
                stage = 2
        for _ in range(50):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"interactive exec did not end: {out!r}")
        assert b"/dev/pts/" in out and b"42" in out, out
        assert os.WEXITSTATUS(status) == 5
    finally:
        cli("delete", "-f", name, check=False)


def test_files_and_snapshots(cli, tmp_path):
    name = f"mg-{uuid.uuid4().hex[:6]}"
    cli("launch", "busybox", name)
    try:
        src = tmp_path / "in.txt"
        src.write_bytes(b"first")
        cli("file", "push", str(src), f"{name}/root/f.txt", "--mode", "0600")
        assert cli("exec", name, "--", "stat", "-c", "%a", "/root/f.txt").stdout == "600\n"
        cli("snapshot", name, "s1")
        src.write_bytes(b"second")
        cli("file", "push", str(src), f"{name}/root/f.txt")
        cli("stop", "-f", name)
        cli("restore", name, "s1")
        out = tmp_path / "out.txt"
        cli("file", "pull", f"{name}/root/f.txt", str(out))
        assert out.read_bytes() == b"first"
        assert cli("file", "pull", f"{name}/root/f.txt", "-").stdout == "first"
    finally:
        cli("delete", "-f", name, check=False)


def test_copy_and_move_between_remotes(hosts, cli):
    if "two" not in cli("remote", "list", "--format", "json").stdout:
        test_remote_add_checks_fingerprint(hosts, cli)
    name = f"mg-{uuid.uuid4().hex[:6]}"
    cli("launch", "busybox", name)
    try:
        cli("exec", name, "--", "sh", "-c", "echo carried > /root/c")
        cli("copy", name, f"two:{name}-c")     # a running source stays running
        assert "RUNNING" in cli("list", "--format", "csv").stdout
        assert cli("list", "two:", "--format", "csv").stdout.startswith(f"{name}-c,STOPPED")
        cli("move", name, f"two:{name}")         # running: stopped, moved, started there
        assert name not in cli("list", "--format", "csv").stdout
        assert cli("exec", f"two:{name}", "--", "cat", "/root/c").stdout == "carried\n"
        cli("move", f"two:{name}-c", f"two:{name}-r")   # same remote: a rename
        assert f"{name}-r," in cli("list", "two:", "--format", "csv").stdout
    finally:
        for n in (f"two:{name}", f"two:{name}-c", f"two:{name}-r", name):
            cli("delete", "-f", n, check=False)


def test_images_profiles_config(hosts, cli):
    if "two" not in cli("remote", "list", "--format", "json").stdout:
        test_remote_add_checks_fingerprint(hosts, cli)
    imgs = json.loads(cli("image", "list", "--format", "json").stdout)
    fp = next(i["fingerprint"] for i in imgs if i["aliases"][0]["name"] == "busybox")
    cli("image", "alias", "create", "bb2", fp)
    assert "bb2" in cli("image", "alias", "list").stdout
    cli("image", "alias", "delete", "bb2")
    assert "bb2" not in cli("image", "alias", "list").stdout
    cli("image", "copy", "local:busybox", "two:", "--alias", "fromone")
    assert "fromone" in cli("image", "list", "two:").stdout
    cli("image", "delete", "two:fromone")
    prof = f"mgp{uuid.uuid4().hex[:5]}"
    cli("profile", "create", prof)
    try:
        cli("profile", "set", prof, "user.k", "v")
        assert yaml.safe_load(cli("profile", "show", prof).stdout)["config"] == {"user.k": "v"}
        cli("profile", "unset", prof, "user.k")
        cli("profile", "edit", prof, stdin="config:\n  user.e: edited\ndescription: d\n")
        assert yaml.safe_load(cli("profile", "show", prof, "--format", "json").stdout)[
            "config"] == {"user.e": "edited"}
        name = f"mg-{uuid.uuid4().hex[:6]}"
        cli("init", "busybox", name)
        try:
            cli("profile", "add", name, prof)
            cli("config", "set", name, "user.mine", "1")
            shown = yaml.safe_load(cli("config", "show", name).stdout)
            assert shown["profiles"] == ["default", prof] and shown["config"]["user.mine"] == "1"
            assert cli("config", "get", name, "user.mine").stdout == "1\n"
            cli("config", "unset", name, "user.mine")
            assert cli("config", "get", name, "user.mine").stdout.strip() == ""
        finally:
            cli("delete", "-f", name, check=False)
    finally:
        cli("profile", "delete", prof, check=False)
    cli("config", "set", "two:", "user.srv", "yes")
    assert cli("config", "get", "two:", "user.srv").stdout == "yes\n"
    cli("config", "unset", "two:", "user.srv")


def test_errors_are_one_line(cli):
    p = cli("exec", "no-such-instance", "--", "true", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: ") and "Traceback" not in p.stderr
    p = cli("list", "nowhere:", check=False)
    assert p.returncode == 1 and "nowhere" in p.stderr


def test_image_server_remotes(hosts, cli):
    """A simplestreams remote and a runtime remote as image sources for launch/copy."""
    from tests.functional.runtime.test_image_servers import Streams
    streams = Streams()
    name = f"mg-{uuid.uuid4().hex[:6]}"
    try:
        streams.add_version("20260101_00:00", "from-streams")
        cli("remote", "add", "mgss", streams.url, "--protocol", "simplestreams", "--public")
        listed = cli("remote", "list", "--format", "csv").stdout
        assert f"mgss,{streams.url},simplestreams" in listed
        p = cli("list", "mgss:", check=False)
        assert p.returncode == 1 and "image server" in p.stderr
        cli("launch", "mgss:mg-busybox", name)
        assert cli("exec", name, "--", "cat", "/etc/mg-version").stdout == "from-streams"
        cli("image", "copy", "mgss:mg-busybox", "local:", "--alias", "ss-copy")
        assert "ss-copy" in cli("image", "list").stdout
    finally:
        cli("delete", "-f", name, check=False)
        cli("image", "delete", "ss-copy", check=False)
        cli("remote", "remove", "mgss", check=False)
        streams.close()
