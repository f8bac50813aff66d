"""tools/images/build-debian: the pure parts (mirror choice, recipe hash, the
stamp in metadata.yaml). The build itself is proven in
tests/functional/runtime/test_debian_image.py."""
import importlib.machinery
import importlib.util
import io
import os
import shutil
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PATH = os.path.join(REPO, "tools", "images", "build-debian")


@pytest.fixture
def bd():
    loader = importlib.machinery.SourceFileLoader("build_debian", PATH)
    spec = importlib.util.spec_from_loader("build_debian", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


INDEXTARGETS = (
    "http://mirror.invalid/debian-security/\tbookworm-security\tmain\n"
    "http://mirror.invalid/debian/\tbookworm-updates\tmain\n"
    "http://other.invalid/debian/\tbookworm\tcontrib\n"
    "http://mirror.invalid/debian/\tbookworm\tmain\n")


def test_mirror_is_the_suites_main_component(bd):
    assert bd.pick_mirror(INDEXTARGETS, "bookworm") == "http://mirror.invalid/debian/"


def test_no_mirror_names_the_override(bd):
    with pytest.raises(SystemExit, match=bd.MIRROR_ENV):
        bd.pick_mirror(INDEXTARGETS, "trixie")


def test_packages_drop_comments(bd):
    pkgs = bd.packages()
    assert "cloud-init" in pkgs and "python3-cffi-backend" in pkgs
    assert all(p and "#" not in p and " " not in p for p in pkgs)


def test_recipe_hash_follows_every_recipe_file(bd, tmp_path, monkeypatch):
    recipe = tmp_path / "debian"
    shutil.copytree(bd.RECIPE_DIR, recipe)
    monkeypatch.setattr(bd, "RECIPE_DIR", str(recipe))
    monkeypatch.setattr(bd, "HERE", str(tmp_path))
    first = bd.recipe_hash()
    assert bd.recipe_hash() == first, "stable"
    hosts = recipe / "overlay" / "etc" / "hosts"
    hosts.write_text(hosts.read_text() + "# changed\n")
    assert bd.recipe_hash() != first, "an overlay file is part of the recipe"
    second = bd.recipe_hash()
    (recipe / "packages").chmod(0o600)
    assert bd.recipe_hash() != second, "so is a file's mode"


def _image(path, metadata: str | None, first: str = "metadata.yaml") -> None:
    with tarfile.open(path, "w:gz") as tar:
        members = [(first, b"x")] if first != "metadata.yaml" else []
        if metadata is not None:
            members.append(("metadata.yaml", metadata.encode()))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_metadata_carries_the_recipe_stamp(bd, tmp_path):
    text = bd.metadata("ab" * 32)
    doc = yaml.safe_load(text)
    assert doc["properties"]["recipe"] == "ab" * 32
    assert doc["properties"]["os"] == "debian" and doc["properties"]["release"] == "bookworm"
    for spec in doc["templates"].values():
        assert os.path.isfile(os.path.join(bd.RECIPE_DIR, "templates", spec["template"]))
    path = tmp_path / "image.tar.gz"
    _image(path, text)
    assert bd.image_recipe(str(path)) == "ab" * 32


def test_image_recipe_of_missing_or_foreign_files(bd, tmp_path):
    assert bd.image_recipe(str(tmp_path / "absent.tar.gz")) is None
    (tmp_path / "junk").write_bytes(b"not a tarball")
    assert bd.image_recipe(str(tmp_path / "junk")) is None
    _image(tmp_path / "nostamp.tar.gz", "architecture: x86_64\n")
    assert bd.image_recipe(str(tmp_path / "nostamp.tar.gz")) is None
    _image(tmp_path / "late.tar.gz", "properties:\n  recipe: x\n", first="rootfs")
    assert bd.image_recipe(str(tmp_path / "late.tar.gz")) is None, "metadata.yaml comes first"
