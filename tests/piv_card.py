"""A virtual PIV card (NIST SP 800-73-4) behind the vpcd reader, for the real middleware.

``PivCard`` answers APDUs the way a PIV applet does, so OpenSC's ``opensc-pkcs11.so`` and
CACKey's ``libcackey.so`` read it as they would a card in a user's reader:

* SELECT of the PIV AID (any prefix of it from 5 bytes on) answers the application
  property template; any other AID is 6A82 (so CACKey, which tries the CAC CCC applet
  first, falls back to PIV as it does with real PIV cards).
* GET DATA for CHUID (5FC102), Discovery (7E), key history (5FC10C) and the certificate
  containers of the four key slots: 9A 5FC105, 9C 5FC10A, 9D 5FC10B, 9E 5FC101, each a
  53 TLV holding 70 (certificate), 71 (CertInfo: 00, not compressed) and FE (error
  detection code).  Absent containers are 6A82.
* Answers longer than the command's Le come in pieces: 61xx, then GET RESPONSE (C0).
  Commands longer than one APDU come chained (CLA 10) and are handled when the last
  piece (CLA 00) arrives.
* VERIFY (P2 80 PIN, 81 PUK): no data asks the state (9000 verified, 63Cx not, 6983
  blocked); a wrong value counts down (63Cx) to blocked (6983).  P1 FF resets the
  security status.
* CHANGE REFERENCE DATA (P2 80 or 81: old 8 bytes + new 8 bytes) and RESET RETRY
  COUNTER (P2 80, P1 00: PUK 8 bytes + new PIN 8 bytes; or P1 02: the new PIN alone,
  after a VERIFY of the PUK, as ISO 7816-4 allows and OpenSC sends for C_InitPIN in an
  SO session).  References are padded with FF to 8 bytes; a new PIN or PUK must be 6 to
  8 ASCII digits (else 6A80).
* GENERAL AUTHENTICATE (87) with real keys: RSA-2048 (algorithm 07) computes the raw
  private-key operation on the padded block the middleware sends; P-256 (11) signs the
  hash it sends (ECDSA, DER in tag 82).  Security status per SP 800-73-4: 9A and 9D
  need the PIN verified since the last reset, 9C needs a VERIFY before each use ("PIN
  always"; ``pin_always=False`` relaxes that to "since the last reset"), 9E needs
  nothing.

``delay`` (seconds) is slept before every answer (or only before those to the
instructions in ``delay_ins``), so the card can be as slow as a real one; pulling the
card ends a pending sleep.

``piv_card_in_reader`` builds keys and certificates from the test PKI, puts the card in
one of vpcd's readers and waits until pcscd sees it.  The PIN and PUK and their retry
counters are plain attributes (``card.pin``, ``card.pin_tries`` ...), so tests can look
at them and set them up.  Nothing in the agent talks to this module: the agent reaches
the card only through the middleware.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding
from testbed.pki import TestPKI, build_pki
from vcard import GET_ATR, POWER_OFF, POWER_ON, RESET, Pcscd, VirtualCard, wait_until_present

# The ATR of NIST's test PIV cards (pcsc-tools' smartcard_list.txt: "Test PIV Cards
# available for sale from NIST"); its historical bytes carry the PIV AID.  OpenSC's PIV
# driver claims it by selecting the PIV application; the agent's ATR table maps it to
# OpenSC and CACKey (agent/pcsc/atr_db.toml).
PIV_ATR = bytes.fromhex("3BDF960081B1FE451F838073CC91CBF9A0000003080000100079")

PIV_AID = bytes.fromhex("A000000308000010000100")
SLOT_CONTAINERS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
CHUID, DISCOVERY, KEY_HISTORY = 0x5FC102, 0x7E, 0x5FC10C
ALG_RSA2048, ALG_P256 = 0x07, 0x11
PIN_REF, PUK_REF = 0x80, 0x81
DEFAULT_PIN, DEFAULT_PUK = "123456", "12345678"

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_DATA = b"\x6a\x80"
SW_BAD_P1P2 = b"\x6a\x86"
SW_BLOCKED = b"\x69\x83"
SW_SECURITY = b"\x69\x82"
SW_NO_INS = b"\x6d\x00"
SW_NO_CLA = b"\x6e\x00"
SW_WRONG_LENGTH = b"\x67\x00"


def tlv(tag: int, value: bytes) -> bytes:
    """BER-TLV with a 1-3 byte tag (as given) and a definite length."""
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    size = len(value)
    if size < 0x80:
        length = bytes([size])
    elif size <= 0xFF:
        length = bytes([0x81, size])
    else:
        length = bytes([0x82]) + size.to_bytes(2, "big")
    return tag_bytes + length + value


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, offset after it); tags of up to 3 bytes, lengths of up to 3."""
    tag = data[offset]
    offset += 1
    if tag & 0x1F == 0x1F:
        while True:
            tag = (tag << 8) | data[offset]
            offset += 1
            if not data[offset - 1] & 0x80:
                break
    length = data[offset]
    offset += 1
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    return tag, data[offset:offset + length], offset + length


