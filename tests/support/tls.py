"""A test certificate authority and certificates it signs (and ones it does not), written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA's certificate (what server.ca_file names)
    cert: Path  # the server's certificate, for 127.0.0.1 and localhost, signed by the CA
    key: Path
    other_ca: Path  # a CA that signed nothing here
    expired_cert: Path  # signed by the CA, expired
    wrong_name_cert: Path  # signed by the CA, for another name


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str, now: datetime.datetime):
    key = _key()
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, key, names: list[str], ips: list[str], not_before, not_after):
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return (x509.CertificateBuilder().subject_name(_name(names[0] if names else ips[0]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _ca("medperf-apply test CA", now)
    _, other = _ca("another CA", now)
    key = _key()
    good = _leaf(ca_key, ca_cert, key, ["localhost"], ["127.0.0.1"], now - datetime.timedelta(days=1),
                 now + datetime.timedelta(days=30))
    expired = _leaf(ca_key, ca_cert, key, ["localhost"], ["127.0.0.1"], now - datetime.timedelta(days=30),
                    now - datetime.timedelta(days=1))
    wrong = _leaf(ca_key, ca_cert, key, ["registry.elsewhere.test"], [], now - datetime.timedelta(days=1),
                  now + datetime.timedelta(days=30))
    files = {"ca": _pem(ca_cert), "other_ca": _pem(other), "cert": _pem(good), "expired_cert": _pem(expired),
             "wrong_name_cert": _pem(wrong),
             "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())}
    paths = {}
    for name, data in files.items():
        p = folder / f"{name}.pem"
        p.write_bytes(data)
        paths[name] = p
    paths["key"].chmod(0o600)
    return Certs(**paths)
