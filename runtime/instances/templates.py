"""Image templates (metadata.yaml `templates:`), rendered on create, copy, start, rename.

LXD writes them in pongo2; the common subset (`{{ instance.name }}`,
`{{ config_get("k", "default") }}`, `{% if %}`) is also Jinja2, which renders them
in a sandbox. Files are written through InstanceFS, so a template path can't
escape the container root.
"""
import os

import yaml

from runtime.instances.files import InstanceFS


def load_metadata(volume_dir: str) -> dict:
    try:
        with open(os.path.join(volume_dir, "metadata.yaml")) as f:
            return yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}


def render_all(volume_dir: str, fs: InstanceFS, trigger: str, context: dict) -> list[str]:
    """Render templates whose `when` has trigger; returns the paths written."""
    meta = load_metadata(volume_dir)
    templates = meta.get("templates") or {}
    if not templates:
        return []
    from jinja2.sandbox import SandboxedEnvironment
    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    config = context.get("config", {})
    written = []
    for path, spec in sorted(templates.items()):
        if not isinstance(spec, dict) or trigger not in (spec.get("when") or []):
            continue
        if spec.get("create_only") and trigger != "create":
            try:
                fs.stat(path)
                continue
            except Exception:  # noqa: BLE001 - missing: render it
                pass
        tpl_file = os.path.join(volume_dir, "templates", spec.get("template", ""))
        try:
            with open(tpl_file) as f:
                source = f.read()
        except OSError:
            continue
        props = spec.get("properties") or {}
        text = env.from_string(source).render(
            trigger=trigger, path=path, container=context["instance"],
            instance=context["instance"], config=config, devices=context.get("devices", {}),
            properties=props,
            config_get=lambda key, default=None: config.get(key, default))
        fd = fs.open_write(path, 0, 0, int(str(spec.get("mode", "644")), 8), append=False)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        written.append(path)
    return written
