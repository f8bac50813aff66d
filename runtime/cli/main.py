"""Command dispatch for `nova-lxd` (argparse; one small function per command)."""
from __future__ import annotations

import argparse
import os
import re
import sys

import yaml

from runtime.cli import columns, output
from runtime.client import LXDAPI, OperationFailed
from runtime.cli.remotes import CLIError, Config

_HEX = re.compile(r"[0-9a-f]{12,64}")


# Helpers ------------------------------------------------------------------------
def _api_error(exc: Exception) -> str:
    resp = getattr(exc, "response", None)
    if resp is not None:
        try:
            return resp.json().get("error") or str(exc)
        except ValueError:
            pass
    return str(exc)


def _wait(client, op_url: str, progress: output.Progress | None = None,
          watch=None) -> dict:
    """Wait for an operation (no deadline), showing progress if asked; its object."""
    def update(meta: dict) -> None:
        text = (watch() if watch else None) or (meta.get("metadata") or {}).get(
            "download_progress") or (meta.get("metadata") or {}).get("fs_progress")
        if text:
            progress.update(text)

    try:
        return LXDAPI(client).wait_operation(
            op_url, on_update=update if progress is not None and progress.active else None)
    except OperationFailed as exc:
        raise CLIError(_api_error(exc))


def _post(client, path: str, body: dict, label: str | None = None, watch=None,
          params: dict | None = None, method: str = "post") -> dict:
    """POST (or PUT) to an API path; wait for the operation (with progress) if async."""
    res = getattr(LXDAPI(client).node(path), method)(json=body, params=params or {}).json()
    if res.get("type") == "async":
        prog = output.Progress(label) if label else None
        try:
            return _wait(client, res["operation"], prog, watch)
        finally:
            if prog:
                prog.done()
    return res


def _project(args) -> str:
    return getattr(args, "project", None) or "default"


def _params(args) -> dict:
    p = _project(args)
    return {"project": p} if p != "default" else {}


def _instance(client, args, name):
    return client.instances.get(name) if _project(args) == "default" else \
        _raw_instance(client, args, name)


def _raw_instance(client, args, name):
    return client.api.instances[name].get(params=_params(args)).json()["metadata"]


