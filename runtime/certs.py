"""Key pairs for the daemon and its clients, made with `cryptography`.

Kept apart from the daemon's modules on purpose: the daemon runs this in a short
child process (`python -m runtime.certs CRT KEY`), so the ~12 MB that importing
cryptography costs never stays in the long-running daemon.
"""
import datetime
import ipaddress
import os
import socket
import sys


def generate_keypair(crt_path: str, key_path: str, cn: str | None = None) -> None:
    """A self-signed EC P-384 certificate like LXD's, valid for ten years."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    host = socket.gethostname()
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "linuxcontainers.org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn or f"root@{host}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
           x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))
    fd = os.open(key_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(crt_path + ".tmp", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(key_path + ".tmp", key_path)
    os.replace(crt_path + ".tmp", crt_path)


def generate_in_child(crt_path: str, key_path: str) -> None:
    """generate_keypair in a child process (see the module docstring)."""
    import subprocess
    subprocess.run([sys.executable, "-m", "runtime.certs", crt_path, key_path], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    generate_keypair(sys.argv[1], sys.argv[2])
