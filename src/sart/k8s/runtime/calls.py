"""Calling the apiserver without kubernetes-asyncio's per-call overheads, which cost a
controller more CPU time than everything else it does (measured with benchmarks/controller.py):

- `call_raw`: the answer as the apiserver's JSON (dicts), with no model built (building the
  models parses every timestamp in them with dateutil);
- `read_environment_once`: the proxy environment looked up once, not in a worker thread on
  every request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import hdrs
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from yarl import URL

READ_BUFFER = 2**21  # as kubernetes-asyncio's session: a watch event can be that large


async def call_raw(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)` (a kubernetes-asyncio API method) answered as JSON; an answer
    other than 2xx raises ApiException, as the call itself does when it builds a model."""
    response = await call(*args, _preload_content=False, **kwargs)
    try:
        body = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body.decode(errors="replace")
        raise error
    return json.loads(body) if body else None


def read_environment_once(api: ApiClient) -> None:
    """Make `api` look up the proxy environment once, now, instead of on every request.

    kubernetes-asyncio's aiohttp session trusts the environment: on every request it looks for
    ~/.netrc and reads the *_PROXY variables, each in a worker thread. For a controller making
    thousands of small writes that was about half its CPU time. The proxy the environment names
    for the apiserver (HTTPS_PROXY, NO_PROXY) is looked up here and given to every request;
    ~/.netrc, which Kubernetes clients do not read, is not."""
    rest = api.rest_client
    if not rest.proxy:
        with contextlib.suppress(LookupError):
            proxy, auth = get_env_proxy_for_url(URL(str(api.configuration.host)))
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {hdrs.PROXY_AUTHORIZATION: auth.encode()}
    trusting = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=trusting.connector, trust_env=False, read_bufsize=READ_BUFFER
    )
    trusting.detach()  # the connector is the new session's now