def pad_reference(value: str) -> bytes:
    """A PIN or PUK as the card stores it: ASCII, padded with FF to 8 bytes."""
    raw = value.encode("ascii")
    return raw + b"\xff" * (8 - len(raw))


def _valid_reference(raw: bytes) -> bool:
    digits = raw.rstrip(b"\xff")
    return len(raw) == 8 and 6 <= len(digits) <= 8 and digits.isdigit()


@dataclass
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int  # 0: none given; 256 (or 65536) for a zero Le


def parse_apdu(raw: bytes) -> Apdu:
    """Short and extended ISO 7816-4 cases 1-4."""
    if len(raw) < 4:
        raise ValueError("an APDU has at least 4 bytes")
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Apdu(cla, ins, p1, p2, b"", 0)
    if len(body) == 1:
        return Apdu(cla, ins, p1, p2, b"", body[0] or 256)
    if body[0] != 0:  # short Lc
        lc = body[0]
        data = body[1:1 + lc]
        rest = body[1 + lc:]
        if len(data) != lc or len(rest) > 1:
            raise ValueError("bad short APDU length")
        return Apdu(cla, ins, p1, p2, data, (rest[0] or 256) if rest else 0)
    if len(body) == 3:  # extended Le only
        return Apdu(cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536)
    lc = int.from_bytes(body[1:3], "big")
    data = body[3:3 + lc]
    rest = body[3 + lc:]
    if len(data) != lc or len(rest) not in (0, 2):
        raise ValueError("bad extended APDU length")
    le = (int.from_bytes(rest, "big") or 65536) if rest else 0
    return Apdu(cla, ins, p1, p2, data, le)


@dataclass
class SlotKey:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def algorithm(self) -> int:
        return ALG_RSA2048 if isinstance(self.key, rsa.RSAPrivateKey) else ALG_P256


