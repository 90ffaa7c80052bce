"""WireGuard keys: X25519 pairs encoded as ``wg`` does, and their encryption at rest."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ValidationError

_RAW = serialization.Encoding.Raw


@dataclass(frozen=True)
class KeyPair:
    """A WireGuard key pair, each half base64 of 32 bytes. ``repr`` hides the private half."""

    private_key: str
    public_key: str

    def __repr__(self) -> str:
        return f"KeyPair(public_key={self.public_key!r}, private_key=<hidden>)"


class KeyDecryptionError(RuntimeError):
    """A stored private key cannot be decrypted (SECRET_KEY changed or data corrupted)."""


def generate_keypair() -> KeyPair:
    """A fresh X25519 key pair (``wg genkey | wg pubkey``)."""
    private = X25519PrivateKey.generate()
    private_raw = private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return KeyPair(private_key=base64.b64encode(private_raw).decode(), public_key=public_key_of(private_raw))


def public_key_of(private_key: str | bytes) -> str:
    """The base64 public key of a private key given as base64 text or 32 raw bytes."""
    raw = base64.b64decode(private_key, validate=True) if isinstance(private_key, str) else private_key
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    return base64.b64encode(public.public_bytes(_RAW, serialization.PublicFormat.Raw)).decode()


def validate_public_key(value: object, *, field: str = "public_key") -> str:
    """A WireGuard public key: base64 of exactly 32 bytes (44 characters ending in '=')."""
    try:
        if isinstance(value, str) and len(value) == 44 and len(base64.b64decode(value, validate=True)) == 32:
            return value
    except binascii.Error:
        pass
    raise ValidationError(field, f"{field} must be a WireGuard key: base64 of 32 bytes")


def _fernet(secret: str) -> Fernet:
    # A dedicated key derived from SECRET_KEY, so the session-signing key is never used raw here.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"privnet wireguard private keys").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_private_key(private_key: str, secret: str) -> bytes:
    """The private key sealed (AES-128-CBC + HMAC, Fernet) with a key derived from ``secret``."""
    return _fernet(secret).encrypt(private_key.encode())


def decrypt_private_key(sealed: bytes, secret: str) -> str:
    """The base64 private key from ``encrypt_private_key``'s output."""
    try:
        return _fernet(secret).decrypt(sealed).decode()
    except InvalidToken:
        raise KeyDecryptionError("a stored private key cannot be decrypted: was SECRET_KEY changed?") from None
