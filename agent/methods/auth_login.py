"""``auth.login``: picker (authentication certificates) + PIN dialog naming the origin;
returns a token that binds the page's challenge to the origin the agent itself saw.

Signed message: SHA-256(origin) ‖ SHA-256(challenge bytes), hashed again with the
algorithm's hash (docs/protocol.md, "Login token").
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from agent.app.services import Services
from agent.app.signing import KeyUse, SigningRequest, sign_with_key
from agent.keystores.base import CertificateEntry, KeyType, SignMechanism
from agent.methods.common import bound, chain_for
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme
from agent.protocol.params import AuthLoginParams
from agent.protocol.results import AuthAlgorithm, AuthLoginResult, AuthToken

_EC_BY_SIZE = {256: (AuthAlgorithm.ES256, HashAlgorithm.SHA256),
               384: (AuthAlgorithm.ES384, HashAlgorithm.SHA384),
               521: (AuthAlgorithm.ES512, HashAlgorithm.SHA512)}
_HASHLIB = {HashAlgorithm.SHA256: hashlib.sha256, HashAlgorithm.SHA384: hashlib.sha384,
            HashAlgorithm.SHA512: hashlib.sha512}


def login_message(origin: str, challenge: bytes) -> bytes:
    return hashlib.sha256(origin.encode("utf-8")).digest() + hashlib.sha256(challenge).digest()


def algorithm_for(use: KeyUse) -> tuple[AuthAlgorithm, SignMechanism]:
    entry: CertificateEntry = use.entry
    if entry.key is not None and entry.key.key_type is KeyType.RSA:
        return AuthAlgorithm.RS256, SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
    public = use.certificate.public_key()
    size = public.key_size if isinstance(public, ec.EllipticCurvePublicKey) else 256
    alg, hash_alg = _EC_BY_SIZE.get(size, (AuthAlgorithm.ES256, HashAlgorithm.SHA256))
    return alg, SignMechanism(Scheme.ECDSA, hash_alg, EcdsaEncoding.RAW)


async def auth_login(app: Services, ctx: CallContext, params: AuthLoginParams
                     ) -> AuthLoginResult:
    core = app.core
    message = login_message(ctx.origin, params.challenge)

    async def produce(use: KeyUse) -> AuthToken:
        algorithm, mechanism = algorithm_for(use)
        digest = _HASHLIB[mechanism.hash_algorithm](message).digest()
        [signature] = await use.sign([digest], mechanism)
        return AuthToken(certificate=use.entry.der,
                         chain=chain_for(use.entry, await core.stores.certificates()),
                         algorithm=algorithm, signature=signature)

    # The hash depends on the key the user picks; the journal names the one used.
    request = SigningRequest(method="auth.login", purpose="auth")
    token = await sign_with_key(core, ctx, request, produce)
    return AuthLoginResult(token=token)


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("auth.login", AuthLoginParams, bound(app, auth_login))
