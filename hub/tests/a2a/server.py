"""An outside A2A agent built with the official Python SDK (a2a-sdk 1.x), for the hub's
steps delegated with "executor": "a2a".

Run by hub/tests/it/a2a.rs:

    python server.py

It listens on a free port of 127.0.0.1 and prints {"port": N} on its first line. The
Agent Card is at /.well-known/agent-card.json, the JSON-RPC endpoint at /rpc, and
GET /log answers what the agent saw: every message (its task, text and data) and every
CancelTask; GET /go lets an "impatient" task go on. What the agent does is chosen by the first message's text:

- "question": asks "Which format, markdown or html?" (input-required), then completes
  with an artifact that uses the answer;
- "fail": fails with "the printer is on fire";
- "slow": works until it is cancelled;
- "impatient": asks "Which format, markdown or html?" (input-required), then, without
  an answer, completes with "Formatted as markdown." once GET /go is called;
- anything else: completes with the artifact "Release notes for: <text>".

The SDK serves the card and JSON-RPC as Starlette routes; the few lines of HTTP/1.1
below run them (the SDK names no server, and none is installed with it).
"""

import asyncio
import json

import h11
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from a2a.helpers.proto_helpers import (
    get_message_text,
    new_task_from_user_message,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
    TaskState,
)

LOG = []
GO = asyncio.Event()


def agent_message(text, task_id, context_id):
    message = new_text_message(text, context_id=context_id, task_id=task_id)
    message.role = Role.ROLE_AGENT
    return message


class Executor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue):
        task = context.current_task
        message = context.message
        LOG.append(
            {
                "kind": "message",
                "taskId": context.task_id,
                "text": get_message_text(message),
                "message": MessageToDict(message),
            }
        )
        if task is None:
            task = new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        first = get_message_text(task.history[0]) if task.history else get_message_text(message)
        answering = task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        if "question" in first:
            if not answering:
                await updater.requires_input(
                    agent_message("Which format, markdown or html?", task.id, task.context_id)
                )
                return
            answer = get_message_text(message)
            await updater.start_work()
            await updater.add_artifact([new_text_part(f"Formatted as {answer}.")], name="notes")
            await updater.complete()
            return
        if "impatient" in first:
            await updater.requires_input(
                agent_message("Which format, markdown or html?", task.id, task.context_id)
            )
            await GO.wait()
            await updater.add_artifact([new_text_part("Formatted as markdown.")], name="notes")
            await updater.complete()
            return
        await updater.start_work()
        if "fail" in first:
            await updater.failed(agent_message("the printer is on fire", task.id, task.context_id))
            return
        if "slow" in first:
            await asyncio.sleep(600)
            return
        await updater.add_artifact(
            [new_text_part(f"Release notes for: {first}")], name="release-notes"
        )
        await updater.complete(agent_message("Written.", task.id, task.context_id))

    async def cancel(self, context: RequestContext, event_queue):
        task = context.current_task
        LOG.append({"kind": "cancel", "taskId": task.id if task else context.task_id})
        updater = TaskUpdater(event_queue, context.task_id, task.context_id if task else context.context_id)
        await updater.cancel()


def card(port):
    return AgentCard(
        name="release-writer",
        description="Writes release notes (an A2A agent outside the team).",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url=f"http://127.0.0.1:{port}/rpc",
                protocol_binding="JSONRPC",
                protocol_version="1.0",
            )
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="notes",
                name="Release notes",
                description="Writes release notes",
                tags=["writing"],
            )
        ],
    )


async def log(_request):
    return JSONResponse(LOG)


async def go(_request):
    GO.set()
    return JSONResponse({"go": True})


async def next_event(conn, reader):
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        return event


async def handle(app, port, reader, writer):
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await next_event(conn, reader)
            if not isinstance(request, h11.Request):
                break
            body = b""
            while True:
                event = await next_event(conn, reader)
                if isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            path, _, query = request.target.decode().partition("?")
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": request.method.decode(),
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": query.encode(),
                "root_path": "",
                "headers": [(name.lower(), value) for name, value in request.headers],
                "server": ("127.0.0.1", port),
                "client": ("127.0.0.1", 0),
            }
            delivered = False

            async def receive():
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await asyncio.Event().wait()

            start = {}
            chunks = []

            async def send(message):
                if message["type"] == "http.response.start":
                    start.update(message)
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            await app(scope, receive, send)
            data = b"".join(chunks)
            headers = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in (b"content-length", b"transfer-encoding")
            ]
            headers.append((b"content-length", str(len(data)).encode()))
            writer.write(conn.send(h11.Response(status_code=start["status"], headers=headers)))
            writer.write(conn.send(h11.Data(data=data)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    except (ConnectionError, h11.RemoteProtocolError):
        pass
    finally:
        writer.close()


async def main():
    port_box = {}
    server = await asyncio.start_server(
        lambda reader, writer: handle(app_box["app"], port_box["port"], reader, writer),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    port_box["port"] = port
    agent_card = card(port)
    handler = DefaultRequestHandlerV2(
        agent_executor=Executor(),
        task_store=InMemoryTaskStore(),
        agent_card=agent_card,
    )
    routes = create_agent_card_routes(agent_card) + create_jsonrpc_routes(handler, "/rpc")
    routes.append(Route("/log", log, methods=["GET"]))
    routes.append(Route("/go", go, methods=["GET"]))
    app_box["app"] = Starlette(routes=routes)
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await server.serve_forever()


app_box = {}

if __name__ == "__main__":
    asyncio.run(main())
