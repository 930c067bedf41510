"""The contract in one table: every method with its params and result model, and every
notification the agent sends.  The schema generator, the dispatcher's checks and the
tests all read this table, so they cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

from agent.protocol.base import WireModel
from agent.protocol.params import (
    AuthLoginParams,
    CertificatesListParams,
    CertificatesSelectParams,
    NoParams,
    SignHashesParams,
    SignHashParams,
    SignPdfParams,
)
from agent.protocol.params_asic import SignAsicParams, SignAsicResult
from agent.protocol.params_batch import SignBatchParams, SignBatchResult
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.params_extend import SignatureExtendParams, SignatureExtendResult
from agent.protocol.params_upload import DocumentUploadParams, DocumentUploadResult
from agent.protocol.params_verify import SignatureVerifyParams, SignatureVerifyResult
from agent.protocol.params_xml import SignXmlParams
from agent.protocol.results import (
    AgentInfoResult,
    AuthLoginResult,
    CertificateInfo,
    CertificatesListResult,
    SignCmsResult,
    SignHashesResult,
    SignHashResult,
    SignPdfResult,
    SignXmlResult,
    TokenList,
)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[WireModel]
    result: type[WireModel]
    summary: str


_SPECS = (
    MethodSpec("agent.info", NoParams, AgentInfoResult,
               "What this agent is and what it can do."),
    MethodSpec("certificates.select", CertificatesSelectParams, CertificateInfo,
               "The user picks one certificate; the page gets it and a handle."),
    MethodSpec("certificates.list", CertificatesListParams, CertificatesListResult,
               "All matching certificates, without asking (origins granted `list` only)."),
    MethodSpec("sign.hash", SignHashParams, SignHashResult,
               "Sign one precomputed hash."),
    MethodSpec("sign.hashes", SignHashesParams, SignHashesResult,
               "Sign up to 1000 hashes with one confirmation and one PIN."),
    MethodSpec("sign.cms", SignCmsParams, SignCmsResult,
               "A detached CAdES baseline signature; or one more signer (parallel or "
               "countersignature) on an existing CMS signature."),
    MethodSpec("sign.pdf", SignPdfParams, SignPdfResult,
               "Sign a PDF (PAdES baseline)."),
    MethodSpec("sign.xml", SignXmlParams, SignXmlResult,
               "Sign an XML document (XAdES baseline)."),
    MethodSpec("sign.batch", SignBatchParams, SignBatchResult,
               "Sign several documents (CMS, XML and PDF items) with one confirmation, "
               "one PIN and one token session; all or nothing."),
    MethodSpec("sign.asic", SignAsicParams, SignAsicResult,
               "Create an ASiC-E container of files with a XAdES or CAdES signature, or "
               "add one more signature to a container."),
    MethodSpec("signature.extend", SignatureExtendParams, SignatureExtendResult,
               "Raise a signature to a higher baseline level without its key (T, LT, LTA; "
               "LTA of an LTA signature renews it)."),
    MethodSpec("signature.verify", SignatureVerifyParams, SignatureVerifyResult,
               "The ETSI-style verdict on each signature of a CMS, PDF or XML file."),
    MethodSpec("document.upload", DocumentUploadParams, DocumentUploadResult,
               "Announce a document sent as binary WebSocket frames; a signing call then "
               "names it in place of the base64 document (WebSocket only)."),
    MethodSpec("auth.login", AuthLoginParams, AuthLoginResult,
               "Prove control of an authentication key to the calling origin."),
    MethodSpec("tokens.subscribe", NoParams, TokenList,
               "Current tokens, then `tokens.changed` notifications."),
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

NOTIFICATIONS: dict[str, type[WireModel]] = {"tokens.changed": TokenList}
