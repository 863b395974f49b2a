"""Client public keys as JWKs (RFC 7517): Ed25519 and P-256 only."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ecard.kit.crypto import b64u, b64u_decode
from ecard.kit.refusal import Refusal

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

ALG_ED25519 = "ed25519"
ALG_P256 = "ecdsa-p256-sha256"


def _coord(jwk: dict[str, Any], name: str, size: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise Refusal("invalid_request", f"public key: `{name}` is missing", extra={"fields": ["public_key"]})
    try:
        raw = b64u_decode(value)
    except ValueError as exc:
        raise Refusal("invalid_request", f"public key: `{name}` is not base64url") from exc
    if len(raw) != size:
        raise Refusal("invalid_request", f"public key: `{name}` has the wrong length")
    return raw


def parse_public_jwk(jwk: Any) -> tuple[PublicKey, str, dict[str, str]]:
    """The key, its RFC 9421 algorithm name, and the canonical public JWK; refuses private or odd keys."""
    if not isinstance(jwk, dict):
        raise Refusal("invalid_request", "public key must be a JWK object", extra={"fields": ["public_key"]})
    if "d" in jwk:
        raise Refusal("invalid_request", "send the public key only: this JWK holds a private key")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        x = _coord(jwk, "x", 32)
        return (
            ed25519.Ed25519PublicKey.from_public_bytes(x),
            ALG_ED25519,
            {"kty": "OKP", "crv": "Ed25519", "x": b64u(x)},
        )
    if kty == "EC" and crv == "P-256":
        x, y = _coord(jwk, "x", 32), _coord(jwk, "y", 32)
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError as exc:
            raise Refusal("invalid_request", "public key: not a point on P-256") from exc
        return key, ALG_P256, {"kty": "EC", "crv": "P-256", "x": b64u(x), "y": b64u(y)}
    raise Refusal("invalid_request", "public key must be an Ed25519 (OKP) or P-256 (EC) JWK")


def public_jwk(key: PublicKey) -> dict[str, str]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64u(numbers.x.to_bytes(32, "big")),
        "y": b64u(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint."""
    members = ["crv", "kty", "x"] if jwk["kty"] == "OKP" else ["crv", "kty", "x", "y"]
    canonical = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in members) + "}"
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical.encode())
    return b64u(digest.finalize())


def private_jwk(key: PrivateKey) -> dict[str, str]:
    """A private JWK (for a client's own key file; the service never stores one)."""
    jwk = public_jwk(key.public_key())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return {**jwk, "d": b64u(raw)}
    return {**jwk, "d": b64u(key.private_numbers().private_value.to_bytes(32, "big"))}


def load_private_jwk(jwk: dict[str, Any]) -> tuple[PrivateKey, str]:
    """A client's private key from its JWK file, with the RFC 9421 algorithm name."""
    d = b64u_decode(str(jwk["d"]))
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(d), ALG_ED25519
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        return ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1()), ALG_P256
    raise ValueError("an Ed25519 or P-256 private JWK is expected")
