# ruff: noqa: INP001 - a stand-alone example for terminal vendors, not part of a package
"""Check an `EC1:` code offline with a cached issuer key set: the example of docs/offline-kit.md.

    python docs/offline_check.py keys.json 'EC1:...' [--grace 86400] [--skew 30] [--max-key-age 86400]

`keys.json` is the body of `GET /v1/issuer/keys` as last fetched; its age is the file's modification time, which
the terminal's refresh sets whether it got a new set (200) or was told its copy is current (304). Prints one JSON
object: `{"result": "accepted_offline", ...}` (exit 0) or `{"result": <refusal code>}` (exit 1). Accepting
offline says only that the issuer made this code and that it is within its time; the card's status and single use
are settled when the tap is uploaded (POST /v1/offline-taps).

Stock libraries only: base45, cbor2, pycose.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import base45
import cbor2
from pycose.headers import KID
from pycose.keys.ec2 import EC2Key
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

PREFIX = "EC1:"
# CWT claims (RFC 8392)
ISS, EXP, IAT, CTI = 1, 4, 6, 7


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cose_key(jwk: dict[str, Any]) -> OKPKey | EC2Key:
    if jwk["kty"] == "OKP":
        return OKPKey(crv=jwk["crv"], x=_unb64url(jwk["x"]))
    return EC2Key(crv=jwk["crv"], x=_unb64url(jwk["x"]), y=_unb64url(jwk["y"]))


def check(key_set: dict[str, Any], key_age_s: float, code: str, now: float, args: argparse.Namespace) -> dict[str, Any]:
    """The offline verdict on one code: what a terminal without a network can know."""
    if key_age_s > args.max_key_age:
        return {"result": "key_set_stale"}  # refresh the key set before accepting anything offline
    if not code.startswith(PREFIX):
        return {"result": "malformed_code"}
    try:
        message = Sign1Message.decode(base45.b45decode(code[len(PREFIX) :]))
        claims = cbor2.loads(message.payload or b"")
        kid = message.phdr[KID]
    except Exception:  # any undecodable code is simply malformed
        return {"result": "malformed_code"}
    if not isinstance(claims, dict) or not isinstance(kid, bytes):
        return {"result": "malformed_code"}
    if claims.get(ISS) != key_set["issuer"]:
        return {"result": "unknown_issuer"}
    jwk = next((key for key in key_set["keys"] if _unb64url(key["kid"]) == kid), None)
    if jwk is None:
        return {"result": "unknown_key"}  # a key newer than the cached set: refresh, or refuse
    if jwk["status"] == "revoked":
        return {"result": "key_revoked"}
    message.key = _cose_key(jwk)
    try:
        genuine = message.verify_signature()
    except Exception:  # a signature that cannot even be checked is not genuine
        genuine = False
    if not genuine:
        return {"result": "bad_signature"}
    if now > claims[EXP] + args.grace:
        return {"result": "code_expired"}
    if now < claims[IAT] - args.skew:
        return {"result": "code_not_yet_valid"}
    return {"result": "accepted_offline", "kid": jwk["kid"], "cti": claims[CTI].hex(), "expires_at": claims[EXP]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", type=Path, help="the cached body of GET /v1/issuer/keys")
    parser.add_argument("code")
    parser.add_argument("--grace", type=int, default=86400, help="seconds after a code's expiry it is still taken")
    parser.add_argument("--skew", type=int, default=30, help="clock skew tolerated before a code's issue time")
    parser.add_argument("--max-key-age", type=int, default=86400, help="seconds a cached key set may be old")
    args = parser.parse_args(argv)
    now = time.time()
    key_set = json.loads(args.keys.read_text(encoding="utf-8"))
    verdict = check(key_set, now - args.keys.stat().st_mtime, args.code, now, args)
    sys.stdout.write(json.dumps(verdict) + "\n")
    return 0 if verdict["result"] == "accepted_offline" else 1


if __name__ == "__main__":
    sys.exit(main())
