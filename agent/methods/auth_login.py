"""``auth.login``: picker (authentication certificates) + PIN dialog naming the origin;
returns a token that binds the page's challenge to the origin the agent itself saw.

Two token formats (docs/protocol.md, "auth.login"):

* ``imza-auth:1`` signs SHA-256(origin) ‖ SHA-256(decoded challenge bytes), hashed again
  with the algorithm's hash;
* ``web-eid:1.0`` signs H(origin) ‖ H(challenge string as UTF-8), where H is the
  algorithm's own hash, exactly as Web eID's token specification says, so relying
  parties using Web eID's validation libraries verify it unchanged.

Either way ``origin`` is the one the transport established, never a value from the page.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from agent import __version__
from agent.app.services import Services
from agent.app.signing import KeyUse, SigningRequest, sign_with_key
from agent.keystores.base import CertificateEntry, KeyType, SignMechanism
from agent.methods.common import bound, chain_for
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme
from agent.protocol.params import AuthLoginParams, LoginTokenFormat
from agent.protocol.results import AuthAlgorithm, AuthLoginResult, AuthToken, WebEidAuthToken

_EC_BY_SIZE = {256: (AuthAlgorithm.ES256, HashAlgorithm.SHA256),
               384: (AuthAlgorithm.ES384, HashAlgorithm.SHA384),
               521: (AuthAlgorithm.ES512, HashAlgorithm.SHA512)}
_HASHLIB_NAME = {HashAlgorithm.SHA256: "sha256", HashAlgorithm.SHA384: "sha384",
                 HashAlgorithm.SHA512: "sha512"}

# Web eID's ``appVersion``: a URL naming the application and its version.  The agent has
# no public site, so the host is in the reserved .invalid domain (RFC 2606), as the
# protocol schema's $id is.
WEB_EID_APP_VERSION = f"https://imza-agent.invalid/releases/v{__version__}"


def login_message(origin: str, challenge: bytes) -> bytes:
    """imza-auth:1: the 64 bytes that are hashed and signed."""
    return hashlib.sha256(origin.encode("utf-8")).digest() + hashlib.sha256(challenge).digest()


def web_eid_message(origin: str, challenge: str, hash_algorithm: HashAlgorithm) -> bytes:
    """web-eid:1.0: hash(origin) ‖ hash(challenge), the challenge as the literal string the
    page sent (not decoded), with the signature algorithm's hash."""
    return (_digest(hash_algorithm, origin.encode("utf-8"))
            + _digest(hash_algorithm, challenge.encode("utf-8")))


def _digest(hash_algorithm: HashAlgorithm, data: bytes) -> bytes:
    return hashlib.new(_HASHLIB_NAME[hash_algorithm], data).digest()


def algorithm_for(use: KeyUse) -> tuple[AuthAlgorithm, SignMechanism]:
    entry: CertificateEntry = use.entry
    if entry.key is not None and entry.key.key_type is KeyType.RSA:
        return AuthAlgorithm.RS256, SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
    public = use.certificate.public_key()
    size = public.key_size if isinstance(public, ec.EllipticCurvePublicKey) else 256
    alg, hash_alg = _EC_BY_SIZE.get(size, (AuthAlgorithm.ES256, HashAlgorithm.SHA256))
    # Raw r‖s of fixed width: what JWS, and so both token formats, carry.
    return alg, SignMechanism(Scheme.ECDSA, hash_alg, EcdsaEncoding.RAW)


async def auth_login(app: Services, ctx: CallContext, params: AuthLoginParams
                     ) -> AuthLoginResult:
    core = app.core
    web_eid = params.format is LoginTokenFormat.WEB_EID_1_0
    challenge_bytes = b"" if web_eid else params.challenge_bytes

    async def produce(use: KeyUse) -> AuthToken | WebEidAuthToken:
        algorithm, mechanism = algorithm_for(use)
        hash_alg = mechanism.hash_algorithm
        message = (web_eid_message(ctx.origin, params.challenge, hash_alg) if web_eid
                   else login_message(ctx.origin, challenge_bytes))
        [signature] = await use.sign([_digest(hash_alg, message)], mechanism)
        if web_eid:
            return WebEidAuthToken(unverified_certificate=use.entry.der, algorithm=algorithm,
                                   signature=signature, app_version=WEB_EID_APP_VERSION)
        return AuthToken(certificate=use.entry.der,
                         chain=chain_for(use.entry, await core.stores.certificates()),
                         algorithm=algorithm, signature=signature)

    # The hash depends on the key the user picks; the journal names the one used.
    request = SigningRequest(method="auth.login", purpose="auth")
    token = await sign_with_key(core, ctx, request, produce)
    return AuthLoginResult(token=token)


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("auth.login", AuthLoginParams, bound(app, auth_login))
