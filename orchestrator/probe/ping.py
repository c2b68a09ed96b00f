"""SIP OPTIONS ping: is a call server answering at all? (readiness, reachability)"""

from __future__ import annotations

import secrets
import socket
import time


def options_ping(*, address: str, port: int = 5060, source: str | None = None,
                 timeout: float = 1.0, attempts: int = 3) -> int | None:
    """Send OPTIONS and return the response status code, or None if nothing answered."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        local_ip, local_port = sock.getsockname()[:2]
        branch = "z9hG4bK" + secrets.token_hex(8)
        call_id = secrets.token_hex(12)
        msg = (f"OPTIONS sip:{address}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {local_ip}:{local_port};branch={branch};rport\r\n"
               f"From: <sip:callfleet-ping@{local_ip}>;tag={secrets.token_hex(4)}\r\n"
               f"To: <sip:{address}:{port}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
               "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        for _ in range(attempts):
            try:
                sock.sendto(msg, (address, port))
            except OSError:
                return None
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    break
                except OSError:  # ICMP port unreachable surfaces here
                    return None
                head = data.split(b"\r\n", 1)[0].decode(errors="replace").split()
                if call_id.encode() in data and len(head) >= 2 and head[1].isdigit():
                    code = int(head[1])
                    if code >= 200:
                        return code
    return None
