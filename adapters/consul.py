"""Discovery through the local Consul agent, on py-consul's ``consul.aio``.

py-consul supplies the API layer (endpoint paths, parameters, JSON callbacks). The transport
under it is ours: py-consul's aio transport builds its aiohttp connector with arguments that
current aiohttp deprecates, knows no unix sockets, namespaces, partitions, TLS server name or
HTTP basic auth, and reads answers of any size. ``_Transport`` keeps one pooled aiohttp session
and maps every failure into ``bootstrap.errors`` at one place. Nothing else in the project
touches ``consul``: swapping the client library means rewriting this module only.
"""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

import aiohttp
import consul.aio
import consul.base
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from bootstrap.deadline import Deadline
from bootstrap.errors import ConsulBadAnswer, ConsulDenied, ConsulError, ConsulUnavailable
from bootstrap.log import log, mask, redact
from bootstrap.model import Instance, endpoint
from bootstrap.ports import DiscoveryPort, KVEntry, Registration
from bootstrap.settings import ConsulSettings

MAX_ANSWER_BYTES = 8 * 1024 * 1024  # 1,000 instances are about 2 MiB; more is not an answer
REQUEST_TIMEOUT_S = 10.0
T = TypeVar("T")
Callback = Callable[[consul.base.Response], T]


def _wait_seconds(uri: str) -> float:
    wait = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query)).get("wait", "")
    if wait.endswith("ms"):
        return float(wait[:-2]) / 1000
    if wait.endswith("s"):
        return float(wait[:-1])
    return 0.0


