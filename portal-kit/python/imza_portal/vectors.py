"""Run a login-vectors file (portal-kit/vectors/SCHEMA.md) through this verifier:

    python -m imza_portal.vectors portal-kit/vectors/login-tokens.json

prints ``{"results": [...]}`` on stdout, one entry per vector in the file's order."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from .challenges import ChallengeStore
from .clock import parse_rfc3339
from .errors import LoginError
from .login import LoginVerifier

SESSION = "vectors"


def run_vector(vector: dict[str, Any], anchors: list[x509.Certificate],
               crls: list[x509.CertificateRevocationList],
               lifetime: float) -> dict[str, Any]:
    now = parse_rfc3339(vector["now"])

    def clock() -> Any:
        return now

    store = ChallengeStore(lifetime=lifetime, clock=clock)
    challenge: str = vector["challenge"]
    if vector.get("challengeIssuedAt") is not None:
        store.register(challenge, SESSION, parse_rfc3339(vector["challengeIssuedAt"]),
                       used=bool(vector.get("challengeUsed")))
    verifier = LoginVerifier(vector["origin"], anchors, crls, clock=clock,
                             require_revocation=vector.get("requireRevocation") is True)
    try:
        login = verifier.verify(vector["token"], challenge=challenge, store=store,
                                session=SESSION)
    except LoginError as error:
        return {"name": vector["name"], "valid": False, "error": error.code.value,
                "certificateSha256": None}
    return {"name": vector["name"], "valid": True, "error": None,
            "certificateSha256": login.sha256}


def run_file(data: dict[str, Any]) -> dict[str, Any]:
    anchors = [x509.load_der_x509_certificate(base64.b64decode(a)) for a in data["anchors"]]
    crls = [x509.load_der_x509_crl(base64.b64decode(c)) for c in data.get("crls", [])]
    lifetime = float(data.get("challengeLifetimeSeconds", 300))
    return {"results": [run_vector(v, anchors, crls, lifetime) for v in data["vectors"]]}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m imza_portal.vectors FILE", file=sys.stderr)
        return 2
    try:
        data = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"cannot read {args[0]}: {error}", file=sys.stderr)
        return 1
    json.dump(run_file(data), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
