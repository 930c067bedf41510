"""Inside a document worker: the request's ``FormatJob`` rebuilt from what the daemon
sent, and the builder for its format.  The job's ``sign`` asks the daemon (which owns the
dialogs and the token) over the pipe, once."""

from __future__ import annotations

from typing import Any, BinaryIO

from cryptography import x509

from agent.errors import InternalError
from agent.formats import worker_wire
from agent.formats.anchors import Anchors
from agent.formats.job import FormatJob, KeylessJob


class PipeSigner:
    """``FormatJob.sign`` in the worker: the digest goes to the daemon, the signature
    comes back.  The worker has nothing else to do meanwhile, so it simply blocks."""

    def __init__(self, fd: int, stdin: BinaryIO) -> None:
        self.fd = fd
        self.stdin = stdin
        self.used = False

    async def confirm(self) -> None:
        """Contract placeholder: the daemon confirms when the digest arrives (D3 moves
        the dialog here)."""

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        if self.used:
            raise InternalError("a second signature was asked for in one request")
        self.used = True
        worker_wire.write_answer(self.fd, {"type": "sign", "digest": worker_wire.b64(digest),
                                           "algorithm": digest_algorithm,
                                           "ecdsaRaw": ecdsa_raw})
        reply = worker_wire.read_request(self.stdin)
        if reply is None or reply.get("op") != "signature":
            raise InternalError("the daemon sent no signature")
        value = reply["value"]
        assert isinstance(value, bytes)
        return value


def _certificates(ders: list[bytes]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(der) for der in ders]


def job_from_request(job: dict[str, Any], sign: PipeSigner) -> FormatJob:
    return FormatJob(
        sign=sign, certificate=x509.load_der_x509_certificate(job["certificate"]),
        chain=_certificates(job["chain"]),
        anchors=Anchors(roots=_certificates(job["roots"]), others=_certificates(job["others"])),
        network=job["network"], tsa_url=job["tsa_url"], document_name=job["document_name"])


def keyless_job(job: dict[str, Any]) -> KeylessJob:
    return KeylessJob(
        anchors=Anchors(roots=_certificates(job["roots"]), others=_certificates(job["others"])),
        network=job["network"], tsa_url=job["tsa_url"])


async def run_job(request: dict[str, Any], fd: int, stdin: BinaryIO) -> bytes:
    kind, args, caps = request["kind"], request["args"], request["caps"]
    if request["job"].get("keyless"):
        if kind == "extend":
            from agent.formats.extend_here import run_extend

            return await run_extend(keyless_job(request["job"]), caps=caps, **args)
        if kind == "verify":
            from agent.verify.worker import run_verify

            return await run_verify(keyless_job(request["job"]), caps=caps, **args)
        raise InternalError(f"unknown keyless job {kind!r}")
    job = job_from_request(request["job"], PipeSigner(fd, stdin))
    if kind == "pdf":
        from agent.formats.pades import build_pades_here

        return await build_pades_here(job, caps=caps, **args)
    if kind == "xml":
        from agent.formats.xades import build_xades_here

        return await build_xades_here(job, caps=caps, **args)
    if kind == "cms":
        from agent.formats.cades import build_cades_here

        return await build_cades_here(job, **args)
    raise InternalError(f"unknown document kind {kind!r}")
