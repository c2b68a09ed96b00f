"""Mass SMS over SMPP 3.4 with smpplib: bind, submit_sm per part, receipts, throttling.

One session per try: connect, bind (transmitter by default; transceiver when delivery
receipts are to be collected on the same session, as SMPP 3.4 only sends deliver_sm to a
receiver or transceiver bind), submit every part to every recipient not yet done, paced
to the SMSC's throughput, with the receipt request (registered_delivery) set, then unbind.
A throttled or queue-full answer is retried with backoff within the session; a broken
session fails the try and the dispatcher retries, resuming after the last accepted
recipient. smpplib logs each PDU in hex at DEBUG (the bind password included): its
logger gets a filter that drops those dumps.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import smpplib.client  # type: ignore[import-untyped]
import smpplib.exceptions  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]
from smpplib import consts

from orchestrator.alerting.channels.base import ChannelError, Progress, SendContext
from orchestrator.alerting.channels.sms_encoding import SmsParts, split_sms
from orchestrator.alerting.config import SmppChannel
from orchestrator.alerting.models import Alert
from orchestrator.alerting.secrets import Redactor, WireDumpFilter
from orchestrator.alerting.templates import Message
from orchestrator.alerting.throttle import RateLimiter

WIRE_LOGGER = "orchestrator.alerting.smpp.wire"
_BIND_REFUSED = {consts.SMPP_ESME_RBINDFAIL, consts.SMPP_ESME_RINVPASWD, consts.SMPP_ESME_RINVSYSID}
_SLOW_DOWN = {consts.SMPP_ESME_RTHROTTLED, consts.SMPP_ESME_RMSGQFUL}
_BAD_DESTINATION = {consts.SMPP_ESME_RINVDSTADR, consts.SMPP_ESME_RINVDSTTON, consts.SMPP_ESME_RINVDSTNPI}
_TRANSIENT = {consts.SMPP_ESME_RSYSERR, consts.SMPP_ESME_RX_T_APPN}
_RECEIPT = re.compile(rb"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)", re.DOTALL)
# message_state TLV values (SMPP 3.4 5.2.28): 2 DELIVERED; 3, 5, 8 final failures.
_STATE_NAMES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN",
                8: "REJECTD"}


def _address(addr: str) -> tuple[int, int, str]:
    """(ton, npi, digits) for an SMPP address: +E.164 international, alphanumeric sender names."""
    if addr.startswith("+") and addr[1:].isdigit():
        return consts.SMPP_TON_INTL, consts.SMPP_NPI_ISDN, addr[1:]
    if addr.isdigit():
        return consts.SMPP_TON_UNK, consts.SMPP_NPI_ISDN, addr
    return consts.SMPP_TON_ALNUM, consts.SMPP_NPI_UNK, addr


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value or "")


class _Session:
    """One bound SMPP session; reads PDUs itself so receipts arriving between submit
    responses are answered and counted."""

    def __init__(self, *, client: Any, ctx: SendContext) -> None:
        self.client = client
        self.ctx = ctx
        self.receipts: dict[str, str] = {}

    def _handle(self, pdu: Any) -> None:
        if pdu.command == "deliver_sm":
            self._receipt(pdu)
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.client)
            resp.sequence = pdu.sequence
            self.client.send_pdu(resp)
        elif pdu.command == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=self.client)
            resp.sequence = pdu.sequence
            self.client.send_pdu(resp)

    def _receipt(self, pdu: Any) -> None:
        msg_id = _text(getattr(pdu, "receipted_message_id", None))
        state = getattr(pdu, "message_state", None)
        stat = _STATE_NAMES.get(state, "") if isinstance(state, int) else ""
        match = _RECEIPT.search(pdu.short_message or b"")
        if match:
            msg_id = msg_id or match["id"].decode("latin-1")
            stat = stat or match["stat"].decode("latin-1")
        if msg_id:
            self.receipts[msg_id] = stat or "UNKNOWN"

    def await_response(self, sequence: int) -> Any:
        """Read PDUs until the response to `sequence` (answering what arrives meanwhile)."""
        while True:
            if self.ctx.remaining() <= 0:
                raise ChannelError("deadline passed waiting for the SMSC")
            pdu = self.client.read_pdu()
            if pdu.is_response() and pdu.sequence == sequence:
                return pdu
            if pdu.command == "generic_nack" and pdu.sequence == sequence:
                raise ChannelError(f"SMSC answered generic_nack (status 0x{pdu.status:x})")
            self._handle(pdu)

    def collect_receipts(self, *, ids: set[str], wait_s: float) -> None:
        """Read receipts until every id has one, `wait_s` passes or the deadline comes."""
        end = min(self.ctx.clock() + wait_s, self.ctx.deadline)
        while not ids <= self.receipts.keys() and self.ctx.clock() < end:
            self.client._socket.settimeout(max(0.05, min(self.ctx.timeout, end - self.ctx.clock())))
            try:
                self._handle(self.client.read_pdu())
            except TimeoutError:
                break


class SmppSender:
    """Sends the SMS form of a message to every phone number of an audience."""

    type = "smpp"

    def __init__(self, *, name: str, settings: SmppChannel, password: str | None, redactor: Redactor,
                 limiter: RateLimiter | None = None) -> None:
        self.name = name
        self._settings = settings
        self._password = password
        self._limiter = limiter or RateLimiter(rate=settings.throughput)
        wire = logging.getLogger(WIRE_LOGGER)
        if not any(isinstance(f, WireDumpFilter) for f in wire.filters):
            wire.addFilter(WireDumpFilter(redactor))

    def _connect(self, ctx: SendContext) -> Any:
        s = self._settings
        client = smpplib.client.Client(s.host, s.port, timeout=ctx.op_timeout(), logger_name=WIRE_LOGGER,
                                       allow_unknown_opt_params=True)
        try:
            client.connect()
            bind = client.bind_transceiver if s.bind == "transceiver" else client.bind_transmitter
            bind(system_id=s.system_id, password=self._password or "", system_type=s.system_type)
        except smpplib.exceptions.PDUError as exc:
            client.disconnect()
            status = exc.args[1] if len(exc.args) > 1 else None
            raise ChannelError(f"smpp {s.host}:{s.port}: bind refused (status 0x{status or 0:x})",
                               permanent=status in _BIND_REFUSED) from None
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            client.disconnect()
            raise ChannelError(f"smpp {s.host}:{s.port}: cannot connect ({type(exc).__name__})") from None
        return client

    def _submit_part(self, session: _Session, *, number: str, parts: SmsParts, body: bytes) -> str | None:
        """Submit one part; returns its message id, None when the SMSC rejects the number."""
        s = self._settings
        ctx = session.ctx
        src_ton, src_npi, src = _address(s.source_addr)
        dst_ton, dst_npi, dst = _address(number)
        for retry in range(s.max_retries + 1):
            if not self._limiter.acquire(deadline=ctx.deadline):
                raise ChannelError("deadline passed: SMSC throughput too low for this many messages")
            pdu = session.client.send_message(
                source_addr_ton=src_ton, source_addr_npi=src_npi, source_addr=src,
                dest_addr_ton=dst_ton, dest_addr_npi=dst_npi, destination_addr=dst,
                esm_class=parts.esm_class, data_coding=parts.data_coding, short_message=body,
                registered_delivery=consts.SMPP_SMSC_DELIVERY_RECEIPT_BOTH)
            resp = session.await_response(pdu.sequence)
            if resp.status == consts.SMPP_ESME_ROK:
                return _text(resp.message_id)
            if resp.status in _BAD_DESTINATION:
                return None
            if resp.status in _SLOW_DOWN and retry < s.max_retries:
                pause = min((2 ** retry) / s.throughput, ctx.remaining())
                ctx.sleep(pause)
                continue
            raise ChannelError(f"submit_sm refused (status 0x{resp.status:x})",
                               permanent=resp.status not in _SLOW_DOWN | _TRANSIENT)
        raise ChannelError("submit_sm still throttled after retries")  # pragma: no cover (loop returns/raises)

    def send(self, *, alert: Alert, message: Message, targets: tuple[str, ...], ctx: SendContext,
             progress: Progress) -> None:
        """Submit the SMS to every recipient not yet done; wait for receipts when configured."""
        s = self._settings
        parts = split_sms(message.sms)
        progress.detail.update(parts_per_sms=len(parts.parts), data_coding=parts.data_coding,
                               recipients=len(targets))
        ids: set[str] = set(progress.detail.get("_ids", ()))
        client = self._connect(ctx)
        session = _Session(client=client, ctx=ctx)
        try:
            for number in targets:
                if number in progress.done or number in progress.rejected:
                    continue
                part_ids = []
                for body in parts.parts:
                    msg_id = self._submit_part(session, number=number, parts=parts, body=body)
                    if msg_id is None:
                        progress.rejected[number] = "invalid destination"
                        break
                    part_ids.append(msg_id)
                else:
                    progress.done.add(number)
                    ids.update(part_ids)
            progress.detail["_ids"] = sorted(ids)
            progress.detail["submitted"] = len(ids)
            if s.bind == "transceiver" and s.receipt_wait_s > 0 and ids:
                session.collect_receipts(ids=ids, wait_s=s.receipt_wait_s)
            self._unbind(client)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            raise ChannelError(f"smpp {s.host}:{s.port}: session broken ({type(exc).__name__})") from None
        finally:
            client.disconnect()
        receipts = {i: st for i, st in session.receipts.items() if i in ids}
        delivered = sum(1 for st in receipts.values() if st == "DELIVRD")
        progress.detail.update(receipts_delivered=delivered, receipts_failed=len(receipts) - delivered)
        progress.acknowledged = bool(ids) and delivered == len(ids)
        if not progress.done:
            raise ChannelError("every recipient was rejected by the SMSC", permanent=True)

    @staticmethod
    def _unbind(client: Any) -> None:
        # A failed unbind after everything was accepted is not a failed delivery.
        with contextlib.suppress(smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
            client.unbind()