@dataclass
class PivCard:
    """The PIV applet's state and its APDU handler (``answer``)."""

    slots: dict[int, SlotKey]
    pin: str = DEFAULT_PIN
    puk: str = DEFAULT_PUK
    pin_max_tries: int = 3
    puk_max_tries: int = 3
    pin_always: bool = True  # 9C needs a VERIFY before each use
    delay: float = 0.0
    delay_ins: frozenset[int] | None = None  # the instructions delayed (None: every one)
    guid: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    label: str = "Imza Test PIV"
    pin_tries: int = -1  # -1: set to the maximum in __post_init__
    puk_tries: int = -1
    # runtime state
    pin_verified: bool = False
    always_ready: bool = False
    puk_verified: bool = False
    selected: bool = False
    apdus: list[bytes] = field(default_factory=list)  # every command seen (INS at [1])
    _pending: bytes = b""  # answer still to fetch with GET RESPONSE
    _chained: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pulled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.pin_tries < 0:
            self.pin_tries = self.pin_max_tries
        if self.puk_tries < 0:
            self.puk_tries = self.puk_max_tries

    # --- life cycle ------------------------------------------------------------------------

    def reset(self) -> None:
        """Power off/on or warm reset: the security status and selection are gone."""
        with self._lock:
            self.pin_verified = self.always_ready = self.selected = False
            self.puk_verified = False
            self._pending = self._chained = b""

    @property
    def pin_blocked(self) -> bool:
        return self.pin_tries == 0

    @property
    def puk_blocked(self) -> bool:
        return self.puk_tries == 0

    # --- dispatch --------------------------------------------------------------------------

    def answer(self, raw: bytes) -> bytes:
        self.apdus.append(bytes(raw))  # before the delay: a test may act while it runs
        slow = self.delay_ins is None or (len(raw) > 1 and raw[1] in self.delay_ins)
        if self.delay and slow:
            self._pulled.wait(self.delay)
        with self._lock:
            try:
                apdu = parse_apdu(raw)
            except ValueError:
                return SW_WRONG_LENGTH
            return self._dispatch(apdu)

    def _dispatch(self, apdu: Apdu) -> bytes:
        if apdu.ins == 0xC0:
            return self._get_response(apdu.le)
        self._pending = b""
        if apdu.cla & 0xEF != 0x00:
            return SW_NO_CLA
        if apdu.cla & 0x10:  # command chaining: more to come
            self._chained += apdu.data
            return SW_OK
        if self._chained:
            apdu.data = self._chained + apdu.data
            self._chained = b""
        if apdu.ins == 0xA4:
            return self._select(apdu)
        if not self.selected:
            return SW_NO_INS
        handler = {0xCB: self._get_data, 0x20: self._verify, 0x24: self._change,
                   0x2C: self._reset_retry, 0x87: self._general_authenticate}.get(apdu.ins)
        if handler is None:
            return SW_NO_INS
        return handler(apdu)

    def _respond(self, data: bytes, le: int) -> bytes:
        """Up to Le bytes now (256 when Le is absent or zero), the rest by GET RESPONSE."""
        size = min(le or 256, 256)
        if len(data) <= size:
            return data + SW_OK
        self._pending = data[size:]
        return data[:size] + bytes([0x61, min(len(self._pending), 256) & 0xFF])

    def _get_response(self, le: int) -> bytes:
        if not self._pending:
            return b"\x69\x85"  # conditions of use not satisfied
        data, self._pending = self._pending, b""
        return self._respond(data, le)

    # --- SELECT and GET DATA -----------------------------------------------------------------

    def _select(self, apdu: Apdu) -> bytes:
        aid = apdu.data
        if apdu.p1 != 0x04 or len(aid) < 5 or not PIV_AID.startswith(aid):
            return SW_NOT_FOUND  # e.g. CACKey's CAC CCC applet, OpenSC's other drivers
        self.selected = True
        template = (tlv(0x4F, PIV_AID[5:9]) + tlv(0x79, tlv(0x4F, PIV_AID[:5]))
                    + tlv(0x50, self.label.encode("ascii"))
                    + tlv(0xAC, tlv(0x80, bytes([ALG_RSA2048])) + tlv(0x80, bytes([ALG_P256]))
                          + tlv(0x06, b"\x00")))
        return self._respond(tlv(0x61, template), apdu.le)

    def container(self, tag: int) -> bytes | None:
        """A data object as GET DATA returns it, or None when the card has none."""
        if tag == DISCOVERY:
            # PIN usage policy 40 00: the PIV application PIN only, no global PIN.
            return tlv(0x7E, tlv(0x4F, PIV_AID) + tlv(0x5F2F, b"\x40\x00"))
        if tag == CHUID:
            fascn = bytes.fromhex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")
            body = (tlv(0x30, fascn) + tlv(0x34, self.guid) + tlv(0x35, b"20301231")
                    + tlv(0x3E, b"") + tlv(0xFE, b""))
            return tlv(0x53, body)
        if tag == KEY_HISTORY:
            return tlv(0x53, tlv(0xC1, b"\x00") + tlv(0xC2, b"\x00") + tlv(0xFE, b""))
        for slot, container in SLOT_CONTAINERS.items():
            if tag == container and slot in self.slots:
                der = self.slots[slot].cert.public_bytes(Encoding.DER)
                return tlv(0x53, tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE, b""))
        return None

    def _get_data(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            return SW_BAD_P1P2
        try:
            tag_type, tag_value, _ = read_tlv(apdu.data)
        except IndexError:
            return SW_WRONG_DATA
        if tag_type != 0x5C or not 1 <= len(tag_value) <= 3:
            return SW_WRONG_DATA
        found = self.container(int.from_bytes(tag_value, "big"))
        if found is None:
            return SW_NOT_FOUND
        return self._respond(found, apdu.le)

    # --- PIN and PUK -------------------------------------------------------------------------

    def _tries_sw(self, tries: int) -> bytes:
        return SW_BLOCKED if tries == 0 else bytes([0x63, 0xC0 | min(tries, 15)])

    def _verify(self, apdu: Apdu) -> bytes:
        if apdu.p2 not in (PIN_REF, PUK_REF):
            return b"\x6a\x88"  # referenced data not found
        if apdu.p1 == 0xFF and not apdu.data:  # SP 800-73-4: reset the security status
            if apdu.p2 == PIN_REF:
                self.pin_verified = self.always_ready = False
            return SW_OK
        if apdu.p1 != 0x00:
            return SW_BAD_P1P2
        is_pin = apdu.p2 == PIN_REF
        tries = self.pin_tries if is_pin else self.puk_tries
        if not apdu.data:  # a question, no try spent
            if tries == 0:
                return SW_BLOCKED
            if is_pin and self.pin_verified:
                return SW_OK
            return self._tries_sw(tries)
        if len(apdu.data) != 8:
            return SW_WRONG_DATA
        if tries == 0:
            return SW_BLOCKED
        if not self._check(apdu.data, is_pin):
            if is_pin:
                self.pin_verified = self.always_ready = False
            else:
                self.puk_verified = False
            return self._tries_sw(self.pin_tries if is_pin else self.puk_tries)
        if is_pin:
            self.pin_verified = self.always_ready = True
        else:
            self.puk_verified = True
        return SW_OK

    def _check(self, given: bytes, is_pin: bool) -> bool:
        """Compare and count: a wrong value spends a try, a right one restores them."""
        stored = pad_reference(self.pin if is_pin else self.puk)
        if given == stored:
            if is_pin:
                self.pin_tries = self.pin_max_tries
            else:
                self.puk_tries = self.puk_max_tries
            return True
        if is_pin:
            self.pin_tries = max(self.pin_tries - 1, 0)
        else:
            self.puk_tries = max(self.puk_tries - 1, 0)
        return False

    def _change(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x00 or apdu.p2 not in (PIN_REF, PUK_REF):
            return SW_BAD_P1P2
        if len(apdu.data) != 16 or not _valid_reference(apdu.data[8:]):
            return SW_WRONG_DATA
        is_pin = apdu.p2 == PIN_REF
        if (self.pin_tries if is_pin else self.puk_tries) == 0:
            return SW_BLOCKED
        if not self._check(apdu.data[:8], is_pin):
            return self._tries_sw(self.pin_tries if is_pin else self.puk_tries)
        new = apdu.data[8:].rstrip(b"\xff").decode("ascii")
        if is_pin:
            self.pin = new
        else:
            self.puk = new
        return SW_OK

    def _reset_retry(self, apdu: Apdu) -> bytes:
        if apdu.p2 != PIN_REF or apdu.p1 not in (0x00, 0x02):
            return SW_BAD_P1P2
        if apdu.p1 == 0x02:
            # ISO 7816-4: new PIN only, the PUK having been verified before (VERIFY 81).
            # SP 800-73-4 defines P1 00 alone; OpenSC 0.23 sends this for C_InitPIN in
            # an SO session (user_pin_unblock_style = init_pin_in_so_session).
            if not self.puk_verified:
                return SW_SECURITY
            new = apdu.data + b"\xff" * (8 - len(apdu.data))
            if not _valid_reference(new):
                return SW_WRONG_DATA
        else:
            if len(apdu.data) != 16 or not _valid_reference(apdu.data[8:]):
                return SW_WRONG_DATA
            if self.puk_tries == 0:
                return SW_BLOCKED
            if not self._check(apdu.data[:8], is_pin=False):
                return self._tries_sw(self.puk_tries)
            new = apdu.data[8:]
        self.pin = new.rstrip(b"\xff").decode("ascii")
        self.pin_tries = self.pin_max_tries
        self.pin_verified = self.always_ready = False
        return SW_OK

    # --- GENERAL AUTHENTICATE ------------------------------------------------------------------

    def _general_authenticate(self, apdu: Apdu) -> bytes:
        slot = self.slots.get(apdu.p2)
        if slot is None:
            return SW_NOT_FOUND
        if apdu.p1 != slot.algorithm:
            return SW_BAD_P1P2
        try:
            tag, template, _ = read_tlv(apdu.data)
            items: dict[int, bytes] = {}
            offset = 0
            while offset < len(template):
                item_tag, value, offset = read_tlv(template, offset)
                items[item_tag] = value
        except IndexError:
            return SW_WRONG_DATA
        if tag != 0x7C or 0x81 not in items or 0x82 not in items:
            return SW_WRONG_DATA
        if apdu.p2 == 0x9C and self.pin_always:
            if not self.always_ready:
                return SW_SECURITY
            self.always_ready = False  # spent by this one use
        elif apdu.p2 in (0x9A, 0x9D, 0x9C) and not self.pin_verified:
            return SW_SECURITY
        signature = self._private_operation(slot, items[0x81])
        if signature is None:
            return SW_WRONG_DATA
        return self._respond(tlv(0x7C, tlv(0x82, signature)), apdu.le)

    @staticmethod
    def _private_operation(slot: SlotKey, challenge: bytes) -> bytes | None:
        key = slot.key
        if isinstance(key, rsa.RSAPrivateKey):
            numbers = key.private_numbers()
            modulus = numbers.public_numbers.n
            size = (modulus.bit_length() + 7) // 8
            value = int.from_bytes(challenge, "big")
            if len(challenge) != size or value >= modulus:
                return None
            return pow(value, numbers.d, modulus).to_bytes(size, "big")
        width = (key.curve.key_size + 7) // 8
        digest = challenge[:width].rjust(width, b"\x00")
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


# --- the card in a vpcd reader --------------------------------------------------------------

class PivVirtualCard(VirtualCard):
    """vcard's card with the PIV applet behind it; a power cycle or reset clears the
    applet's security status, as on a real card."""

    def __init__(self, piv: PivCard, port: int, atr: bytes = PIV_ATR) -> None:
        super().__init__(atr, port, piv.answer)
        self.piv = piv

    def insert(self) -> PivVirtualCard:
        self.piv._pulled.clear()
        self.piv.reset()
        super().insert()
        return self

    def remove(self) -> None:
        self.piv._pulled.set()  # a slow answer in progress ends now
        super().remove()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                (length,) = struct.unpack(">H", self._recv(sock, 2))
                message = self._recv(sock, length)
                if length == 1 and message[0] in (POWER_OFF, POWER_ON, RESET):
                    self.powered = message[0] != POWER_OFF
                    self.piv.reset()
                elif length == 1 and message[0] == GET_ATR:
                    self._send(sock, self.atr)
                else:
                    reply = self.answer(message)
                    if self._sock is not sock:  # pulled meanwhile: no answer
                        return
                    self._send(sock, reply)


def make_slots(pki: TestPKI, holder: str, *, signature_key: str = "EC",
               tag: str = "piv", all_slots: bool = False) -> dict[int, SlotKey]:
    """9A (PIV authentication, RSA-2048) and 9C (digital signature, P-256 by default,
    or RSA-2048 for middleware without ECC such as CACKey), certificates issued by the
    test PKI to ``holder``.  ``all_slots`` fills the other two of SP 800-73's four key
    slots too: 9D (key management, RSA-2048) and 9E (card authentication, no PIN; of
    ``signature_key``'s type)."""
    auth_key = rsa.generate_private_key(65537, 2048)
    sign_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if signature_key == "EC"
        else rsa.generate_private_key(65537, 2048))
    auth_cert = pki.issue(f"{tag}-9a", auth_key.public_key(), purpose="auth",
                          common_name=holder, country="AZ", serial_number=None)
    sign_cert = pki.issue(f"{tag}-9c", sign_key.public_key(), purpose="sign",
                          common_name=holder, country="AZ", serial_number=None)
    slots = {0x9A: SlotKey(auth_key, auth_cert), 0x9C: SlotKey(sign_key, sign_cert)}
    if all_slots:
        # The test PKI issues "sign" and "auth" certificates only; 9D's and 9E's are
        # "auth" ones: what matters here is that the middleware finds and uses each slot.
        management_key = rsa.generate_private_key(65537, 2048)
        card_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            ec.generate_private_key(ec.SECP256R1()) if signature_key == "EC"
            else rsa.generate_private_key(65537, 2048))
        for slot, key in ((0x9D, management_key), (0x9E, card_key)):
            cert = pki.issue(f"{tag}-{slot:x}", key.public_key(), purpose="auth",
                             common_name=holder, country="AZ", serial_number=None)
            slots[slot] = SlotKey(key, cert)
    return slots


