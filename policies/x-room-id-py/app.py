"""x-room-id in Python: tags each INVITE with the room it is for and a fresh
session id, then forwards to the configured backends, in order (failover).

`INVITE sip:room-42@host` leaves with `X-Room-ID: room-42` and
`X-Session-ID: <32 hex digits>`. Other methods take the same route without
the headers; a Request-URI without a user part is relayed untouched.

The same behaviour, on the wire, as the Rust reference `policies/x-room-id`.
"""

from typing import List, Tuple

import wit_world
from wit_world.imports import clock, types

# The `backends` of the config, tried in order. Module state lives as long as
# the instance (one per proxy worker and policy version).
_backends: List[str] = []


def _config_list(config: List[Tuple[str, str]], key: str) -> List[str]:
    """The comma-separated items of `key` (last value wins), trimmed, empty
    items skipped: the guest SDK's `Config::list`."""
    value = None
    for k, v in config:
        if k == key:
            value = v
    if value is None:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def _session_id(high: int, low: int) -> str:
    """128 random bits as 32 lowercase hex digits."""
    return "%016x%016x" % (high, low)


def _route() -> types.Decision:
    if not _backends:
        return types.Decision_Relay()
    return types.Decision_Forward([types.Target(uri, None, None, None, []) for uri in _backends])


class WitWorld(wit_world.WitWorld):
    def init(self, config: List[Tuple[str, str]]) -> None:
        global _backends
        _backends = _config_list(config, "backends")

    def on_request(self, req: types.Request) -> types.Decision:
        room = req.request_uri_user()
        if not room:
            return types.Decision_Relay()
        if req.method() == "INVITE":
            req.set_header("X-Room-ID", room)
            req.set_header("X-Session-ID", _session_id(clock.random_u64(), clock.random_u64()))
        return _route()

    def on_failure(self, req: types.Request, code: int) -> types.Decision:
        # Try the next backend, or answer the best response when none is left.
        return types.Decision_Continue()
