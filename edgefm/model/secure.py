"""`secure:` config values as Pulumi's passphrase secrets provider writes them, checked to decrypt.

The stack file's `encryptionsalt` is `v1:<salt>:<the text "pulumi" encrypted>`; the key is PBKDF2-SHA256 of the
passphrase over that salt (1,000,000 rounds, 32 bytes); each value is `v1:<nonce>:<ciphertext>` under AES-256-GCM.
A value that does not decrypt would fail `pulumi up` midway; validation finds it first.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROUNDS: Final = 1_000_000
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
CHECK_TEXT: Final = b"pulumi"


class SecureValueError(ValueError):
    """Why a secure value or the salt is malformed or does not decrypt; one line."""


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecureValueError(f"{what} is not base64") from None


def _parts(value: str) -> tuple[bytes, bytes]:
    version, _, rest = value.partition(":")
    nonce, _, ciphertext = rest.partition(":")
    if version != "v1" or not nonce or not ciphertext or ":" in ciphertext:
        raise SecureValueError("is not a Pulumi secret (v1:<nonce>:<ciphertext>)")
    nonce_bytes = _b64(nonce, "its nonce")
    if len(nonce_bytes) != NONCE_BYTES:
        raise SecureValueError(f"its nonce is {len(nonce_bytes)} bytes, not {NONCE_BYTES}")
    return nonce_bytes, _b64(ciphertext, "its ciphertext")


def check_form(value: object) -> None:
    """A secure value has the passphrase provider's form (no key needed)."""
    if not isinstance(value, str):
        raise SecureValueError(f"must be the encrypted text Pulumi writes, got {type(value).__name__}")
    _parts(value)


@functools.lru_cache(maxsize=16)
def _key(passphrase: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode(), salt, ROUNDS, KEY_BYTES)


def _decrypt(key: bytes, value: str) -> bytes:
    nonce, ciphertext = _parts(value)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise SecureValueError("does not decrypt with the configured passphrase") from None


def stack_key(encryption_salt: object, passphrase: str) -> bytes:
    """The stack's key, after checking that the passphrase opens the salt's check value."""
    if not isinstance(encryption_salt, str):
        raise SecureValueError("the stack file has secure values but no encryptionsalt")
    version, _, rest = encryption_salt.partition(":")
    salt, _, check = rest.partition(":")
    if version != "v1" or not salt or not check:
        raise SecureValueError("encryptionsalt is not v1:<salt>:<check>")
    key = _key(passphrase, _b64(salt, "the salt"))
    try:
        if _decrypt(key, check) != CHECK_TEXT:
            raise SecureValueError("encryptionsalt's check value is not Pulumi's")
    except SecureValueError as exc:
        raise SecureValueError(f"the passphrase does not open this stack's secrets ({exc})") from None
    return key


def decrypt(key: bytes, value: object) -> str:
    """A secure value's plain text; SecureValueError if it is malformed or another key encrypted it."""
    if not isinstance(value, str):
        raise SecureValueError(f"must be the encrypted text Pulumi writes, got {type(value).__name__}")
    plain = _decrypt(key, value)
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise SecureValueError("decrypts to bytes that are not text") from None
