"""Projects: CRUD and rename, with features.* deciding what a project owns itself.

With `features.images`/`features.profiles`/`features.storage.volumes` true a
project keeps its own images, profiles or custom volumes; otherwise it shares
the default project's (the core asks `daemon.profile_project()` and
`daemon.image_project()`). Features can only change while a project is empty,
as in LXD, because flipping one would orphan what was made under the old rule.
"""
from __future__ import annotations

import re

from runtime.instances import restrictions
from runtime.errors import BadRequest, Conflict, NotFound

FEATURES = ("features.images", "features.profiles", "features.storage.volumes",
            "features.networks", "features.storage.buckets")
# LXD's rules (no '/', '_', spaces, quotes, backslashes; not '*', '.', '..'), plus
# no URL specials and printable ASCII only. No '_' matters most: on disk a
# volume is "<project>_<name>", so a '_' in a project name could make two
# projects' instances share a directory.
_NAME = re.compile(r"^[!-~]{1,63}$")
_NAME_FORBIDDEN = set("/_\\'\"?&#*")
LIMIT_KEYS = ("limits.instances", "limits.containers", "limits.virtual-machines",
              "limits.cpu", "limits.memory", "limits.processes", "limits.disk",
              "limits.networks")


def _validate_config(config: object) -> dict[str, str]:
    if not isinstance(config, dict):
        raise BadRequest("Invalid project config: must be an object")
    out = {}
    for key, value in config.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        if not isinstance(value, str):
            raise BadRequest(f"Invalid project config key {key!r}: values are strings")
        if key in FEATURES:
            if value not in ("true", "false", ""):
                raise BadRequest(f"Invalid value for project config key {key!r}: "
                                 "must be true or false")
        elif key == "restricted" or key.startswith("restricted."):
            try:
                restrictions.validate_key(key, value)
            except ValueError as exc:
                raise BadRequest(f"Invalid value for project config key {key!r}: {exc}")
        elif key in LIMIT_KEYS or key.startswith(("user.", "images.", "backups.")):
            pass
        else:
            raise BadRequest(f"Unknown project config key: {key!r}")
        out[key] = value
    return out


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", "..") or \
            _NAME_FORBIDDEN & set(name):
        raise BadRequest(f"Invalid project name {name!r}: use up to 63 printable ASCII "
                         "characters without spaces, quotes or any of / \\ _ ? & # *")
    return name


class Projects:
    def __init__(self, daemon):
        self.d = daemon

    def get(self, name: str) -> dict:
        row = self.d.project_rows.get(name)
        if row is None:
            raise NotFound(f"Project {name!r} not found")
        return row

    def used_by(self, name: str) -> list[str]:
        q = "" if name == "default" else f"?project={name}"
        db = self.d.db
        out = [f"/1.0/instances/{n}{q}" for n in db.names("instances", project=name)]
        out += [f"/1.0/profiles/{n}{q}" for n in self.d.profile_rows.names(name)]
        out += [f"/1.0/images/{f}{q}" for f in self.d.image_rows.fingerprints(name)]
        out += [f"/1.0/storage-pools/{r['pool']}/volumes/custom/{r['name']}{q}"
                for r in db.select("storage_volumes", {"project": name, "type": "custom"})]
        return sorted(out)

    def _empty(self, name: str) -> bool:
        """Nothing but its own empty default profile."""
        for url in self.used_by(name):
            if not url.startswith("/1.0/profiles/default"):
                return False
        prof = self.d.profile_rows.get(name, "default")
        return prof is None or not (prof["config"] or prof["devices"])

    def render(self, row: dict) -> dict:
        return {"name": row["name"], "description": row["description"],
                "config": row["config"], "used_by": self.used_by(row["name"])}

    def create(self, name: object, description: str, config: object) -> None:
        name = validate_name(name)
        config = _validate_config(config or {})
        if self.d.project_rows.exists(name):
            raise Conflict(f"Project {name!r} already exists")
        for feature in ("features.images", "features.profiles",
                        "features.storage.volumes"):
            config.setdefault(feature, "true")
        with self.d.db.transaction():
            self.d.project_rows.create(name, description, config)
            if config.get("features.profiles") == "true":
                self.d.profile_rows.create(name, "default",
                                           f"Default profile for project {name}")
        self.d.bus.lifecycle("project-created", f"/1.0/projects/{name}", name)

    def update(self, name: str, config: object, description: str | None,
               patch: bool) -> None:
        row = self.get(name)
        config = _validate_config(config if config is not None else
                                  (row["config"] if patch else {}))
        if patch:
            config = {**row["config"], **config}
        changed = [f for f in FEATURES
                   if config.get(f, "false") != row["config"].get(f, "false")]
        restrictions.check_project(self.d, name, config)
        if changed and name == "default":
            raise BadRequest("The features of the default project can't be changed")
        if changed and not self._empty(name):
            raise BadRequest(f"Features {', '.join(changed)} can only be changed on an "
                             "empty project")
        with self.d.db.transaction():
            self.d.project_rows.update(name, config=config,
                                       description=row["description"] if description is None
                                       else description)
            if "features.profiles" in changed:
                if config.get("features.profiles") == "true":
                    if not self.d.profile_rows.exists(name, "default"):
                        self.d.profile_rows.create(name, "default",
                                                   f"Default profile for project {name}")
                else:
                    self.d.profile_rows.delete_project(name)
        self.d.bus.lifecycle("project-updated", f"/1.0/projects/{name}", name)

    def rename(self, name: str, new: object) -> None:
        self.get(name)
        new = validate_name(new)
        if name == "default":
            raise BadRequest("The default project can't be renamed")
        if self.d.project_rows.exists(new):
            raise Conflict(f"Project {new!r} already exists")
        if not self._empty(name):
            raise BadRequest("Only empty projects can be renamed")
        with self.d.db.transaction():
            self.d.project_rows.rename(name, new)
            self.d.profile_rows.move_project(name, new)
            self.d.image_rows.move_project(name, new)
            self.d.alias_rows.move_project(name, new)
            self.d.db.update("storage_volumes", {"project": name}, project=new)
        self.d.bus.lifecycle("project-renamed", f"/1.0/projects/{new}", new,
                             {"old_name": name})

    def delete(self, name: str) -> None:
        self.get(name)
        if name == "default":
            raise BadRequest("The default project can't be deleted")
        if not self._empty(name):
            raise BadRequest(f"Only empty projects can be removed (in use by "
                             f"{', '.join(self.used_by(name))})")
        with self.d.db.transaction():
            self.d.profile_rows.delete_project(name)
            self.d.project_rows.delete(name)
        self.d.bus.lifecycle("project-deleted", f"/1.0/projects/{name}", name)
