"""A Consul agent that lies: a real HTTP server on 127.0.0.1 for the real adapter to talk to.

By default it answers like a tiny, well-behaved agent (KV with create-only CAS, a service
catalog, blocking queries that return after a short wait). ``answer(method, path, Answer)``
makes every request whose path starts with ``path`` get a chosen answer instead: a 500,
a body that is not JSON, a missing header, ten megabytes. No mocks: the code under test
opens real connections and reads real bytes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOCKING_WAIT_S = 0.2  # how long a blocking query waits before it answers "no change"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer. ``length=False`` sends no Content-Length and ends by closing."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"X-Consul-Index": "7"})
    length: bool = True

    @classmethod
    def json(cls, data: Any, **kwargs: Any) -> Answer:
        return cls(body=json.dumps(data).encode(), **kwargs)


def kv_entry(key: str, value: bytes, modify_index: int = 5) -> dict[str, Any]:
    """One entry of a KV answer, as Consul encodes it (Value in base64)."""
    return {
        "Key": key,
        "Value": base64.b64encode(value).decode(),
        "Flags": 0,
        "CreateIndex": modify_index,
        "ModifyIndex": modify_index,
        "LockIndex": 0,
    }


def health_entry(service: str, service_id: str, address: Any, port: Any) -> dict[str, Any]:
    """One entry of ``/v1/health/service/<name>``; address and port go in unchecked."""
    return {
        "Node": {"Node": "hostile-node", "Address": "127.0.0.1"},
        "Service": {
            "ID": service_id,
            "Service": service,
            "Tags": [],
            "Meta": {},
            "Address": address,
            "Port": port,
        },
        "Checks": [],
    }


class HostileAgent:
    """A fake Consul agent on a free port; use as a context manager."""

    def __init__(self) -> None:
        self.kv: dict[str, bytes] = {}
        self.services: list[dict[str, Any]] = []
        self.overrides: list[tuple[str, str, Answer]] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda *_: None  # a client that hangs up is not our error
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def http_addr(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def env(self) -> dict[str, str]:
        return {"CONSUL_HTTP_ADDR": self.http_addr}

    def answer(self, method: str, path_prefix: str, answer: Answer) -> None:
        """Answer each ``method`` request whose path starts with ``path_prefix`` so."""
        self.overrides.append((method, path_prefix, answer))

    def __enter__(self) -> HostileAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- the well-behaved part ------------------------------------------------------------

    def respond(self, method: str, path: str, query: dict[str, str], body: bytes) -> Answer:
        for wanted_method, prefix, answer in self.overrides:
            if method == wanted_method and path.startswith(prefix):
                return answer
        if "index" in query:
            time.sleep(BLOCKING_WAIT_S)
        with self._lock:
            if path.startswith("/v1/kv/"):
                return self._kv(method, path.removeprefix("/v1/kv/"), query, body)
            if path.startswith("/v1/health/service/") and method == "GET":
                name = path.removeprefix("/v1/health/service/")
                return Answer.json([s for s in self.services if s["Service"]["Service"] == name])
            if path == "/v1/agent/service/register" and method == "PUT":
                data = json.loads(body)
                self.services.append(
                    health_entry(data["Name"], data["ID"], data["Address"], data["Port"])
                )
                return Answer()
            if path == "/v1/status/leader":
                return Answer.json("127.0.0.1:8300")
        return Answer(404, b"no such endpoint here\n")

    def _kv(self, method: str, key: str, query: dict[str, str], body: bytes) -> Answer:
        if method == "GET":
            if "recurse" in query:
                found = {k: v for k, v in self.kv.items() if k.startswith(key)}
            else:
                found = {key: self.kv[key]} if key in self.kv else {}
            if not found:
                return Answer(404)
            return Answer.json([kv_entry(k, v) for k, v in sorted(found.items())])
        if method == "PUT":
            if query.get("cas") == "0" and key in self.kv:
                return Answer.json(False)
            self.kv[key] = body
            return Answer.json(True)
        return Answer(405)


def _handler_for(agent: HostileAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            agent.requests.append(f"{method} {self.path}")
            answer = agent.respond(method, urllib.parse.unquote(url.path), query, body)
            with contextlib.suppress(OSError):
                self._send(answer)

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.length:
                self.send_header("Content-Length", str(len(answer.body)))
            else:
                self.close_connection = True
                self.send_header("Connection", "close")
            self.end_headers()
            for start in range(0, len(answer.body), 64 * 1024):
                self.wfile.write(answer.body[start : start + 64 * 1024])

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