@dataclass
class CardInReader:
    """What ``piv_card_in_reader`` yields: the applet (``piv``: PIN, PUK, counters), the
    vpcd card (``card``: ``remove()`` / ``insert()`` pull and put it back) and the
    reader's name as PC/SC shows it."""

    piv: PivCard
    card: PivVirtualCard
    reader: str

    def insert(self) -> None:
        self.card.insert()
        wait_until_present(self.card.atr, self.reader)

    def remove(self) -> None:
        self.card.remove()


def reader_name(index: int) -> str:
    """vpcd's readers as pcscd names them with vcard.Pcscd's config."""
    return f"Virtual PCD 00 {index:02d}"


@contextlib.contextmanager
def piv_card_in_reader(pcscd: Pcscd, *, pki: TestPKI | None = None,
                       holder: str = "Əliyev Vüqar", reader: int = 0,
                       signature_key: str = "EC", pin_always: bool = True,
                       delay: float = 0.0, pin: str = DEFAULT_PIN, puk: str = DEFAULT_PUK,
                       pin_max_tries: int = 3, puk_max_tries: int = 3,
                       all_slots: bool = False) -> Iterator[CardInReader]:
    """A PIV card with 9A and 9C keys (``all_slots``: 9D and 9E too) in vpcd's reader
    ``reader`` (0 or 1) of a running ``Pcscd``; yields once pcscd sees it, and pulls it
    afterwards."""
    pki = pki or build_pki()
    piv = PivCard(slots=make_slots(pki, holder, signature_key=signature_key,
                                   tag=f"piv{reader}-{uuid.uuid4().hex[:6]}",
                                   all_slots=all_slots),
                  pin=pin, puk=puk, pin_max_tries=pin_max_tries, puk_max_tries=puk_max_tries,
                  pin_always=pin_always, delay=delay)
    card = PivVirtualCard(piv, pcscd.port + reader)
    placed = CardInReader(piv, card, reader_name(reader))
    placed.insert()
    try:
        yield placed
    finally:
        card.remove()
