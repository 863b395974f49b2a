"""Machine clients and RFC 9421 signing for pre-built load, checked against the server's verifier."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ecard.kit.signing import parse_signature_params, sign_request, verify_signature

# the tests' client keys are the load tool's too: one key type and one ID-number maker for both
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.clientkey import ClientKey, made_up_id_number

# load clients are clients like any other
Actor = ClientKey
ed25519_actor = ClientKey.ed25519
p256_actor = ClientKey.p256
id_number = made_up_id_number


def new_nonce() -> str:
    """A fresh nonce, as `sign_request` makes them (16 random bytes, base64url)."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def signature_headers(actor: Actor, method: str, path: str, body: bytes, created: int, nonce: str) -> dict[str, str]:
    """Content-Digest, Signature-Input and Signature as API.md asks, for a request to `path` on the load target."""
    return sign_request(method, f"http://load.invalid{path}", body, actor.key, actor.key_id, actor.alg, created, nonce)


def self_check() -> None:
    """Hold the load signer to the server: what it signs, the server's own verifier accepts."""
    body, path, created, nonce = b'{"a":1}', "/v1/verifications", 1_700_000_000, new_nonce()
    for actor in (
        Actor(ed25519.Ed25519PrivateKey.generate(), key_id="key_check"),
        Actor(ec.generate_private_key(ec.SECP256R1()), key_id="key_check"),
    ):
        headers = {k.lower(): v for k, v in signature_headers(actor, "POST", path, body, created, nonce).items()}
        params = parse_signature_params(headers, has_body=True)
        verify_signature(params, actor.key.public_key(), actor.alg, "POST", path, "", headers, body)