class _Transport:
    """The HTTP transport under py-consul's API layer: ours, not a py-consul subclass.

    py-consul's ``Consul`` calls exactly ``get``, ``put``, ``delete`` and ``post`` (its
    ``HTTPClient`` interface, the seam its own sync and aio clients plug into) with a callback
    that turns a ``consul.base.Response`` into a value. Everything below that line is ours:
    the aiohttp session, TLS, timeouts bounded by the deadline, the size cap and the mapping
    of every failure into ``bootstrap.errors``. Nothing of py-consul's private code runs, so a
    py-consul release that renames an internal cannot route a call around it;
    ``tests/unit/test_consul_transport.py`` fails if the interface py-consul calls changes.
    """

    def __init__(self, settings: ConsulSettings, deadline: Deadline) -> None:
        host = "localhost" if settings.scheme == "unix" else settings.host
        scheme = "http" if settings.scheme == "unix" else settings.scheme
        self.base_uri = f"{scheme}://{endpoint(host, settings.port or 80)}"
        self.settings = settings
        self.deadline = deadline
        self.extra_params = [
            (name, value)
            for name, value in (("ns", settings.namespace), ("partition", settings.partition))
            if value
        ]
        self.auth = None
        if settings.http_auth:
            user, _, password = settings.http_auth.partition(":")
            self.auth = aiohttp.BasicAuth(user, password)
        connector: aiohttp.BaseConnector
        if settings.scheme == "unix":
            connector = aiohttp.UnixConnector(path=settings.socket_path or "")
        else:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context() if scheme == "https" else False
            )
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout())

    # -- the interface py-consul's API layer calls (callback and path positional, the rest
    # -- by keyword: tests/unit/test_consul_transport.py holds py-consul to that) -------------

    def get(self, callback: Callback[T], path: str, **kwargs: Any) -> Awaitable[T]:
        return self._verb("GET", callback, path, **kwargs)

    def put(self, callback: Callback[T], path: str, **kwargs: Any) -> Awaitable[T]:
        return self._verb("PUT", callback, path, **kwargs)

    def delete(self, callback: Callback[T], path: str, **kwargs: Any) -> Awaitable[T]:
        return self._verb("DELETE", callback, path, **kwargs)

    def post(self, callback: Callback[T], path: str, **kwargs: Any) -> Awaitable[T]:
        return self._verb("POST", callback, path, **kwargs)

    def _verb(
        self,
        method: str,
        callback: Callback[T],
        path: str,
        *,
        params: list[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
        **_: Any,  # raw, connections_timeout: our own limits apply
    ) -> Awaitable[T]:
        return self._request(callback, method, self.uri(path, params), headers, data)

    def _ssl_context(self) -> ssl.SSLContext:
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.ca_file, capath=s.ca_path)
            if s.client_cert:
                context.load_cert_chain(s.client_cert, s.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConsulError(f"Consul TLS settings: {exc}") from exc
        if not s.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def uri(self, path: str, params: list[tuple[str, Any]] | None = None) -> str:
        uri = self.base_uri + urllib.parse.quote(path, safe="/:")
        query = [*(params or []), *self.extra_params]
        return f"{uri}?{urllib.parse.urlencode(query)}" if query else uri

    async def _request(
        self,
        callback: Callable[[consul.base.Response], T],
        method: str,
        uri: str,
        headers: dict[str, str] | None,
        data: Any = None,
    ) -> T:
        path = urllib.parse.urlsplit(uri).path
        wait = _wait_seconds(uri)
        # Consul holds a blocking query for wait + up to wait/16; a hung agent holds it for
        # ever. Never wait for an answer past the deadline by more than that jitter.
        timeout = min(
            REQUEST_TIMEOUT_S + wait, max(0.5, self.deadline.remaining() + wait / 16 + 0.1)
        )
        try:
            async with self._session.request(
                method,
                uri,
                headers=headers,
                data=data,
                auth=self.auth,
                # aiohttp rounds a timeout over 5 s up to a whole second; ours are exact.
                timeout=aiohttp.ClientTimeout(total=timeout, ceil_threshold=math.inf),
                server_hostname=self.settings.tls_server_name,
            ) as resp:
                body = await _read_capped(resp, path)
                status, resp_headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ConsulUnavailable(f"Consul agent at {self.settings.url}: {reason}") from exc
        text = body.decode("utf-8", errors="replace")
        first_line = text.strip().splitlines()[0][:300] if text.strip() else ""
        if status == 403:
            raise ConsulDenied(f"Consul refused {method} {path} (403): {first_line}")
        if status >= 500:
            raise ConsulUnavailable(f"Consul answered {status} to {method} {path}: {first_line}")
        if status >= 400 and status != 404:
            raise ConsulBadAnswer(f"Consul answered {status} to {method} {path}: {first_line}")
        try:
            return callback(consul.base.Response(status, resp_headers, text))
        except Exception as exc:  # py-consul's callbacks raise assorted errors on bad JSON
            raise ConsulBadAnswer(
                f"Consul's answer to {method} {path} is not valid: {exc}"
            ) from exc

    async def close(self) -> None:
        await self._session.close()


async def _read_capped(resp: aiohttp.ClientResponse, path: str) -> bytes:
    if resp.content_length is not None and resp.content_length > MAX_ANSWER_BYTES:
        raise ConsulBadAnswer(f"Consul's answer to {path} is {resp.content_length} bytes; too big")
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise ConsulBadAnswer(f"Consul's answer to {path} is over {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _Client(consul.aio.Consul):  # type: ignore[misc]
    """py-consul's client with our transport plugged in."""

    def __init__(self, settings: ConsulSettings, deadline: Deadline) -> None:
        self._cb_settings, self._cb_deadline = settings, deadline
        # Explicit host/port/scheme/verify stop py-consul from reading CONSUL_* itself:
        # our settings already did, with Consul's own precedence rules.
        super().__init__(
            host=settings.host,
            port=settings.port or 80,
            scheme="http",
            verify=settings.verify,
            dc=settings.datacenter,
        )
        self.token = settings.token  # py-consul would let CONSUL_HTTP_TOKEN beat the token file

    def http_connect(self, *_: Any, **__: Any) -> _Transport:
        """py-consul's factory for its transport: ours, composed, not inherited."""
        return _Transport(self._cb_settings, self._cb_deadline)


class ConsulDiscovery(DiscoveryPort):
    """``DiscoveryPort`` on a real Consul agent. See the port for the contract."""

    def __init__(self, settings: ConsulSettings, deadline: Deadline) -> None:
        self.settings = settings
        self.deadline = deadline
        self._client: _Client | None = None
        redact(settings.token)
        redact(settings.http_auth)

    async def __aenter__(self) -> Self:
        self._client = _Client(self.settings, self.deadline)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.http.close()
            self._client = None

    @property
    def client(self) -> _Client:
        if self._client is None:
            raise RuntimeError("ConsulDiscovery used outside 'async with'")
        return self._client

    async def _call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run ``request``, retrying only ``ConsulUnavailable`` until the deadline."""

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if state.attempt_number == 1:
                log.warning("%s; retrying for up to %.0fs", error, self.deadline.remaining())

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ConsulUnavailable),
            wait=wait_random_exponential(multiplier=0.2, max=3.0),
            stop=lambda _state: not self.deadline.retries or self.deadline.remaining() < 0.05,
            sleep=lambda seconds: asyncio.sleep(min(seconds, self.deadline.remaining())),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await request()
        except ConsulUnavailable as exc:
            raise ConsulUnavailable(
                f"{what}: gave up after {self.deadline.elapsed():.1f}s: {exc}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def instances(
        self, service: str, *, index: int = 0, wait_s: float = 0.0
    ) -> tuple[int, list[Instance]]:
        kwargs: dict[str, Any] = {}
        if index > 0:
            kwargs = {"index": index, "wait": f"{max(1, int(wait_s * 1000))}ms"}
        raw_index, entries = await self._call(
            f"listing service {service!r}", lambda: self.client.health.service(service, **kwargs)
        )
        if not isinstance(entries, list):
            raise ConsulBadAnswer(f"health of {service!r}: expected a list, got {type(entries)}")
        return _index(raw_index), [_instance(entry, service) for entry in entries]

    async def kv_list(
        self, prefix: str, *, index: int = 0, wait_s: float = 0.0
    ) -> tuple[int, dict[str, KVEntry]]:
        kwargs: dict[str, Any] = {"recurse": True}
        if index > 0:
            kwargs |= {"index": index, "wait": f"{max(1, int(wait_s * 1000))}ms"}
        raw_index, entries = await self._call(
            f"reading KV {prefix!r}", lambda: self.client.kv.get(prefix, **kwargs)
        )
        if entries is None:
            return _index(raw_index), {}
        if not isinstance(entries, list):
            raise ConsulBadAnswer(f"KV {prefix!r}: expected a list of entries")
        result = {}
        for entry in entries:
            key, value = _kv_entry(entry, prefix)
            result[key] = value
        return _index(raw_index), result

    async def kv_get(self, key: str) -> KVEntry | None:
        _, entry = await self._call(f"reading KV {key!r}", lambda: self.client.kv.get(key))
        if entry is None:
            return None
        return _kv_entry(entry, key)[1]

    async def kv_create(self, key: str, value: str) -> bool:
        return _bool_answer(
            await self._call(f"creating KV {key!r}", lambda: self.client.kv.put(key, value, cas=0)),
            key,
        )

    async def kv_replace(self, key: str, value: str, modify_index: int) -> bool:
        return _bool_answer(
            await self._call(
                f"updating KV {key!r}", lambda: self.client.kv.put(key, value, cas=modify_index)
            ),
            key,
        )

    async def kv_delete(self, key: str, modify_index: int) -> bool:
        return _bool_answer(
            await self._call(
                f"deleting KV {key!r}", lambda: self.client.kv.delete(key, cas=modify_index)
            ),
            key,
        )

    async def register(self, registration: Registration) -> None:
        check = None
        if registration.check is not None:
            c = registration.check
            check = {
                key: value
                for key, value in (
                    ("TCP", c.tcp),
                    ("HTTP", c.http),
                    ("TTL", c.ttl),
                    ("Status", c.status),
                    ("Interval", None if c.ttl else c.interval),
                    ("Timeout", None if c.ttl else c.timeout),
                    ("DeregisterCriticalServiceAfter", c.deregister_critical_after),
                )
                if value
            }
        await self._call(
            f"registering {registration.service_id!r}",
            lambda: self.client.agent.service.register(
                registration.name,
                service_id=registration.service_id,
                address=registration.address,
                port=registration.port,
                tags=list(registration.tags),
                meta=dict(registration.meta),
                check=check,
                replace_existing_checks=True,
            ),
        )
        log.info(
            "registered %s at %s:%d",
            registration.service_id,
            registration.address,
            registration.port,
        )

    async def deregister(self, service_id: str) -> None:
        await self._call(
            f"deregistering {service_id!r}",
            lambda: self.client.agent.service.deregister(service_id),
        )

    async def session_create(self, name: str, ttl_s: int, lock_delay_s: int) -> str:
        session = await self._call(
            "creating a session",
            lambda: self.client.session.create(name=name, ttl=ttl_s, lock_delay=lock_delay_s),
        )
        if not isinstance(session, str) or not _is_uuid(session):
            raise ConsulBadAnswer(f"session create: {str(session)[:40]!r} is not a session id")
        return session

    async def session_renew(self, session_id: str) -> bool:
        answer = await self._call(
            "renewing the session",
            lambda: self.client.http.put(
                lambda r: r.code != 404,
                f"/v1/session/renew/{_uuid(session_id)}",
                headers=self.client.prepare_headers(None),
            ),
        )
        return bool(answer)

    async def session_destroy(self, session_id: str) -> None:
        await self._call(
            "destroying the session", lambda: self.client.session.destroy(_uuid(session_id))
        )

    async def lock_acquire(self, key: str, session_id: str, value: str) -> bool:
        return _bool_answer(
            await self._call(
                f"taking the lock {key!r}",
                lambda: self.client.kv.put(key, value, acquire=_uuid(session_id)),
            ),
            key,
        )

    async def lock_release(self, key: str, session_id: str) -> bool:
        return _bool_answer(
            await self._call(
                f"releasing the lock {key!r}",
                lambda: self.client.kv.put(key, "", release=_uuid(session_id)),
            ),
            key,
        )

    async def report_health(self, check_id: str, status: str, output: str) -> None:
        verb = {"passing": "pass", "warning": "warn", "critical": "fail"}[status]
        if not check_id or any(c in check_id for c in "/?#%"):
            raise ValueError(f"{check_id[:60]!r} is not a check id")

        def known(response: consul.base.Response) -> bool:
            if response.code == 404:
                raise ConsulBadAnswer(f"the agent has no check {check_id!r}")
            return True

        await self._call(
            f"updating the check {check_id!r}",
            lambda: self.client.http.put(
                known,
                f"/v1/agent/check/{verb}/{check_id}",
                params=[("note", output)],
                headers=self.client.prepare_headers(None),
            ),
        )

    async def describe(self) -> dict[str, str]:
        s = self.settings
        info = {
            "address": s.url,
            "token": f"{mask(s.token)} from {s.token_source}",
            "tls": "off"
            if s.scheme != "https"
            else (
                f"on, verify={'yes' if s.verify else 'NO'}, ca_file={s.ca_file or '-'}, "
                f"ca_path={s.ca_path or '-'}, client_cert={s.client_cert or '-'}, "
                f"server_name={s.tls_server_name or '-'}"
            ),
            "http_auth": mask(s.http_auth),
            "datacenter": s.datacenter or "(agent's)",
            "namespace": s.namespace or "(default)",
            "partition": s.partition or "(default)",
        }
        try:
            leader = await self.client.status.leader()
            info["reachable"] = f"yes, raft leader {leader or '(none)'}"
        except ConsulError as exc:
            info["reachable"] = f"NO: {exc}"
        return info


def _is_uuid(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for c in text.replace("-", "")
    )


def _uuid(session_id: str) -> str:
    if not _is_uuid(session_id):  # it goes into a URL path
        raise ValueError(f"{session_id[:40]!r} is not a session id")
    return session_id


def _index(raw: object) -> int:
    text = str(raw)
    if not text.isdigit():
        raise ConsulBadAnswer(f"Consul sent X-Consul-Index {text[:40]!r}, not a number")
    return max(1, int(text))


def _bool_answer(answer: object, key: str) -> bool:
    if not isinstance(answer, bool):
        raise ConsulBadAnswer(f"KV {key!r}: expected true or false, got {str(answer)[:40]!r}")
    return answer


def _instance(entry: object, service: str) -> Instance:
    bad = ConsulBadAnswer(f"health of {service!r}: an entry is not a service instance")
    if not isinstance(entry, dict):
        raise bad
    node, svc = entry.get("Node"), entry.get("Service")
    if not isinstance(node, dict) or not isinstance(svc, dict):
        raise bad
    meta, tags = svc.get("Meta") or {}, svc.get("Tags") or []
    if not isinstance(meta, dict) or not isinstance(tags, list):
        raise bad
    address = svc.get("Address") or node.get("Address")
    return Instance(
        service_id=str(svc.get("ID", "")),
        node=str(node.get("Node", "")),
        address=address if isinstance(address, str) else repr(address),
        port=svc.get("Port", 0),
        tags=tuple(str(tag) for tag in tags),
        meta={str(k): str(v) for k, v in meta.items()},
        health=_worst_check(entry.get("Checks")),
    )


_CHECK_ORDER = ("passing", "warning", "critical")


def _worst_check(checks: object) -> str:
    """The worst status among an instance's checks (the node's included), "" if none is known."""
    found = (
        [c.get("Status") for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []
    )
    known = [status for status in found if status in _CHECK_ORDER]
    return max(known, key=_CHECK_ORDER.index) if known else ""


def _kv_entry(entry: object, where: str) -> tuple[str, KVEntry]:
    if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
        raise ConsulBadAnswer(f"KV {where!r}: an entry has no key")
    value = entry.get("Value")
    if isinstance(value, str):  # py-consul decodes base64 to bytes; be lenient with a str
        value = base64.b64decode(value)
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else ""
    modify_index = entry.get("ModifyIndex")
    if not isinstance(modify_index, int):
        raise ConsulBadAnswer(f"KV {entry['Key']!r}: ModifyIndex is not a number")
    session = entry.get("Session")
    return entry["Key"], KVEntry(text, modify_index, session if isinstance(session, str) else None)
