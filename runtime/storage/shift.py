"""Moving a filesystem tree between id maps by rewriting owners (uid/gid shift).

Used where an idmapped mount is not possible (overlay rootfs, privileged or
isolated containers). chown clears set-id bits, so modes are restored after it.
"""
import os
import stat

from runtime.instances.idmap import IdMap


def _map(value: int, src: IdMap, dst: IdMap) -> int:
    return dst.to_host(src.to_container(value)) if value != -1 else -1


def shift_tree(root: str, src: IdMap, dst: IdMap, clamp: bool = False) -> None:
    """Rewrite every owner below root from src's map to dst's (no-op when equal).

    clamp: the tree came from someone else (a migration peer), so even with equal
    maps every owner outside dst's range becomes its overflow id.
    """
    if src == dst and not clamp:
        return
    unmapped = 65534

    def fix(path: str) -> None:
        st = os.lstat(path)
        try:
            uid, gid = _map(st.st_uid, src, dst), _map(st.st_gid, src, dst)
        except ValueError:
            uid = gid = dst.to_host(unmapped) if not dst.privileged else unmapped
        if (uid, gid) == (st.st_uid, st.st_gid):
            return
        os.lchown(path, uid, gid)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))

    fix(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            fix(os.path.join(dirpath, name))
