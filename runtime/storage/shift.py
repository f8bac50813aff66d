"""Moving a filesystem tree between id maps by rewriting owners (uid/gid shift).

Used where an idmapped mount is not possible (overlay rootfs, privileged or
isolated containers). chown clears set-id bits, so modes are restored after it.
chown also drops file capabilities (the `security.capability` xattr, e.g.
ping's cap_net_raw), and a capability only counts in a user namespace whose
root owns it (the xattr's v3 `rootid`). So capabilities are read before the
chown and written back for the target map's root, as LXD's shifter does.
"""
import errno
import os
import stat
import struct

from runtime.base.idmap import IdMap

CAPS_XATTR = "security.capability"
# linux/capability.h: the revision in the top byte of magic_etc, flags below it.
_REV_MASK = 0xFF000000
_REV1, _REV2, _REV3 = 0x01000000, 0x02000000, 0x03000000
_SIZES = {_REV1: 12, _REV2: 20, _REV3: 24}


def _map(value: int, src: IdMap, dst: IdMap) -> int:
    return dst.to_host(src.to_container(value)) if value != -1 else -1


def caps_rootid(dst: IdMap) -> int:
    """The host uid file capabilities must name to count in dst's containers."""
    return 0 if dst.privileged else dst.to_host(0)


def shift_caps(value: bytes, rootid: int) -> bytes | None:
    """A `security.capability` value re-owned by host uid rootid (None: not a capability).

    rootid 0 gives the v2 form (capabilities of the initial namespace's root,
    what a privileged container sees); any other a v3 form naming that root.
    v1 values (one 32-bit set) are widened on the way.
    """
    if len(value) < 4:
        return None
    magic = struct.unpack_from("<I", value)[0]
    rev, flags = magic & _REV_MASK, magic & ~_REV_MASK
    if _SIZES.get(rev) != len(value):
        return None
    sets = value[4:12] + bytes(8) if rev == _REV1 else value[4:20]
    if rootid == 0:
        return struct.pack("<I", _REV2 | flags) + sets
    return struct.pack("<I", _REV3 | flags) + sets + struct.pack("<I", rootid)


def _read_caps(path: str) -> bytes | None:
    try:
        return os.getxattr(path, CAPS_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOVERFLOW):
            return None
        raise


def shift_tree(root: str, src: IdMap, dst: IdMap, clamp: bool = False) -> None:
    """Rewrite every owner below root from src's map to dst's (no-op when equal).

    clamp: the tree came from someone else (a migration peer), so even with equal
    maps every owner outside dst's range becomes its overflow id.
    """
    if src == dst and not clamp:
        return
    unmapped = 65534
    rootid = caps_rootid(dst)

    def fix(path: str) -> None:
        st = os.lstat(path)
        try:
            uid, gid = _map(st.st_uid, src, dst), _map(st.st_gid, src, dst)
        except ValueError:
            uid = gid = dst.to_host(unmapped) if not dst.privileged else unmapped
        caps = _read_caps(path) if stat.S_ISREG(st.st_mode) else None
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.lchown(path, uid, gid)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode))
        elif caps is None:
            return
        if caps is not None:
            shifted = shift_caps(caps, rootid)
            if shifted is not None and (shifted != caps or (uid, gid) != (st.st_uid, st.st_gid)):
                os.setxattr(path, CAPS_XATTR, shifted, follow_symlinks=False)

    fix(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            fix(os.path.join(dirpath, name))
