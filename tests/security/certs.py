"""TLS material the security tests make with the `openssl` CLI: a CA, a broker certificate it signs, and a
second CA nobody trusts. Everything is PEM, which both Kafka (ssl.keystore.type=PEM) and Python read."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what clients trust (TRAJSTREAM_SSL_CAFILE)
    broker_keystore: Path  # the broker's private key and certificate, one PEM file
    broker_key: Path
    untrusted_ca: Path  # a CA that did not sign the broker's certificate


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr[-2000:]}")


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


def make_certificates(directory: Path, host: str = "127.0.0.1") -> Certificates:
    """A CA and a broker certificate for ``host`` (in its subjectAltName: clients check the name)."""
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "test-ca")
    _ca(directory, "rogue-ca")
    # -nodes writes an unencrypted PKCS#8 key ("BEGIN PRIVATE KEY"), the form Kafka's PEM keystore reads.
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "broker.key",
             "-out", "broker.csr", cwd=directory)  # fmt: skip
    (directory / "broker.ext").write_text(
        f"subjectAltName=IP:{host},DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "broker.ext", "-out", "broker.crt",
             cwd=directory)  # fmt: skip
    keystore = directory / "broker-keystore.pem"
    keystore.write_text((directory / "broker.key").read_text() + (directory / "broker.crt").read_text())
    for private in (keystore, directory / "broker.key", directory / "test-ca.key", directory / "rogue-ca.key"):
        private.chmod(0o600)
    return Certificates(directory / "test-ca.pem", keystore, directory / "broker.key", directory / "rogue-ca.pem")


def key_material(key: Path) -> list[str]:
    """Lines of a PEM private key's body: none of them may show up in any output."""
    return [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
