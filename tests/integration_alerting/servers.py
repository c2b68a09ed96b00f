"""Real protocol servers on loopback for the alerting tests: HTTP receiver, SMTP
(aiosmtpd), an SMPP SMSC (smpplib's PDU classes) and a black hole that accepts and
never answers. Each records what it received, for checks on the server side."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import smpplib.consts as c
import smpplib.smpp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"
SMSC_DELIVERY_RECEIPT = 0x04  # esm_class of a deliver_sm that is a receipt (SMPP 3.4 5.2.12)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- HTTP ---------------------------------------------------------------------------

@dataclass
class HttpHit:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class HttpReceiver:
    """Records every POST; answers `status` (a list is consumed one per request)."""

    def __init__(self, *, statuses: list[int] | None = None) -> None:
        self.hits: list[HttpHit] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hits.append(HttpHit(self.path, dict(self.headers.items()), json.loads(raw), time.monotonic()))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- SMTP ---------------------------------------------------------------------------

class _MailHandler:
    def __init__(self, sink: SmtpServer) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.sink.messages.append((list(envelope.rcpt_tos), msg, time.monotonic()))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on loopback; AUTH checked against (user, password) when given."""

    def __init__(self, *, user: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.messages: list[tuple[list[str], EmailMessage, float]] = []
        self.logins: list[tuple[str, str, bool]] = []  # (user, password, over TLS)
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(auth_require_tls=tls is not None, authenticator=self._auth)
        if tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True)
        self.user, self.password = user, password
        self.controller = Controller(_MailHandler(self), hostname=HOST, port=self.port, **kwargs)
        self.controller.start()

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, pw = data.login.decode(), data.password.decode()
            self.logins.append((login, pw, session.ssl is not None))
            return AuthResult(success=(login, pw) == (self.user, self.password))
        return AuthResult(success=False, handled=False)

    def close(self) -> None:
        self.controller.stop()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (openssl CLI): (cert, key)."""
    cert, key = tmp / "smtp.crt", tmp / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# --- SMPP ---------------------------------------------------------------------------

class _Seq:
    """What smpplib's PDU classes want from a client: a sequence counter."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass
class Submitted:
    destination: str
    source: str
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str
    at: float


@dataclass
class SmscState:
    binds: list[tuple[str, str, str]] = field(default_factory=list)  # (command, system_id, password)
    submits: list[Submitted] = field(default_factory=list)
    receipts_sent: int = 0


class SmppServer:
    """A minimal SMSC: answers binds (checking the password), submit_sm (optionally
    throttling the first `throttle_first` or rejecting some destinations), sends a
    deliver_sm receipt to transceiver binds, answers enquire_link and unbind."""

    def __init__(self, *, system_id: str = "callfleet", password: str = "", throttle_first: int = 0,
                 reject: set[str] | None = None) -> None:
        self.system_id, self.password = system_id, password
        self.throttle_left = throttle_first
        self.throttled = 0
        self.reject = reject or set()
        self.state = SmscState()
        self._lock = threading.Lock()
        self._ids = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket) -> bytes | None:
        head = b""
        while len(head) < 4:
            chunk = conn.recv(4 - len(head))
            if not chunk:
                return None
            head += chunk
        length = struct.unpack(">L", head)[0]
        body = b""
        while len(body) < length - 4:
            chunk = conn.recv(length - 4 - len(body))
            if not chunk:
                return None
            body += chunk
        return head + body

    def _reply(self, conn: socket.socket, name: str, req: Any, seq: _Seq, *, status: int = 0, **fields: Any) -> None:
        pdu = smpplib.smpp.make_pdu(name, client=seq, status=status, **fields)
        pdu.sequence = req.sequence
        conn.sendall(pdu.generate())

    def _serve(self, conn: socket.socket) -> None:
        seq = _Seq()
        mode = ""
        conn.settimeout(5)
        with conn:
            while not self._stop.is_set():
                try:
                    raw = self._read(conn)
                except OSError:
                    return
                if raw is None:
                    return
                req = smpplib.smpp.parse_pdu(raw, client=seq, allow_unknown_opt_params=True)
                if req.command in ("bind_transmitter", "bind_transceiver", "bind_receiver"):
                    sid, pw = req.system_id.decode(), req.password.decode()
                    self.state.binds.append((req.command, sid, pw))
                    ok = (sid, pw) == (self.system_id, self.password)
                    mode = req.command if ok else ""
                    self._reply(conn, f"{req.command}_resp", req, seq, system_id="smsc",
                                status=0 if ok else c.SMPP_ESME_RINVPASWD)
                elif req.command == "submit_sm":
                    self._submit(conn, req, seq, receipts=mode == "bind_transceiver")
                elif req.command == "enquire_link":
                    self._reply(conn, "enquire_link_resp", req, seq)
                elif req.command == "unbind":
                    self._reply(conn, "unbind_resp", req, seq)
                    return

    def _submit(self, conn: socket.socket, req: Any, seq: _Seq, *, receipts: bool) -> None:
        dest = req.destination_addr.decode()
        with self._lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                self.throttled += 1
                self._reply(conn, "submit_sm_resp", req, seq, status=c.SMPP_ESME_RTHROTTLED)
                return
            if dest in self.reject:
                self._reply(conn, "submit_sm_resp", req, seq, status=c.SMPP_ESME_RINVDSTADR)
                return
            self._ids += 1
            msg_id = f"m{self._ids:06d}"
            self.state.submits.append(Submitted(
                destination=dest, source=req.source_addr.decode(), esm_class=req.esm_class or 0,
                data_coding=req.data_coding or 0, registered_delivery=req.registered_delivery or 0,
                short_message=bytes(req.short_message or b""), message_id=msg_id, at=time.monotonic()))
        self._reply(conn, "submit_sm_resp", req, seq, message_id=msg_id)
        if receipts:
            text = f"id:{msg_id} sub:001 dlvrd:001 submit date:2106021445 done date:2106021445 stat:DELIVRD err:000"
            dsm = smpplib.smpp.make_pdu("deliver_sm", client=seq, source_addr=dest, destination_addr="CALLFLEET",
                                        esm_class=SMSC_DELIVERY_RECEIPT, short_message=text.encode(),
                                        receipted_message_id=msg_id,
                                        message_state=2)
            conn.sendall(dsm.generate())
            self.state.receipts_sent += 1

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


# --- a server that accepts and never answers ------------------------------------------

class BlackHole:
    """Accepts TCP connections and never says a word (a hung SMTP relay, SMSC, ...)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()
