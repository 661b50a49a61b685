"""An off-the-shelf A2A client (the official Python SDK, a2a-sdk 1.x) against a hub.

Run by hub/tests/it/a2a.rs, one scenario per process:

    python client.py SCENARIO BASE_URL TOKEN [ARGS...]

BASE_URL is the agent's base (http://host/a2a/<workspace>): the card is resolved from
BASE_URL/.well-known/agent-card.json and the JSON-RPC URL taken from it. The scenario
prints one JSON object on stdout: what the client saw, as the SDK parsed it
(protobuf messages rendered with MessageToDict, so in A2A's JSON names).
"""

import asyncio
import json
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskPushNotificationConfig,
)


def message(text, task_id=None, metadata=None):
    msg = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    if task_id:
        msg.task_id = task_id
    if metadata:
        msg.metadata.update(metadata)
    return msg


def as_dict(proto):
    return MessageToDict(proto)


async def client_for(base, token, streaming=True, polling=False):
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    card = await A2ACardResolver(http, base).get_agent_card()
    config = ClientConfig(streaming=streaming, polling=polling, httpx_client=http)
    return ClientFactory(config).create(card), card, http


async def send(client, msg):
    """Sends a message; the events until the stream ends (input-required or terminal)."""
    events = []
    async for event in client.send_message(SendMessageRequest(message=msg)):
        events.append(as_dict(event))
    return events


def error_of(err):
    return {"type": type(err).__name__, "message": str(err)}


async def main():
    scenario, base, token, *args = sys.argv[1:]
    out = {}
    if scenario == "discover":
        http = httpx.AsyncClient(timeout=30)
        card = await A2ACardResolver(http, base).get_agent_card()
        out["card"] = as_dict(card)
        client, _, _ = await client_for(base, token)
        extended = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
        out["extended"] = as_dict(extended)
    elif scenario == "stream":
        agent, text = args
        client, _, _ = await client_for(base, token)
        out["events"] = await send(client, message(text, metadata={"agent": agent}))
        task_id = out["events"][0]["task"]["id"]
        out["task"] = as_dict(await client.get_task(GetTaskRequest(id=task_id)))
        listed = await client.list_tasks(ListTasksRequest(page_size=10))
        out["listed"] = [task.id for task in listed.tasks]
    elif scenario == "approve":
        agent, approver, text = args
        client, _, _ = await client_for(base, token)
        first = await send(client, message(text, metadata={"agent": agent, "approvers": [approver]}))
        task_id = first[0]["task"]["id"]
        rejected = await send(client, message("Add the date to the title", task_id=task_id))
        approved = await send(client, message("approve", task_id=task_id))
        out = {
            "first": first,
            "rejected": rejected,
            "approved": approved,
            "task": as_dict(await client.get_task(GetTaskRequest(id=task_id))),
        }
    elif scenario == "question":
        agent, text, answer = args
        client, _, _ = await client_for(base, token)
        first = await send(client, message(text, metadata={"agent": agent}))
        task_id = first[0]["task"]["id"]
        answered = await send(client, message(answer, task_id=task_id))
        out = {
            "first": first,
            "answered": answered,
            "task": as_dict(await client.get_task(GetTaskRequest(id=task_id))),
        }
    elif scenario == "cancel":
        agent, text = args
        client, _, _ = await client_for(base, token, streaming=False, polling=True)
        sent = await send(client, message(text, metadata={"agent": agent}))
        task_id = sent[0]["task"]["id"]
        out["sent"] = sent
        out["canceled"] = as_dict(await client.cancel_task(CancelTaskRequest(id=task_id)))
        try:
            await client.cancel_task(CancelTaskRequest(id=task_id))
            out["again"] = None
        except Exception as err:  # the SDK's TaskNotCancelableError
            out["again"] = error_of(err)
    elif scenario == "push":
        agent, text, url, notification_token = args
        client, _, _ = await client_for(base, token, streaming=False, polling=True)
        sent = await send(client, message(text, metadata={"agent": agent}))
        task_id = sent[0]["task"]["id"]
        config = await client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task_id, url=url, token=notification_token)
        )
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task_id)
        )
        out = {"task_id": task_id, "config": as_dict(config), "listed": as_dict(listed)}
    elif scenario == "errors":
        client, _, _ = await client_for(base, token)
        try:
            await send(client, message("Do it", metadata={"agent": "nobody"}))
        except Exception as err:
            out["unknown_agent"] = error_of(err)
        try:
            await client.get_task(GetTaskRequest(id=args[0]))
        except Exception as err:
            out["unknown_task"] = error_of(err)
        bad, _, _ = await client_for(base, "ahk_not_a_key")
        try:
            await bad.get_task(GetTaskRequest(id=args[0]))
        except Exception as err:
            out["bad_token"] = error_of(err)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out))


asyncio.run(main())
