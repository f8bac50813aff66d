"""The trust password, stored as scrypt salt+hash, never in clear."""
import hashlib
import hmac
import os


def hash_password(password: str) -> str:
    salt = os.urandom(32)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << 14, r=8, p=1, dklen=64)
    return salt.hex() + digest.hex()


def check_password(stored: str, password: str) -> bool:
    try:
        salt, digest = bytes.fromhex(stored[:64]), bytes.fromhex(stored[64:])
    except ValueError:
        return False
    got = hashlib.scrypt(password.encode(), salt=salt, n=1 << 14, r=8, p=1, dklen=64)
    return hmac.compare_digest(got, digest)
