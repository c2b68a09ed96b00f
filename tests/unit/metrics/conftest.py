"""A fake Prometheus HTTP API on loopback: canned answers per PromQL expression."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestrator.estate.model import Estate
from orchestrator.lab.topology import LabParams, lab_estate


@dataclass
class FakePrometheus:
    """Answers /api/v1/query from `answers` (expression -> (HTTP status, body))."""

    url: str
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    default: tuple[int, Any] = (200, {"status": "success", "data": {"resultType": "vector", "result": []}})
    seen: list[dict[str, str]] = field(default_factory=list)

    def vector(self, expr: str, *samples: tuple[dict[str, str], str]) -> None:
        """Answer `expr` with these samples (labels, value as Prometheus writes it)."""
        result = [{"metric": labels, "value": [1700000000.0, value]} for labels, value in samples]
        self.answers[expr] = (200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def vector_doc(*values: str) -> dict[str, Any]:
    """An instant-vector answer with one unlabelled sample per value."""
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {}, "value": [1.0, v]} for v in values]}}


@pytest.fixture()
def fake_prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            params = dict(urllib.parse.parse_qsl(parsed.query))
            fake.seen.append({"path": parsed.path, **params})
            status, body = fake.answers.get(params.get("query", ""), fake.default)
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def estate(tmp_path: Any) -> Estate:
    """A two-site lab estate (model only, nothing started)."""
    return lab_estate(LabParams(sites=2, hosts_per_site=2, base="198.18.99"), tmp_path)
