"""A UI that answers dialogs from a file: for tests and automated checks.

The answers file is JSON, re-read at every dialog so a test can change its mind while the
daemon runs::

    {
      "consent": "once" | "always" | "deny" | "block" | "ignore",
      "certificate": "first" | "cancel" | "ignore" | {"holder": "Əliyev"} | {"index": 2},
      "pin": "1234" | ["0000", "1234"] | "pinpad" | "cancel" | "ignore",
      "extend": "confirm" | "cancel" | "ignore",
      "delay": 0.0
    }

``ignore`` leaves the dialog unanswered (the caller's timeout then fires).  ``block``
denies and blocks the origin for good.  A picker with no certificate in it (the core
still shows one) can only be closed: ``first`` then cancels.  A list of PINs is tried in
order within one request, as a person retyping after "wrong PIN" would.  The
confirmation of ``signature.extend`` (no PIN) is cancelled unless ``extend`` confirms it.

Every dialog shown is appended to the transcript (``<answers>.transcript.jsonl``) with
what it displayed — never the PIN — so tests can assert what the user was shown, and
that a hostile page made no dialog appear at all.  The previews of the PIN and extend
dialogs are recorded as ``{kind, size, sha256, name, data_size, data_sha256}``: what was
shown, by its length and SHA-256.  With ``"preview_data": true`` in the answers, each also
carries ``data_b64``, the shown bytes as the UI process receives them, for a test that
reads the text.  Not by default: a real UI gets the bytes over its pipe and the daemon
writes nothing; base64 JSON of every preview in the daemon was a tenth of its CPU for a
100-invoice ``sign.batch``, and 0.6 s for a 50 MB document.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from agent.app.dialogs import (
    CertificateChoice,
    ConsentAnswer,
    ConsentRequest,
    ExtendRequest,
    PinRequest,
    Preview,
)
from agent.errors import UserCancelled
from agent.keystores.base import PIN_PAD, Credential, Secret


class ScriptedUI:
    interactive = True

    def __init__(self, answers_file: Path) -> None:
        self.answers_file = answers_file
        self.transcript = answers_file.with_name(answers_file.name + ".transcript.jsonl")
        # PIN attempts per origin: a retry continues the answer list, a new request restarts
        self._attempts: dict[str, int] = {}

    def _answers(self) -> dict[str, object]:
        try:
            data = json.loads(self.answers_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    async def _record(self, dialog: str, previews: tuple[Preview, ...] | None = None,
                      **shown: object) -> dict[str, object]:
        answers = self._answers()
        if previews is not None:
            data = answers.get("preview_data") is True
            shown["previews"] = [_preview(p, data) for p in previews]
        with self.transcript.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"dialog": dialog, **shown}, ensure_ascii=False,
                                 default=str) + "\n")
        delay = answers.get("delay")
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(delay)
        return answers

    @staticmethod
    async def _never() -> None:
        await asyncio.Event().wait()

    async def ask_consent(self, request: ConsentRequest) -> ConsentAnswer:
        answers = await self._record("consent", origin=request.origin,
                                     permissions=list(request.permissions))
        answer = answers.get("consent", "deny")
        if answer == "ignore":
            await self._never()
        return ConsentAnswer(str(answer))

    async def choose_certificate(self, origin: str, purpose: str,
                                 choices: list[CertificateChoice], *,
                                 filtered: bool = False) -> int:
        answers = await self._record("certificate", origin=origin, purpose=purpose,
                                     choices=[asdict(c) for c in choices],
                                     filtered=filtered)
        rule = answers.get("certificate", "first")
        if rule == "ignore":
            await self._never()
        if rule == "cancel":
            raise UserCancelled()
        usable = [i for i, c in enumerate(choices) if c.usable]
        if rule == "first":
            if not usable:
                raise UserCancelled()
            return usable[0]
        if isinstance(rule, dict) and "index" in rule:
            return int(rule["index"])
        if isinstance(rule, dict) and "holder" in rule:
            for i in usable:
                if rule["holder"] in choices[i].holder:
                    return i
        raise UserCancelled("the scripted answer matches no certificate")

    async def ask_pin(self, request: PinRequest) -> Credential:
        attempt = 0 if request.retry is None else self._attempts.get(request.origin, 0)
        self._attempts[request.origin] = attempt + 1
        answers = await self._record(
            "pin", origin=request.origin, action=request.action,
            holder=request.certificate.holder, token=request.certificate.token_label,
            count=request.count, display_text=request.display_text,
            document_name=request.document_name,
            signed_fields=[[field.value, value] for field, value in request.signed_fields],
            password=request.password,
            pin_pad=request.pin.pin_pad,
            retry=None if request.retry is None else request.retry.as_dict(),
            previews=tuple(request.previews))
        rule = answers.get("pin", "cancel")
        if isinstance(rule, list):
            if attempt >= len(rule):
                raise UserCancelled()
            rule = rule[attempt]
        if rule == "ignore":
            await self._never()
        if rule == "cancel":
            raise UserCancelled()
        if rule == "pinpad":
            return PIN_PAD
        return Secret(str(rule))

    async def show_pin_locked(self, origin: str, token_label: str, unlock: str) -> None:
        await self._record("pin_locked", origin=origin, token=token_label, unlock=unlock)

    async def ask_extend(self, request: ExtendRequest) -> None:
        answers = await self._record(
            "extend", origin=request.origin, format=request.format, level=request.level,
            signatures=request.signatures,
            document_name=request.document_name, display_text=request.display_text,
            previews=tuple(request.previews))
        rule = answers.get("extend", "cancel")
        if rule == "ignore":
            await self._never()
        if rule != "confirm":
            raise UserCancelled()

    def pin_pad_finished(self) -> None:
        with self.transcript.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"dialog": "pin_pad_finished"}) + "\n")


def _preview(preview: Preview, data: bool) -> dict[str, object]:
    shown: dict[str, object] = {
        "kind": preview.kind.value, "size": preview.size, "sha256": preview.sha256,
        "name": preview.name, "data_size": len(preview.data),
        "data_sha256": hashlib.sha256(preview.data).hexdigest()}
    if data:
        shown["data_b64"] = base64.b64encode(preview.data).decode("ascii")
    return shown


class NoUI:
    """Nobody to ask (``[ui] backend = "none"``): consent is denied, every dialog cancels."""

    interactive = False

    async def ask_consent(self, request: ConsentRequest) -> ConsentAnswer:
        return ConsentAnswer.DENY

    async def choose_certificate(self, origin: str, purpose: str,
                                 choices: list[CertificateChoice], *,
                                 filtered: bool = False) -> int:
        raise UserCancelled("no desktop to ask on")

    async def ask_pin(self, request: PinRequest) -> Credential:
        raise UserCancelled("no desktop to ask on")

    async def show_pin_locked(self, origin: str, token_label: str, unlock: str) -> None:
        return None

    async def ask_extend(self, request: ExtendRequest) -> None:
        raise UserCancelled("no desktop to ask on")

    def pin_pad_finished(self) -> None:
        return None
