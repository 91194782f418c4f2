"""prometheus-api-client, made fit for a judge: POST retries and the whole response.

The client returns only ``data.result`` of a 200 response: ``resultType``,
``warnings`` and ``infos`` are dropped, and transport failures surface as
assorted ``requests`` exceptions. A response hook on our own session keeps the
last response, which `RangeClient.matrix` then checks itself and maps onto
`SourceUnavailable` (nobody or the wrong kind of server answered) or
`SourceResponseError` (Prometheus answered, but not with the matrix asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
import urllib3.exceptions
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from ..errors import SourceResponseError, SourceUnavailable

if TYPE_CHECKING:
    from .prometheus import PrometheusConfig

__all__ = ["Answer", "RangeClient"]

#: Statuses worth another try: throttled, or a server or proxy that is briefly unwell.
_RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True, slots=True)
class Answer:
    """The series of a range query and the ``warnings``/``infos`` that came with it."""

    result: list[dict[str, Any]]
    notes: list[str]


class RangeClient:
    """Range queries through prometheus-api-client on a session of our own."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.url = config.url
        self.timeout = config.timeout
        self.last: requests.Response | None = None
        self.doc: Any = None  # the last response's decoded JSON body, if it had one
        session = requests.Session()
        session.verify = config.verify_tls
        session.hooks["response"].append(self._keep)
        # The client sends headers=None and auth=None per request, so requests uses
        # the session's own.
        session.headers["Accept"] = "application/json"
        if config.bearer_token is not None:
            token = config.bearer_token.get_secret_value()
            session.headers["Authorization"] = f"Bearer {token}"
        if config.basic_auth is not None:
            session.auth = (config.basic_auth.user, config.basic_auth.password.get_secret_value())
        # urllib3 leaves POST out of its default allowed_methods: without this, retries
        # silently stop with method="POST". Queries are read-only, so retrying is safe.
        # Retry-After is ignored: a judge must not sleep for however long a proxy asks.
        retry = Retry(
            total=config.retries,
            backoff_factor=0.5,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,  # hand back the last error response: its body says why
            respect_retry_after_header=False,
        )
        self.prom = PrometheusConnect(
            url=config.url,
            retry=retry,
            session=session,
            # Annotated int, passed straight to requests, which takes float seconds.
            timeout=config.timeout,  # type: ignore[arg-type]
            method=config.method,
        )

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # Decode the body once, here: the client's own response.json() then gets the
        # same document instead of decoding megabytes of JSON a second time.
        try:
            doc = response.json()
        except ValueError:  # requests' JSONDecodeError included
            doc = None
        else:
            response.json = lambda **_: doc  # type: ignore[method-assign]
        self.last, self.doc = response, doc

    def close(self) -> None:
        self.prom.close()

    def matrix(self, query: str, start: datetime, end: datetime, step_seconds: int) -> Answer:
        """Evaluate ``query`` at ``start, start + step, ..., end``; check the whole response."""
        self.last = self.doc = None
        try:
            self.prom.custom_query_range(
                query,
                start_time=start,
                end_time=end,
                step=f"{step_seconds}s",
                params={"timeout": f"{self.timeout:g}s"},  # the server gives up too
            )
        except requests.RequestException as exc:
            if _timed_out(exc):
                raise SourceUnavailable(self.url, f"no answer within {self.timeout:g} s") from None
            if self.last is None:  # nothing came back: refused, reset, DNS, TLS
                raise SourceUnavailable(self.url, f"cannot connect: {_short(exc)}") from None
        except (PrometheusApiClientException, KeyError, TypeError):
            pass  # a response came back (an error status, or JSON of another shape)
        return _check(self.url, self.last, self.doc, query)


def _timed_out(exc: requests.RequestException) -> bool:
    # With a Retry policy urllib3 wraps the last read timeout in MaxRetryError, which
    # requests reports as a ConnectionError (a body that stalls after the headers: a
    # ConnectionError of a bare ReadTimeoutError), so look at the cause, not the class.
    # A refused connection is a NewConnectionError, which urllib3 derives from
    # ConnectTimeoutError for backwards compatibility: not a timeout.
    cause = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError)


def _short(text: object, limit: int = 300) -> str:
    s = str(text)
    return s if len(s) <= limit else s[:limit] + "..."


def _check(url: str, resp: requests.Response | None, doc: Any, query: str) -> Answer:
    """The result of a range query, or the error its response calls for."""
    if resp is None:
        raise SourceUnavailable(url, "no response")
    if not isinstance(doc, dict) or "status" not in doc:
        raise SourceUnavailable(
            url, f"not a Prometheus API: HTTP {resp.status_code} {_short(resp.text)!r}"
        )
    if doc["status"] != "success":
        kind, message = doc.get("errorType", "unknown"), doc.get("error", "")
        # bad_data: Prometheus understood the request and refused the query itself.
        error = SourceResponseError if kind == "bad_data" else SourceUnavailable
        raise error(url, f"HTTP {resp.status_code} {kind}: {message} (query: {query})")
    data = doc.get("data")
    rtype = data.get("resultType") if isinstance(data, dict) else None
    if rtype != "matrix" or not isinstance(data, dict):
        raise SourceResponseError(url, f"expected a matrix, got {rtype!r} (query: {query})")
    result = data.get("result")
    if not isinstance(result, list) or not all(_is_series(s) for s in result):
        raise SourceResponseError(url, f"malformed matrix result (query: {query})")
    notes = [f"warning: {w}" for w in doc.get("warnings") or []]
    notes += [f"info: {i}" for i in doc.get("infos") or []]
    return Answer(result, notes)


def _is_series(s: Any) -> bool:
    return (
        isinstance(s, dict)
        and isinstance(s.get("metric"), dict)
        and isinstance(s.get("values"), list)
        and all(isinstance(p, list) and len(p) == 2 for p in s["values"])
    )
