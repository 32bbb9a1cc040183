"""Per-site sealed credentials: the hub seals a site's registry credential to the site's public key (kept in
the site's stack file); only the site's private key (a secret of the site's own stack) opens it.

libsodium sealed boxes (X25519 + XSalsa20-Poly1305, through PyNaCl): anonymous sender, so the hub needs no key
of its own, and a sealed value published where every stack can read it tells nothing to any other site.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

KEY_BYTES = 32


class SealError(ValueError):
    """A key or sealed value that is malformed, or a sealed value this key cannot open."""


@dataclass(frozen=True)
class SiteKeyPair:
    private_key: str  # base64; a secret of the site's stack
    public_key: str  # base64; plain config in the site's stack file


def generate_keypair() -> SiteKeyPair:
    key = PrivateKey.generate()
    return SiteKeyPair(_b64(bytes(key)), _b64(bytes(key.public_key)))


def check_key(value: str, what: str = "key") -> bytes:
    """The 32 raw bytes of a base64 X25519 key; SealError naming what is wrong otherwise."""
    try:
        raw = base64.b64decode(value.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"{what} is not base64") from None
    if len(raw) != KEY_BYTES:
        raise SealError(f"{what} must be {KEY_BYTES} bytes (X25519), got {len(raw)}")
    return raw


def public_key_of(private_key: str) -> str:
    return _b64(bytes(PrivateKey(check_key(private_key, "private key")).public_key))


def seal(public_key: str, payload: dict[str, str]) -> str:
    box = SealedBox(PublicKey(check_key(public_key, "public key")))
    return _b64(box.encrypt(json.dumps(payload, sort_keys=True).encode()))


def open_sealed(private_key: str, sealed: str) -> dict[str, str]:
    box = SealedBox(PrivateKey(check_key(private_key, "private key")))
    try:
        plain = box.decrypt(base64.b64decode(sealed.encode(), validate=True))
    except (binascii.Error, ValueError):
        raise SealError("the sealed value is not base64") from None
    except CryptoError:
        raise SealError("this key cannot open the sealed value: it was sealed to another site's public key") from None
    payload = json.loads(plain)
    if not isinstance(payload, dict) or not all(isinstance(v, str) for v in payload.values()):
        raise SealError("the sealed value does not hold a credential")
    return payload


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
