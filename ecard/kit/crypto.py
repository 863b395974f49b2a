"""The service's secret material: AEAD sealing, blind indexes and keyed pseudonyms, all from one master key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ecard.config import Settings

_VERSION = b"\x01"
# A card reference of this version names the epoch of its key (two bytes, big-endian) after the version byte.
_CARD_REF_EPOCHS = b"\x02"
MAX_EPOCH = 0xFFFF
SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SealError(Exception):
    """A sealed value did not open: wrong key, wrong context, or tampered."""


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ecard/" + purpose.encode()).derive(master)


def card_ref_epoch(sealed: bytes) -> int:
    """The epoch of the key a card reference was sealed with (0 for references made before epochs)."""
    if sealed[:1] == _VERSION:
        return 0
    if sealed[:1] == _CARD_REF_EPOCHS and len(sealed) >= 3:
        return int.from_bytes(sealed[1:3], "big")
    raise SealError("not a sealed card reference")


@dataclass(frozen=True)
class Keys:
    """Subkeys derived from the master key, one per purpose, so that no key does two jobs."""

    pii: AESGCM
    wrap: AESGCM
    index_key: bytes
    pseudonym_key: bytes
    # the audit chain's MAC key: the database holds the entries and their seals, never this key
    audit_key: bytes
    # keys the HMAC that peppers every PIN before Argon2, so that a stolen database alone cannot be searched
    pin_key: bytes
    # keys the tag inside every client key id the service mints, so that made-up key ids are refused unseen
    key_id_key: bytes
    # keys the operator console's CSRF tokens (an HMAC of the session), so that another site cannot forge one
    csrf_key: bytes
    # epoch 0's card-reference key is the one derived before epochs existed; later epochs derive from this root
    card_ref_legacy: bytes
    card_ref_root: bytes
    _card_ref_keys: dict[int, AESGCM] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_master(cls, master: bytes) -> Keys:
        if len(master) < 32:
            raise ValueError("the master key must be at least 32 bytes")
        return cls(
            pii=AESGCM(_derive(master, "pii")),
            wrap=AESGCM(_derive(master, "key-wrap")),
            index_key=_derive(master, "blind-index"),
            pseudonym_key=_derive(master, "pseudonym"),
            audit_key=_derive(master, "audit-chain"),
            pin_key=_derive(master, "pin-pepper"),
            key_id_key=_derive(master, "client-key-id"),
            csrf_key=_derive(master, "console-csrf"),
            card_ref_legacy=_derive(master, "card-ref"),
            card_ref_root=_derive(master, "card-ref-epochs"),
        )

    def _card_ref_key(self, epoch: int) -> AESGCM:
        key = self._card_ref_keys.get(epoch)
        if key is None:
            raw = self.card_ref_legacy if epoch == 0 else _derive(self.card_ref_root, f"card-ref/{epoch}")
            key = self._card_ref_keys[epoch] = AESGCM(raw)
        return key

    @staticmethod
    def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + aead.encrypt(nonce, plaintext, aad)

    @staticmethod
    def _open(aead: AESGCM, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise SealError("not a sealed value")
        try:
            return aead.decrypt(sealed[1:13], sealed[13:], aad)
        except InvalidTag as exc:
            raise SealError("sealed value does not open") from exc

    def seal_card_ref(self, plaintext: bytes, issuer: str, epoch: int) -> bytes:
        """The card reference of one code, under the key of `epoch`, which the reference names in clear."""
        if not 0 <= epoch <= MAX_EPOCH:
            raise ValueError("a card-reference epoch is 0 to 65535")
        header = _CARD_REF_EPOCHS + epoch.to_bytes(2, "big")
        nonce = os.urandom(12)
        # the header is bound as associated data: nobody can move a reference to another epoch's key
        return header + nonce + self._card_ref_key(epoch).encrypt(nonce, plaintext, header + issuer.encode())

    def open_card_ref(self, sealed: bytes, issuer: str, epochs: Container[int]) -> bytes:
        """Open a card reference sealed under one of `epochs`; any other epoch is a SealError."""
        epoch = card_ref_epoch(sealed)
        if epoch not in epochs:
            raise SealError("the card reference names an epoch that is not open")
        if sealed[:1] == _VERSION:
            return self._open(self._card_ref_key(0), sealed, issuer.encode())
        header, nonce, body = sealed[:3], sealed[3:15], sealed[15:]
        if len(body) < 16:
            raise SealError("not a sealed value")
        try:
            return self._card_ref_key(epoch).decrypt(nonce, body, header + issuer.encode())
        except InvalidTag as exc:
            raise SealError("sealed value does not open") from exc

    def pin_secret(self, pin: str) -> str:
        """What Argon2 hashes for a PIN: the PIN peppered with the server's key (HMAC-SHA-256)."""
        return b64u(hmac.new(self.pin_key, b"pin|" + pin.encode(), hashlib.sha256).digest())

    def key_id_tag(self, body: bytes) -> bytes:
        """The 8-byte tag a minted client key id carries after its 8 random bytes."""
        return hmac.new(self.key_id_key, b"key-id|" + body, hashlib.sha256).digest()[:8]

    def seal_pii(self, plaintext: str, context: str) -> bytes:
        return self._seal(self.pii, plaintext.encode(), context.encode())

    def open_pii(self, sealed: bytes, context: str) -> str:
        return self._open(self.pii, sealed, context.encode()).decode()

    def wrap_secret(self, secret: bytes, context: str) -> bytes:
        return self._seal(self.wrap, secret, context.encode())

    def unwrap_secret(self, sealed: bytes, context: str) -> bytes:
        return self._open(self.wrap, sealed, context.encode())

    def blind_index(self, value: str) -> bytes:
        return hmac.new(self.index_key, value.strip().upper().encode(), hashlib.sha256).digest()

    def pseudonym(self, scope: bytes, subject: bytes) -> str:
        digest = hmac.new(self.pseudonym_key, scope + b"|" + subject, hashlib.sha256).digest()
        return "psn_" + b64u(digest[:18])


def load_master_key(settings: Settings) -> bytes:
    """The master key from ECARD_SECRET_KEY, else from the data folder (made on first use, mode 0600)."""
    if settings.secret_key:
        return b64u_decode(settings.secret_key)
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, b64u(os.urandom(32)).encode())
    return b64u_decode(path.read_text().strip())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_private_file(path: Path, data: bytes) -> None:
    """Write a private key or secret readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    _write_private(path, data)


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
