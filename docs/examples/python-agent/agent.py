#!/usr/bin/env python3
"""A minimal third-party AgentHub agent, written from docs/protocol.md alone.

It holds one WebSocket to the hub, claims every step pushed to it with `step.ready`,
reports progress, and submits a result that echoes the step's title and input.

    python3 agent.py --hub ws://127.0.0.1:7700 --token aha_... [--json] [--once] [--state FILE]

Section numbers (§) refer to docs/protocol.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from pathlib import Path

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

AGENT_VERSION = "agenthub-python-example/1.0"
MSGPACK, JSON = "agenthub.v1.msgpack", "agenthub.v1.json"
CONNECT_PATH = "/v1/agent/connect"
HANDSHAKE_TIMEOUT_S = 10
# Error codes a resend cannot change (§12.2); any other code is treated like `internal`.
FINAL_CODES = {"bad_frame", "invalid", "forbidden", "not_found", "conflict", "unsupported"}

log = logging.getLogger("agent")


class Fatal(Exception):
    """Stop without reconnecting."""


class Lost(Exception):
    """The session ended; reconnect per §12.4. `code` is the close code, if any."""

    def __init__(self, code: int | None, why: str) -> None:
        super().__init__(why)
        self.code = code


class Codec:
    """One frame per WebSocket message: binary MessagePack or text JSON (§5)."""

    def __init__(self, subprotocol: str) -> None:
        self.json = subprotocol == JSON

    def encode(self, frame: dict) -> bytes | str:
        return json.dumps(frame, separators=(",", ":")) if self.json else msgpack.packb(frame)

    def decode(self, message: bytes | str) -> dict:
        if isinstance(message, str) != self.json:
            raise ValueError("wrong message kind for the sub-protocol")
        frame = json.loads(message) if self.json else msgpack.unpackb(message)
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise ValueError("not a map with a string `type`")
        return frame


class Agent:
    """What outlives a session: the highest processed event seq (§7) and the options."""

    def __init__(self, args: argparse.Namespace) -> None:
        hub = args.hub.rstrip("/")
        if hub.startswith("http"):  # http:// -> ws://, https:// -> wss:// (§3)
            hub = "ws" + hub[len("http"):]
        self.url = hub if hub.endswith(CONNECT_PATH) else hub + CONNECT_PATH
        self.token = args.token
        self.subprotocol = JSON if args.json else MSGPACK
        self.once = args.once
        self.state = Path(args.state) if args.state else None
        self.last_seq = int(self.state.read_text()) if self.state and self.state.exists() else 0
        self.finished = False  # with --once: a step was submitted

    def processed(self, seq: int) -> None:
        """Records (and persists) `seq` as the highest processed event."""
        self.last_seq = seq
        if self.state:
            tmp = self.state.with_name(self.state.name + ".tmp")
            tmp.write_text(f"{seq}\n")
            tmp.replace(self.state)

    async def run(self) -> int:
        """Connects, and reconnects with backoff (§12.4); returns the exit code."""
        bound = 1.0
        while True:
            opened = None
            try:
                async with connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    subprotocols=[self.subprotocol],
                    compression=None,  # no extension in v1 (§3)
                    ping_interval=None,  # the protocol has its own heartbeat (§10)
                    max_size=None,  # `step.ready` is not bounded by max_frame_bytes (§13)
                ) as ws:
                    opened = time.monotonic()
                    await Session(self, ws).run()
                    return 0  # only --once gets here
            except InvalidStatus as err:
                status, body = err.response.status_code, err.response.body or b""
                if status != 429 and status < 500:  # 401: bad token; 400: a client bug (§4, §5.1)
                    log.error("hub refused the upgrade: HTTP %d %s",
                              status, body.decode(errors="replace"))
                    return 1
                code, why = None, f"HTTP {status}"
            except ConnectionClosed as err:
                code = err.rcvd.code if err.rcvd else None
                why = f"closed {code}" if err.rcvd else "connection lost"
            except Lost as err:
                code, why = err.code, str(err)
            except (OSError, TimeoutError, InvalidHandshake) as err:
                code, why = None, f"{type(err).__name__}: {err}"
            except Fatal as err:
                log.error("%s", err)
                return 1
            if code in (4001, 4005):  # token revoked, or superseded by another instance (§12.3)
                log.error("session ended (%s); not reconnecting", why)
                return 1
            if self.once:
                log.error("session ended before a step was completed (%s)", why)
                return 1
            if opened is not None and time.monotonic() - opened >= 60:
                bound = 1.0
            if code in (1001, 4002):  # hub restarting, or we read too slowly: come back soon
                delay = random.uniform(0, 5)
            else:
                delay, bound = random.uniform(0, bound), min(2 * bound, 60.0)
            log.warning("session ended (%s); reconnecting in %.1f s", why, delay)
            await asyncio.sleep(delay)


class Session:
    """One WebSocket session: handshake, then a reader, a worker and an acker."""

    def __init__(self, agent: Agent, ws: ClientConnection) -> None:
        self.agent, self.ws = agent, ws
        self.codec = Codec(ws.subprotocol or "")
        self.next_id = 1
        self.pending: dict[int, asyncio.Future] = {}  # request id -> reply
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.received = self.acked = 0  # highest event seq received / acknowledged
        self.heartbeat_timeout_s = 45.0  # until `welcome` says otherwise (§10)

    async def send(self, frame: dict) -> None:
        await self.ws.send(self.codec.encode(frame))

    async def recv(self, timeout_s: float) -> dict:
        try:
            async with asyncio.timeout(timeout_s):
                message = await self.ws.recv()
        except TimeoutError:
            raise Lost(None, f"nothing from the hub for {timeout_s:g} s") from None
        return self.codec.decode(message)

    async def run(self) -> None:
        if self.ws.subprotocol != self.agent.subprotocol:  # §5.1
            raise Fatal(f"hub selected sub-protocol {self.ws.subprotocol!r}, "
                        f"not {self.agent.subprotocol!r}")
        await self.send({
            "type": "hello",
            "agent_version": AGENT_VERSION,
            "max_concurrency": 1,
            "last_seq": self.agent.last_seq,
        })
        welcome = await self.recv(HANDSHAKE_TIMEOUT_S)
        if welcome["type"] != "welcome":
            raise Fatal(f"handshake refused: {welcome}")
        if self.agent.last_seq > welcome["last_seq"]:  # a different event history (§6.4)
            self.agent.processed(welcome["last_seq"])
        self.received = self.acked = self.agent.last_seq
        self.heartbeat_timeout_s = welcome["heartbeat_timeout_ms"] / 1000
        log.info("connected as %s (%s), resuming after seq %d",
                 welcome["agent_name"], self.ws.subprotocol, self.agent.last_seq)

        jobs = (self.read(), self.work(), self.ack_every(0.5))
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # re-raises what ended the session

    async def read(self) -> None:
        """Routes frames: events to the worker (deduplicated, gap-checked), replies to
        their requests; answers pings at once."""
        while True:
            try:
                frame = await self.recv(self.heartbeat_timeout_s)
            except (ValueError, TypeError) as err:
                log.warning("unreadable frame ignored: %s", err)
                continue
            if "seq" in frame:  # an event, of a known type or not (§7)
                seq = frame["seq"]
                if seq <= self.received:
                    continue  # duplicate
                if seq != self.received + 1:
                    await self.ws.close(1000)
                    raise Lost(1000, f"gap: seq {seq} after {self.received}")
                self.received = seq
                self.events.put_nowait(frame)
            elif frame["type"] == "ping":
                await self.send({"type": "pong", "nonce": frame["nonce"]})
            elif frame["type"] in ("ok", "error"):
                reply = self.pending.pop(frame.get("id"), None)
                if reply is not None and not reply.done():
                    reply.set_result(frame)
                elif frame["type"] == "error":
                    log.warning("hub error: %s %s", frame.get("code"), frame.get("message"))
            # any other frame type is new to us and ignored (§14)

    async def work(self) -> None:
        """Processes events in seq order; returns after a submitted step with --once."""
        while True:
            event = await self.events.get()
            if event["type"] == "step.ready":
                await self.on_step_ready(event["step"])
            elif event["type"] == "step.revoked":
                log.info("step %s attempt %s revoked: %s",
                         event["step_id"], event["attempt"], event["reason"])
            # every other event is counted as processed: this agent has no human to ask
            self.agent.processed(event["seq"])
            if self.agent.once and self.agent.finished:
                await self.ack()
                return
            if self.agent.last_seq - self.acked >= 100:
                await self.ack()

    async def on_step_ready(self, step: dict) -> None:
        step_id = step["step_id"]
        claim = await self.request(
            {"type": "step.claim", "step_id": step_id, "attempt": step["attempt"]})
        if claim["type"] == "error":
            # conflict: another assignee won, or this step.ready is old news (the step is
            # at another attempt). Not ours.
            log.info("step %s not claimed: %s %s", step_id, claim["code"], claim["message"])
            return
        attempt = claim["attempt"]  # authoritative (§9)
        log.info("claimed step %s %r, attempt %d", step_id, step["title"], attempt)
        held = {"step_id": step_id, "attempt": attempt}
        progress = await self.request(
            {"type": "step.progress", **held, "message": "echoing", "percent": 50})
        if progress["type"] == "error":
            log.info("step %s lost: %s %s", step_id, progress["code"], progress["message"])
            return
        submit = await self.request({
            "type": "step.submit",
            **held,
            "result": {"echo": step["title"], "input": step.get("input")},
            "summary": f"Echoed {step['title']!r}",
        })
        if submit["type"] == "error":
            log.info("submit of step %s refused: %s %s", step_id, submit["code"], submit["message"])
            return
        log.info("submitted step %s: %s", step_id, submit["status"])
        self.agent.finished = True

    async def request(self, frame: dict) -> dict:
        """Sends a request and returns its `ok` or `error` reply (§8). Resends (with a new
        id) after `rate_limited`, `internal` or an unknown code: safe for the requests
        used here (a claim by the holder and a submit are idempotent)."""
        delay = 1
        while True:
            frame["id"], self.next_id = self.next_id, self.next_id + 1
            reply = asyncio.get_running_loop().create_future()
            self.pending[frame["id"]] = reply
            await self.send(frame)
            try:
                async with asyncio.timeout(self.heartbeat_timeout_s):
                    answer = await reply
            except TimeoutError:
                raise Lost(None, f"no reply to {frame['type']}") from None
            if answer["type"] == "ok" or answer["code"] in FINAL_CODES or delay > 4:
                return answer
            await asyncio.sleep(delay)
            delay *= 2

    async def ack(self) -> None:
        if self.agent.last_seq > self.acked:
            self.acked = self.agent.last_seq
            await self.send({"type": "ack", "seq": self.acked})

    async def ack_every(self, period_s: float) -> None:
        """Acknowledges processed events within 1 s (§7)."""
        while True:
            await asyncio.sleep(period_s)
            await self.ack()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", required=True, help="hub URL, e.g. ws://127.0.0.1:7700")
    parser.add_argument("--token", required=True, help="agent token (aha_...)")
    parser.add_argument("--json", action="store_true",
                        help="use agenthub.v1.json instead of agenthub.v1.msgpack")
    parser.add_argument("--once", action="store_true", help="exit 0 after submitting one step")
    parser.add_argument("--state", help="file keeping the highest processed event seq")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return asyncio.run(Agent(args).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
