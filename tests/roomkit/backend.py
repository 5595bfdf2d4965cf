"""roomkit's SIPVoiceBackend as the voice-AI backend behind Viaduct.

Used by tests/tests/roomkit.rs. Starts ``roomkit.voice.backends.SIPVoiceBackend``
(SIP over UDP on 127.0.0.1 only, RTP on 127.0.0.1 only), auto-answers every
INVITE like a real deployment, and prints one JSON object per line on stdout,
flushed, for the test to read:

  {"event": "ready", "sip": "127.0.0.1:PORT", "roomkit": "X.Y.Z", ...}
      once the SIP socket is bound.
  {"event": "invite", "call_id": ..., "r_uri": ..., "source": "IP:PORT",
   "x_room_ids": [...]}
      an INVITE reached the SIP socket (every X-Room-ID header it carries;
      seen by the observer described under "ack"), before roomkit handles it.
  {"event": "session", "call_id": ..., "room_id": ..., "session_id": ...,
   "callee": ..., "x_headers": {...}}
      roomkit's ``on_call`` callback: the INVITE was answered 200 with SDP and
      the session created; ``room_id`` is ``session.metadata["room_id"]``,
      which roomkit takes from the INVITE's X-Room-ID header.
  {"event": "ack", "call_id": ..., "r_uri": ..., "source": "IP:PORT", "matched": bool}
      an ACK reached the SIP socket. roomkit exposes no ACK callback (its
      UAS swallows the ACK to stop retransmitting the 200), so this is seen
      one level down: aiosipua's ``SipTransport.on_message`` (a public
      attribute, the hook the transport calls for every parsed datagram) is
      wrapped after ``start()``; the original handler still runs. ``matched``
      says whether the ACK's Call-ID and tags named a live call of the UAS
      (``SipUAS.get_call`` + ``aiosipua.dialog.dialog_matches``), which is
      what roomkit itself checks before accepting it.
  {"event": "bye", "call_id": ..., "r_uri": ..., "source": "IP:PORT", "matched": bool}
      a BYE reached the SIP socket (same observer as the ACK; roomkit then
      answers it 200 itself).
  {"event": "ended", "call_id": ..., "room_id": ...}
      roomkit's ``on_call_disconnected`` callback: roomkit tore the session
      down (after a BYE, which it answered 200; or on ACK/RTP timeout).
  {"event": "closed"}
      after SIGTERM/SIGINT, once ``backend.close()`` returned; exit status 0.

Usage: backend.py SIP_PORT [RTP_PORT_START RTP_PORT_END]
roomkit's own log (INFO) goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from importlib.metadata import version
from typing import Any

from aiosipua.dialog import dialog_matches
from roomkit.voice.backends.sip import SIPVoiceBackend

HOST = "127.0.0.1"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def observe_requests(backend: SIPVoiceBackend) -> None:
    """Report every INVITE, ACK and BYE that reaches the backend's SIP socket."""
    uas = backend._uas  # the SipUAS roomkit built in start(); no public getter
    transport = uas.transport
    inner = transport.on_message

    def on_message(msg: Any, addr: tuple[str, int]) -> None:
        method = getattr(msg, "method", None)
        method = method.upper() if isinstance(method, str) else None
        if method == "INVITE":
            emit(
                "invite",
                call_id=msg.call_id or "",
                r_uri=str(msg.uri),
                source=f"{addr[0]}:{addr[1]}",
                x_room_ids=list(msg.headers.get("x-room-id")),
            )
        elif method in ("ACK", "BYE"):
            call_id = msg.call_id or ""
            call = uas.get_call(call_id)
            emit(
                method.lower(),
                call_id=call_id,
                r_uri=str(msg.uri),
                source=f"{addr[0]}:{addr[1]}",
                matched=call is not None and dialog_matches(call.dialog, msg),
            )
        if inner is not None:
            inner(msg, addr)

    transport.on_message = on_message


async def main() -> int:
    args = sys.argv[1:]
    if len(args) not in (1, 3):
        print(__doc__, file=sys.stderr)
        return 2
    sip_port = int(args[0])
    rtp_start, rtp_end = (int(args[1]), int(args[2])) if len(args) == 3 else (24000, 24200)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    backend = SIPVoiceBackend(
        local_sip_addr=(HOST, sip_port),
        local_rtp_ip=HOST,
        rtp_port_start=rtp_start,
        rtp_port_end=rtp_end,
        user_agent="roomkit-e2e",
    )

    @backend.on_call
    def on_call(session: Any) -> None:
        md = session.metadata
        emit(
            "session",
            call_id=md.get("call_id"),
            room_id=md.get("room_id"),
            session_id=session.id,
            callee=md.get("callee"),
            x_headers=md.get("x_headers"),
        )

    @backend.on_call_disconnected
    def on_ended(session: Any) -> None:
        md = session.metadata
        emit("ended", call_id=md.get("call_id"), room_id=md.get("room_id"))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await backend.start()
    observe_requests(backend)
    emit(
        "ready",
        sip=f"{HOST}:{sip_port}",
        rtp=f"{HOST}:{rtp_start}-{rtp_end}",
        roomkit=version("roomkit"),
        aiosipua=version("aiosipua"),
        python=sys.version.split()[0],
    )
    await stop.wait()
    await backend.close()
    emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