def _kv(pairs: list[str]) -> dict:
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise CLIError(f"Expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


# Instances ----------------------------------------------------------------------
def cmd_list(cfg: Config, args) -> str:
    remote, _ = cfg.split(args.remote + ":" if args.remote and ":" not in args.remote
                          else args.remote or f"{cfg.default}:")
    client = cfg.client(remote)
    data = client.api.instances.get(params={"recursion": 2, **_params(args)}).json()[
        "metadata"]
    try:
        rows, cols = columns.rows(data, args.columns)
    except columns.ColumnError as exc:
        raise CLIError(str(exc))
    return output.render(rows, cols, args.format,
                         raw=data if args.format in ("json", "yaml") else None)


def _image_source(cfg: Config, target_remote: str, ref: str) -> dict:
    remote, image = cfg.split(ref)
    key = "fingerprint" if _HEX.fullmatch(image) else "alias"
    if remote == target_remote:
        return {"type": "image", key: image}
    r = cfg.remote(remote)
    if r["addr"].startswith("unix://"):
        addr, cert = cfg.https_address(remote)
        return {"type": "image", key: image, "server": addr, "protocol": "lxd",
                "certificate": cert or ""}
    return {"type": "image", key: image, "server": r["addr"],
            "protocol": r.get("protocol", "lxd"), "certificate": cfg.server_cert(remote) or "",
            "mode": "pull"}


def cmd_launch(cfg: Config, args, start: bool = True) -> str:
    remote, name = cfg.split(args.name) if args.name else (cfg.default, "")
    client = cfg.client(remote)
    body = {"source": _image_source(cfg, remote, args.image), "config": _kv(args.config),
            "ephemeral": args.ephemeral}
    if name:
        body["name"] = name
    if args.profile:
        body["profiles"] = args.profile
    if args.storage:
        body["devices"] = {"root": {"type": "disk", "path": "/", "pool": args.storage}}
    meta = _post(client, "/1.0/instances", body, "Creating", params=_params(args))
    created = (meta.get("resources") or {}).get("instances") or [f"/{name}"]
    name = name or created[0].rsplit("/", 1)[-1].split("?")[0]
    if start:
        _post(client, f"/1.0/instances/{name}/state", {"action": "start"},
              params=_params(args), method="put")
    return f"{'Launched' if start else 'Created'} {name}"


def cmd_state(cfg: Config, args) -> str:
    for ref in args.names:
        remote, name = cfg.split(ref)
        client = cfg.client(remote)
        body = {"action": args.action, "force": bool(getattr(args, "force", False)),
                "timeout": getattr(args, "timeout", -1)}
        _post(client, f"/1.0/instances/{name}/state", body, params=_params(args),
              method="put")
    return ""


def cmd_delete(cfg: Config, args) -> str:
    for ref in args.names:
        remote, name = cfg.split(ref)
        client = cfg.client(remote)
        inst = client.api.instances[name].get().json()["metadata"]
        if inst["status"] != "Stopped":
            if not args.force:
                raise CLIError(f"{name} is running: stop it first or use --force")
            _post(client, f"/1.0/instances/{name}/state", {"action": "stop", "force": True},
                  method="put")
        res = client.api.instances[name].delete().json()
        _wait(client, res["operation"])
    return ""


def cmd_info(cfg: Config, args) -> str:
    remote, name = cfg.split(args.name)
    client = cfg.client(remote)
    if not name:
        return output.dump(client.api.get().json()["metadata"], args.format or "yaml")
    inst = client.api.instances[name].get(params={"recursion": 1}).json()["metadata"]
    state = client.api.instances[name].state.get().json()["metadata"]
    data = {"name": inst["name"], "status": inst["status"], "type": inst["type"],
            "architecture": inst["architecture"], "created": inst["created_at"],
            "profiles": inst["profiles"], "pid": state.get("pid"),
            "snapshots": [s["name"] for s in inst.get("snapshots") or []],
            "resources": {"processes": state.get("processes"),
                          "memory": (state.get("memory") or {}).get("usage")}}
    return output.dump(data, args.format or "yaml")


def cmd_exec(cfg: Config, args) -> int:
    from runtime.cli import execws
    remote, name = cfg.split(args.name)
    ep = cfg.endpoint(remote)
    command = args.command
    if "--" in command:         # `exec NAME [options] -- command...`
        cut = command.index("--")
        opts, command = command[:cut], command[cut + 1:]
        if opts:
            exec_options().parse_args(opts, namespace=args)
    if not command:
        raise CLIError("Nothing to execute: give a command after --")
    interactive = args.force_interactive or (not args.force_noninteractive
                                             and sys.stdin.isatty() and sys.stdout.isatty())
    env = {"TERM": os.environ.get("TERM", "xterm")} if interactive else {}
    env.update(_kv(args.env))
    try:
        return execws.run(ep, name, _project(args), command, env, interactive,
                          forward_stdin=not args.disable_stdin, cwd=args.cwd, user=args.user)
    except RuntimeError as exc:
        raise CLIError(str(exc))


# Files, snapshots ----------------------------------------------------------------
def _split_path(cfg: Config, ref: str) -> tuple[str, str, str]:
    remote, rest = cfg.split(ref)
    name, _, path = rest.partition("/")
    if not name or not path:
        raise CLIError(f"Expected [remote:]instance/path, got {ref!r}")
    return remote, name, "/" + path


def cmd_file_push(cfg: Config, args) -> str:
    remote, name, path = _split_path(cfg, args.target)
    client = cfg.client(remote)
    if path.endswith("/"):
        path += os.path.basename(args.source)
    with open(args.source, "rb") as f:
        data = f.read()
    headers = {"X-LXD-type": "file"}
    if args.mode:
        headers["X-LXD-mode"] = args.mode
    if args.uid is not None:
        headers["X-LXD-uid"] = str(args.uid)
    if args.gid is not None:
        headers["X-LXD-gid"] = str(args.gid)
    client.api.instances[name].files.post(params={"path": path, **_params(args)}, data=data,
                                          headers=headers)
    return ""


def cmd_file_pull(cfg: Config, args) -> str:
    remote, name, path = _split_path(cfg, args.source)
    client = cfg.client(remote)
    resp = client.api.instances[name].files.get(params={"path": path, **_params(args)})
    target = args.target
    if target == "-":
        sys.stdout.buffer.write(resp.content)
        return ""
    if os.path.isdir(target):
        target = os.path.join(target, os.path.basename(path))
    with open(target, "wb") as f:
        f.write(resp.content)
    return ""


def cmd_snapshot(cfg: Config, args) -> str:
    remote, name = cfg.split(args.name)
    client = cfg.client(remote)
    body = {"name": args.snapshot} if args.snapshot else {}
    _post(client, f"/1.0/instances/{name}/snapshots", body)
    return ""


def cmd_restore(cfg: Config, args) -> str:
    remote, name = cfg.split(args.name)
    client = cfg.client(remote)
    res = client.api.instances[name].put(json={"restore": args.snapshot}).json()
    _wait(client, res["operation"])
    return ""


# Copy / move ------------------------------------------------------------------
def _transfer(cfg: Config, args, move: bool) -> str:
    src_remote, src = cfg.split(args.source)
    dst_remote, dst = cfg.split(args.target) if args.target else (src_remote, "")
    dst = dst or src
    sc = cfg.client(src_remote)
    if src_remote == dst_remote:
        if move:
            _post(sc, f"/1.0/instances/{src}", {"name": dst})
            return ""
        body = {"name": dst, "source": {"type": "copy", "source": src,
                                        "instance_only": args.instance_only}}
        _post(sc, "/1.0/instances", body, "Copying")
        return ""
    dc = cfg.client(dst_remote)
    inst = sc.api.instances[src].get().json()["metadata"]
    addr, cert = cfg.https_address(src_remote)
    req = {"migration": True, "instance_only": args.instance_only}
    if not move and inst["status"] != "Stopped":
        req["allow_inconsistent"] = True   # copy of a running instance: leave it running
    res = sc.api.instances[src].post(json=req).json()
    op_id = res["operation"].split("/")[-1]
    body = {"name": dst, "architecture": inst["architecture"], "profiles": inst["profiles"],
            "config": {k: v for k, v in inst["config"].items()
                       if not k.startswith("volatile.") or move},
            "devices": inst["devices"], "ephemeral": inst["ephemeral"],
            "source": {"type": "migration", "mode": "pull",
                       "operation": f"{addr}/1.0/operations/{op_id}",
                       "certificate": cert or "", "secrets": res["metadata"]["metadata"],
                       "instance_only": args.instance_only}}

    def watch():
        meta = sc.api.operations[op_id].get().json()["metadata"]
        return (meta.get("metadata") or {}).get("fs_progress")
    try:
        _post(dc, "/1.0/instances", body, "Transferring", watch)
    except BaseException:
        try:
            sc.api.operations[op_id].delete()
        except Exception:  # noqa: BLE001 - the source op may be gone already
            pass
        raise
    _wait(sc, res["operation"])
    if move:
        res = sc.api.instances[src].delete().json()
        _wait(sc, res["operation"])
    return ""


def cmd_copy(cfg: Config, args) -> str:
    return _transfer(cfg, args, False)


def cmd_move(cfg: Config, args) -> str:
    return _transfer(cfg, args, True)


# Images -------------------------------------------------------------------------
def cmd_image_list(cfg: Config, args) -> str:
    remote = (args.remote or cfg.default).rstrip(":")
    client = cfg.client(remote)
    data = client.api.images.get(params={"recursion": 1, **_params(args)}).json()["metadata"]
    rows = [{"alias": [a["name"] for a in img.get("aliases") or []],
             "fingerprint": img["fingerprint"][:12],
             "public": "yes" if img.get("public") else "no",
             "description": (img.get("properties") or {}).get("description", ""),
             "arch": img.get("architecture"), "size": f"{img['size'] / 1e6:.2f}MB",
             "cached": "yes" if img.get("cached") else "no"} for img in data]
    return output.render(rows, [("ALIAS", "alias"), ("FINGERPRINT", "fingerprint"),
                                ("PUBLIC", "public"), ("DESCRIPTION", "description"),
                                ("ARCHITECTURE", "arch"), ("SIZE", "size"),
                                ("CACHED", "cached")],
                         args.format, raw=data if args.format in ("json", "yaml") else None)


def cmd_image_import(cfg: Config, args) -> str:
    remote = (args.remote or cfg.default).rstrip(":")
    client = cfg.client(remote)
    headers = {"X-LXD-public": "1" if args.public else "0"}
    files = [args.file] + ([args.rootfs] if args.rootfs else [])
    total = sum(os.path.getsize(f) for f in files)
    prog = output.Progress("Uploading")

    def chunks(path):
        sent = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sent += len(chunk)
                prog.bar(sent, total)
                yield chunk
    try:
        if args.rootfs:
            from requests_toolbelt import MultipartEncoder
            enc = MultipartEncoder(fields={
                "metadata": (os.path.basename(args.file), open(args.file, "rb")),
                "rootfs": (os.path.basename(args.rootfs), open(args.rootfs, "rb"))})
            headers["Content-Type"] = enc.content_type
            res = client.api.images.post(data=enc, headers=headers).json()
        else:
            headers["Content-Type"] = "application/octet-stream"
            res = client.api.images.post(data=chunks(args.file), headers=headers).json()
    finally:
        prog.done()
    meta = _wait(client, res["operation"])
    fp = meta["metadata"]["fingerprint"]
    for alias in args.alias or []:
        client.api.images.aliases.post(json={"name": alias, "target": fp})
    return f"Image imported with fingerprint: {fp}"


def cmd_image_copy(cfg: Config, args) -> str:
    src_remote, image = cfg.split(args.image)
    dst_remote = args.target.rstrip(":")
    client = cfg.client(dst_remote)
    source = _image_source(cfg, dst_remote + "-never", f"{src_remote}:{image}")
    body = {"source": source, "public": args.public, "auto_update": args.auto_update,
            "aliases": [{"name": a} for a in args.alias or []]}
    meta = _post(client, "/1.0/images", body, "Copying image")
    return f"Image copied successfully! ({meta['metadata']['fingerprint'][:12]})"


def cmd_image_delete(cfg: Config, args) -> str:
    remote, image = cfg.split(args.image)
    client = cfg.client(remote)
    fp = image
    if not _HEX.fullmatch(image):
        fp = client.api.images.aliases[image].get().json()["metadata"]["target"]
    res = client.api.images[fp].delete().json()
    _wait(client, res["operation"])
    return ""


def cmd_alias(cfg: Config, args) -> str:
    if args.alias_cmd == "list":
        remote = (args.remote or cfg.default).rstrip(":")
        data = cfg.client(remote).api.images.aliases.get(params={"recursion": 1}).json()[
            "metadata"]
        rows = [{"alias": a["name"], "fingerprint": a["target"][:12],
                 "description": a.get("description", "")} for a in data]
        return output.render(rows, [("ALIAS", "alias"), ("FINGERPRINT", "fingerprint"),
                                    ("DESCRIPTION", "description")], args.format,
                             raw=data if args.format in ("json", "yaml") else None)
    remote, alias = cfg.split(args.alias)
    client = cfg.client(remote)
    if args.alias_cmd == "create":
        client.api.images.aliases.post(json={"name": alias, "target": args.target})
    else:
        client.api.images.aliases[alias].delete()
    return ""


# Profiles and config -------------------------------------------------------------
def cmd_profile(cfg: Config, args) -> str:
    sub = args.profile_cmd
    if sub == "list":
        remote = (args.remote or cfg.default).rstrip(":")
        data = cfg.client(remote).api.profiles.get(params={"recursion": 1}).json()[
            "metadata"]
        rows = [{"name": p["name"], "description": p.get("description", ""),
                 "used_by": len(p.get("used_by") or [])} for p in data]
        return output.render(rows, [("NAME", "name"), ("DESCRIPTION", "description"),
                                    ("USED BY", "used_by")], args.format,
                             raw=data if args.format in ("json", "yaml") else None)
    remote, name = cfg.split(args.name)
    client = cfg.client(remote)
    ep = client.api.profiles[name]
    if sub == "create":
        client.api.profiles.post(json={"name": name, "description": args.description or ""})
    elif sub == "delete":
        ep.delete()
    elif sub == "show":
        return output.dump(ep.get().json()["metadata"], args.format or "yaml")
    elif sub in ("set", "unset"):
        prof = ep.get().json()["metadata"]
        config = prof.get("config") or {}
        if sub == "set":
            config.update(_kv([f"{args.key}={args.value}"] if args.value is not None
                              else [args.key]))
        else:
            config.pop(args.key, None)
        ep.put(json={"config": config, "devices": prof.get("devices") or {},
                     "description": prof.get("description", "")})
    elif sub == "edit":
        data = yaml.safe_load(sys.stdin.read()) or {}
        ep.put(json={"config": data.get("config") or {}, "devices": data.get("devices") or {},
                     "description": data.get("description", "")})
    elif sub in ("add", "remove"):
        iremote, iname = cfg.split(args.instance)
        ic = cfg.client(iremote)
        inst = ic.api.instances[iname].get().json()["metadata"]
        profiles = inst["profiles"]
        if sub == "add" and name not in profiles:
            profiles.append(name)
        elif sub == "remove":
            profiles = [p for p in profiles if p != name]
        res = ic.api.instances[iname].patch(json={"profiles": profiles}).json()
        if res.get("operation"):
            _wait(ic, res["operation"])
    return ""


def cmd_config(cfg: Config, args) -> str:
    """Instance config with `[remote:]instance`, server config with `remote:` alone."""
    remote, name = cfg.split(args.target)
    client = cfg.client(remote)
    if not name:
        current = client.api.get().json()["metadata"].get("config") or {}
        if args.config_cmd == "show":
            return output.dump(current, args.format or "yaml")
        if args.config_cmd == "get":
            return current.get(args.key, "")
        value = None if args.config_cmd == "unset" else args.value
        client.api.patch(json={"config": {args.key: value}})
        return ""
    ep = client.api.instances[name]
    inst = ep.get().json()["metadata"]
    if args.config_cmd == "show":
        return output.dump({k: inst[k] for k in ("architecture", "config", "devices",
                                                 "ephemeral", "profiles", "description")},
                           args.format or "yaml")
    if args.config_cmd == "get":
        return inst["config"].get(args.key, "")
    config = dict(inst["config"])
    if args.config_cmd == "set":
        config[args.key] = args.value
    else:
        config.pop(args.key, None)
    res = ep.put(json={"config": config, "devices": inst["devices"],
                       "profiles": inst["profiles"], "ephemeral": inst["ephemeral"],
                       "architecture": inst["architecture"],
                       "description": inst.get("description", "")}).json()
    if res.get("operation"):
        _wait(client, res["operation"])
    return ""


# Remotes ----------------------------------------------------------------------
def cmd_remote(cfg: Config, args) -> str:
    sub = args.remote_cmd
    if sub == "add":
        protocol = args.protocol or "lxd"
        return cfg.add(args.name, args.addr, protocol, accept=args.accept_certificate,
                       password=args.password or args.token, public=args.public)
    if sub == "list":
        rows = [{"name": n + (" (current)" if n == cfg.default else ""), "url": r["addr"],
                 "protocol": r.get("protocol", "lxd"),
                 "auth": "file access" if r["addr"].startswith("unix") else "tls",
                 "public": "YES" if r.get("public") else "NO"}
                for n, r in sorted(cfg.remotes.items())]
        return output.render(rows, [("NAME", "name"), ("URL", "url"),
                                    ("PROTOCOL", "protocol"), ("AUTH TYPE", "auth"),
                                    ("PUBLIC", "public")], args.format,
                             raw=cfg.remotes if args.format in ("json", "yaml") else None)
    if sub == "remove":
        if args.name == "local":
            raise CLIError("The local remote can't be removed")
        cfg.remote(args.name)
        del cfg.remotes[args.name]
        if cfg.default == args.name:
            cfg.default = "local"
        try:
            os.unlink(cfg.server_cert_path(args.name))
        except FileNotFoundError:
            pass
        cfg.save()
        return ""
    if sub == "switch":
        cfg.remote(args.name)
        cfg.default = args.name
        cfg.save()
        return ""
    if sub == "get-default":
        return cfg.default
    raise CLIError(f"Unknown remote command {sub!r}")


# Parser -----------------------------------------------------------------------
def exec_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-t", "--force-interactive", action="store_true",
                   help="a terminal even when stdin/stdout aren't one")
    p.add_argument("-T", "--force-noninteractive", action="store_true")
    p.add_argument("-n", "--disable-stdin", action="store_true")
    p.add_argument("--env", action="append", help="KEY=VALUE")
    p.add_argument("--cwd")
    p.add_argument("--user", type=int)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nova-lxd", description=(
        "Command-line client for nova-lxd-runtime (and LXD) servers."))
    common = argparse.ArgumentParser(add_help=False)
    for parser, default in ((p, None), (common, argparse.SUPPRESS)):
        parser.add_argument("--project", default=default, help="project to work in")
        parser.add_argument("--format", choices=list(output.FORMATS),
                            default=default if default else "table",
                            help="output format (default: table; yaml for show/info)")
    sp = p.add_subparsers(dest="cmd", required=True)

    s = sp.add_parser("list", help="list instances", parents=[common])
    s.add_argument("remote", nargs="?", help="remote: (default: the default remote)")
    s.add_argument("-c", "--columns", default=columns.DEFAULT,
                   help="columns, as lxc: shorthand letters (n name, s state, 4 IPv4, "
                        "6 IPv6, t type, S snapshots, a architecture, b storage pool, "
                        "c created, d description, D disk usage, e project, f/F base image, "
                        "l last used, m/M memory usage, N processes, p PID, P profiles, "
                        "u CPU usage) and/or custom columns config:KEY[:NAME] or "
                        "devices:DEV.KEY[:NAME], comma-separated "
                        f"(default {columns.DEFAULT})")
    s.set_defaults(fn=cmd_list)

    for name, start in (("launch", True), ("init", False)):
        s = sp.add_parser(name, help=f"{'create and start' if start else 'create'} an "
                                     "instance from an image", parents=[common])
        s.add_argument("image", help="[remote:]alias or fingerprint")
        s.add_argument("name", nargs="?", help="[remote:]name")
        s.add_argument("-c", "--config", action="append", help="key=value")
        s.add_argument("-p", "--profile", action="append", help="profile (repeatable)")
        s.add_argument("-s", "--storage", help="storage pool for the root disk")
        s.add_argument("-e", "--ephemeral", action="store_true")
        s.set_defaults(fn=lambda c, a, st=start: cmd_launch(c, a, st))

    for action in ("start", "stop", "restart", "pause"):
        s = sp.add_parser(action, help=f"{action} instances", parents=[common])
        s.add_argument("names", nargs="+")
        if action in ("stop", "restart"):
            s.add_argument("-f", "--force", action="store_true")
            s.add_argument("--timeout", type=float, default=-1)
        s.set_defaults(fn=cmd_state, action="freeze" if action == "pause" else action)

    s = sp.add_parser("delete", help="delete instances", parents=[common])
    s.add_argument("names", nargs="+")
    s.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    s.set_defaults(fn=cmd_delete)

    s = sp.add_parser("info", help="server or instance information", parents=[common])
    s.add_argument("name", nargs="?", default="", help="[remote:][instance]")
    s.set_defaults(fn=cmd_info)

    s = sp.add_parser("exec", help="run a command in an instance",
                      parents=[common, exec_options()])
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER,
                   help="options may also follow the name, before --")
    s.set_defaults(fn=cmd_exec)

    f = sp.add_parser("file", help="push and pull files", parents=[common]).add_subparsers(
        dest="file_cmd", required=True)
    s = f.add_parser("push", parents=[common])
    s.add_argument("source")
    s.add_argument("target", help="[remote:]instance/path")
    s.add_argument("--mode")
    s.add_argument("--uid", type=int)
    s.add_argument("--gid", type=int)
    s.set_defaults(fn=cmd_file_push)
    s = f.add_parser("pull", parents=[common])
    s.add_argument("source", help="[remote:]instance/path")
    s.add_argument("target", help="local path or - for stdout")
    s.set_defaults(fn=cmd_file_pull)

    s = sp.add_parser("snapshot", help="snapshot an instance", parents=[common])
    s.add_argument("name")
    s.add_argument("snapshot", nargs="?")
    s.set_defaults(fn=cmd_snapshot)
    s = sp.add_parser("restore", help="restore an instance snapshot", parents=[common])
    s.add_argument("name")
    s.add_argument("snapshot")
    s.set_defaults(fn=cmd_restore)

    for name, fn in (("copy", cmd_copy), ("move", cmd_move)):
        s = sp.add_parser(name, parents=[common],
                          help=f"{name} an instance (within or between remotes)")
        s.add_argument("source", help="[remote:]instance")
        s.add_argument("target", nargs="?", help="[remote:][name]")
        s.add_argument("--instance-only", action="store_true", help="without snapshots")
        s.set_defaults(fn=fn)

    im = sp.add_parser("image", help="images", parents=[common]).add_subparsers(
        dest="image_cmd", required=True)
    s = im.add_parser("list", parents=[common])
    s.add_argument("remote", nargs="?")
    s.set_defaults(fn=cmd_image_list)
    s = im.add_parser("import", parents=[common])
    s.add_argument("file", help="unified tarball, or metadata tarball with a rootfs")
    s.add_argument("rootfs", nargs="?")
    s.add_argument("remote", nargs="?", help="remote: to import into")
    s.add_argument("--alias", action="append")
    s.add_argument("--public", action="store_true")
    s.set_defaults(fn=cmd_image_import)
    s = im.add_parser("copy", parents=[common])
    s.add_argument("image", help="remote:alias or fingerprint")
    s.add_argument("target", help="remote:")
    s.add_argument("--alias", action="append")
    s.add_argument("--public", action="store_true")
    s.add_argument("--auto-update", action="store_true")
    s.set_defaults(fn=cmd_image_copy)
    s = im.add_parser("delete", parents=[common])
    s.add_argument("image")
    s.set_defaults(fn=cmd_image_delete)
    al = im.add_parser("alias", parents=[common]).add_subparsers(dest="alias_cmd", required=True)
    s = al.add_parser("create", parents=[common])
    s.add_argument("alias", help="[remote:]alias")
    s.add_argument("target", help="fingerprint")
    s.set_defaults(fn=cmd_alias)
    s = al.add_parser("delete", parents=[common])
    s.add_argument("alias")
    s.set_defaults(fn=cmd_alias)
    s = al.add_parser("list", parents=[common])
    s.add_argument("remote", nargs="?")
    s.set_defaults(fn=cmd_alias)

    pr = sp.add_parser("profile", help="profiles", parents=[common]).add_subparsers(
        dest="profile_cmd", required=True)
    s = pr.add_parser("list", parents=[common])
    s.add_argument("remote", nargs="?")
    s.set_defaults(fn=cmd_profile)
    for name in ("create", "delete", "show", "edit"):
        s = pr.add_parser(name, parents=[common])
        s.add_argument("name")
        if name == "create":
            s.add_argument("--description")
        s.set_defaults(fn=cmd_profile)
    s = pr.add_parser("set", parents=[common])
    s.add_argument("name")
    s.add_argument("key", help="key (then value) or key=value")
    s.add_argument("value", nargs="?")
    s.set_defaults(fn=cmd_profile)
    s = pr.add_parser("unset", parents=[common])
    s.add_argument("name")
    s.add_argument("key")
    s.set_defaults(fn=cmd_profile)
    for name in ("add", "remove"):
        s = pr.add_parser(name, help=f"{name} a profile to/from an instance", parents=[common])
        s.add_argument("instance")
        s.add_argument("name")
        s.set_defaults(fn=cmd_profile)

    co = sp.add_parser("config", parents=[common], help=(
        "instance config ([remote:]name) or server config (remote:)")).add_subparsers(
        dest="config_cmd", required=True)
    for name in ("show", "get", "set", "unset"):
        s = co.add_parser(name, parents=[common])
        s.add_argument("target")
        if name != "show":
            s.add_argument("key")
        if name == "set":
            s.add_argument("value")
        s.set_defaults(fn=cmd_config)

    rm = sp.add_parser("remote", help="remote servers", parents=[common]).add_subparsers(
        dest="remote_cmd", required=True)
    s = rm.add_parser("add", parents=[common])
    s.add_argument("name")
    s.add_argument("addr", help="https://host[:port], host[:port], or a trust token")
    s.add_argument("--accept-certificate", action="store_true",
                   help="trust the server certificate without asking")
    s.add_argument("--password")
    s.add_argument("--token")
    s.add_argument("--protocol", choices=["lxd", "simplestreams"])
    s.add_argument("--public", action="store_true", help="image server, no auth")
    for name in ("list", "remove", "switch", "get-default"):
        r = rm.add_parser(name, parents=[common])
        if name in ("remove", "switch"):
            r.add_argument("name")
        r.set_defaults(fn=cmd_remote)
    s.set_defaults(fn=cmd_remote)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = Config()
    try:
        result = args.fn(cfg, args)
    except CLIError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - API errors: one line, not a traceback
        if os.environ.get("NOVA_LXD_DEBUG"):
            raise
        print(f"Error: {_api_error(exc)}", file=sys.stderr)
        return 1
    if isinstance(result, int):
        return result
    if result:
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

