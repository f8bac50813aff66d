"""RuntimeAPI's own logic over a fake API tree: recursive removal through the
file API (children first, symlinks not followed), and pools that don't exist."""
from __future__ import annotations

from pylxd import exceptions as lxd_exceptions

from nova_lxd_py import runtime_api


class _Response:
    def __init__(self, kind: str, entries: list[str] | None = None):
        self.headers = {"X-LXD-type": kind}
        self._entries = entries

    def json(self) -> dict:
        assert self._entries is not None, "read the content of a file"
        return {"metadata": self._entries}

    def close(self) -> None:
        pass


class _NotFound:
    status_code = 404

    def json(self) -> dict:
        return {"error": "not found"}

    content = b"not found"


class _Files:
    """A container's tree: path -> 'file' | 'symlink' | list of children."""

    def __init__(self, tree: dict):
        self.tree = tree
        self.deleted: list[str] = []

    def get(self, params: dict, is_api: bool = True, stream: bool = False) -> _Response:
        assert stream, "a file's content must not be read"
        node = self.tree.get(params["path"])
        if node is None:
            raise lxd_exceptions.NotFound(_NotFound())
        if isinstance(node, list):
            return _Response("directory", node)
        return _Response(node)

    def delete(self, params: dict) -> None:
        path = params["path"]
        node = self.tree[path]
        assert not (isinstance(node, list) and any(
            f"{path}/{c}" in self.tree for c in node)), f"{path} deleted before its children"
        del self.tree[path]
        self.deleted.append(path)


class _Node(dict):
    def __getitem__(self, key):
        return self.setdefault(key, _Node())

    def __getattr__(self, name):
        return self[name]


class _Runtime(runtime_api.RuntimeAPI):
    def __init__(self, files: _Files):
        super().__init__(clients=None, op_timeout=10)
        self._api = _Node()
        self._api["instances"]["c1"]["files"] = files

    @property
    def api(self):
        return self._api


def test_delete_tree_children_first_and_symlinks_not_followed():
    files = _Files({"/config-drive": ["openstack", "link"],
                    "/config-drive/openstack": ["latest"],
                    "/config-drive/openstack/latest": ["meta_data.json"],
                    "/config-drive/openstack/latest/meta_data.json": "file",
                    "/config-drive/link": "symlink",
                    "/etc": ["passwd"], "/etc/passwd": "file"})
    assert _Runtime(files).delete_tree("c1", "/config-drive") is True
    assert files.deleted[-1] == "/config-drive"
    assert set(files.tree) == {"/etc", "/etc/passwd"}  # the symlink's target untouched


def test_delete_tree_of_nothing():
    assert _Runtime(_Files({})).delete_tree("c1", "/config-drive") is False


def test_no_pool_no_volumes():
    rt = runtime_api.RuntimeAPI(clients=None, op_timeout=10)
    assert rt.custom_volumes(None) == []
