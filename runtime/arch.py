"""Architecture names and LXD's numeric ids ("2" is x86_64)."""
import platform

from runtime.errors import BadRequest

_IDS = {1: "i686", 2: "x86_64", 3: "armv7l", 4: "aarch64", 5: "ppc", 6: "ppc64",
        7: "ppc64le", 8: "s390x", 9: "mips", 10: "mips64", 11: "riscv32", 12: "riscv64"}
_ALIASES = {"i686": ["i386", "i586", "386", "x86", "i86pc"], "x86_64": ["amd64"],
            "armv7l": ["armel", "armhf", "arm", "armhfp", "armv7a", "armv7hl", "armv7hnl",
                       "armv7nl", "armv7", "armv7hf"],
            "aarch64": ["arm64", "arm64v8", "armv8"], "ppc": ["powerpc"],
            "ppc64": ["powerpc64", "ppc64"], "ppc64le": ["ppc64el"],
            "s390x": [], "mips": ["mipsel", "mipsle"], "mips64": ["mips64el", "mips64le"],
            "riscv32": [], "riscv64": []}
_BY_NAME = {name: name for name in _IDS.values()}
for _canon, _names in _ALIASES.items():
    for _n in _names:
        _BY_NAME[_n] = _canon


def host() -> str:
    return normalize(platform.machine())


def normalize(value: object) -> str:
    """Canonical architecture name from a name, alias or numeric id (int or str)."""
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"Invalid architecture {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        name = _IDS.get(int(value))
        if name is None:
            raise BadRequest(f"Unknown architecture id {value!r}")
        return name
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    raise BadRequest(f"Unknown architecture {value!r}")


def lxd_id(value: object) -> int:
    """LXD's numeric id of an architecture (migration headers carry it)."""
    name = normalize(value)
    return next(i for i, n in _IDS.items() if n == name)


def supported() -> list[str]:
    """Architectures this host runs (x86_64 also runs i686 containers)."""
    h = host()
    return [h, "i686"] if h == "x86_64" else [h]
