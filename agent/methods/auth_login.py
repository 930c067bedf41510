"""``auth.login``: picker (authentication certificates) + PIN dialog naming the origin;
returns a token that binds the page's challenge to the origin the agent itself saw.

Signed message: SHA-256(origin) ‖ SHA-256(challenge bytes), hashed again with the
algorithm's hash (docs/protocol.md, "Login token").
"""

from __future__ import annotations

import hashlib

from agent.app import certs
from agent.app.certs import CertificateFilter
from agent.errors import AgentError
from agent.keystores.base import (
    CertificateEntry,
    EcdsaEncoding,
    HashAlgorithm,
    KeyType,
    Scheme,
    SignMechanism,
)
from agent.methods.common import chain_for
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import AuthLoginParams
from agent.protocol.results import AuthAlgorithm, AuthLoginResult, AuthToken

_EC_BY_SIZE = {256: (AuthAlgorithm.ES256, HashAlgorithm.SHA256),
               384: (AuthAlgorithm.ES384, HashAlgorithm.SHA384),
               521: (AuthAlgorithm.ES512, HashAlgorithm.SHA512)}
_HASHLIB = {HashAlgorithm.SHA256: hashlib.sha256, HashAlgorithm.SHA384: hashlib.sha384,
            HashAlgorithm.SHA512: hashlib.sha512}


def login_message(origin: str, challenge: bytes) -> bytes:
    return hashlib.sha256(origin.encode("utf-8")).digest() + hashlib.sha256(challenge).digest()


def algorithm_for(entry: CertificateEntry) -> tuple[AuthAlgorithm, SignMechanism]:
    assert entry.key is not None
    if entry.key.key_type is KeyType.RSA:
        return AuthAlgorithm.RS256, SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
    size = certs.load(entry.der).public_key().key_size  # type: ignore[union-attr]
    alg, hash_alg = _EC_BY_SIZE.get(size, (AuthAlgorithm.ES256, HashAlgorithm.SHA256))
    return alg, SignMechanism(Scheme.ECDSA, hash_alg, EcdsaEncoding.RAW)


async def auth_login(ctx: CallContext, params: AuthLoginParams) -> AuthLoginResult:
    core = ctx.services.core
    entry: CertificateEntry | None = None
    digest, hash_name = b"", None
    try:
        async def work() -> AuthToken:
            nonlocal entry, digest, hash_name
            await core.require(ctx, Permission.AUTH)
            _, entry = await core.choose(ctx, "auth", CertificateFilter())
            algorithm, mechanism = algorithm_for(entry)
            message = login_message(ctx.origin, params.challenge)
            digest = _HASHLIB[mechanism.hash_algorithm](message).digest()
            hash_name = mechanism.hash_algorithm.value
            [signature] = await core.sign_digests(ctx, entry, "auth", [digest], mechanism)
            return AuthToken(certificate=entry.der,
                             chain=chain_for(entry, await core.stores.certificates()),
                             algorithm=algorithm, signature=signature)

        token = await core.interaction(ctx, work)
    except AgentError as exc:
        core.record(ctx, "auth.login", entry, hash_name, [digest] if digest else [],
                    exc.reason)
        raise
    core.record(ctx, "auth.login", entry, hash_name, [digest], "ok")
    return AuthLoginResult(token=token)


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("auth.login", AuthLoginParams, auth_login)
