"""Drives `llmhost serve` with the vendors' official Python SDKs and prints
what the SDKs made of each answer, for the Rust tests to check.

    python gateway.py GATEWAY_URL < calls.json

GATEWAY_URL is the gateway's root (`http://127.0.0.1:PORT`): the OpenAI
client gets it with `/v1`, as users set OPENAI_BASE_URL, the Anthropic
client without, as users set ANTHROPIC_BASE_URL. stdin holds a JSON list
of calls, each `{"sdk": "openai"|"anthropic", "op": OP, "model": ROUTE,
"key": KEY}`, run one after the other; stdout gets one JSON list with a
result per call, in order. OP is one of chat, stream, tools, tools-stream,
bad-request. Retries are off, so a failure reaches the caller as the SDK's
exception class, exactly as the gateway answered.
"""

import json
import sys
import time

import anthropic
import openai

USER_TEXT = "Hello gateway"
TOOL_TEXT = "What is the weather in Paris?"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def openai_client(url, key):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def anthropic_client(url, key):
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=60)


OPENAI_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": WEATHER_SCHEMA,
    },
}]

ANTHROPIC_TOOLS = [{
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": WEATHER_SCHEMA,
}]


def usage_of(usage, prompt, completion):
    if usage is None:
        return {"prompt_tokens": None, "completion_tokens": None}
    return {"prompt_tokens": getattr(usage, prompt), "completion_tokens": getattr(usage, completion)}


# ----- OpenAI -----

def openai_chat(client, model):
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": USER_TEXT}],
    )
    return {
        "model": answer.model,
        "content": answer.choices[0].message.content,
        "finish_reason": answer.choices[0].finish_reason,
        "request_id": answer._request_id,
        **usage_of(answer.usage, "prompt_tokens", "completion_tokens"),
    }


def openai_stream(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": USER_TEXT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, chunks = [], None, []
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    last = chunks[-1] if chunks else None
    return {
        "model": last.model if last else None,
        "content": "".join(text),
        "finish_reason": finish,
        "request_id": stream.response.headers.get("x-request-id"),
        "chunks": len(chunks),
        # Only the last chunk carries usage, and it has no choices.
        "usage_chunks": sum(1 for chunk in chunks if chunk.usage is not None),
        "last_chunk_choices": len(last.choices) if last else None,
        **usage_of(last.usage if last else None, "prompt_tokens", "completion_tokens"),
    }


def openai_tools(client, model):
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": TOOL_TEXT}],
        tools=OPENAI_TOOLS,
        tool_choice="required",
    )
    calls = answer.choices[0].message.tool_calls or []
    return {
        "model": answer.model,
        "finish_reason": answer.choices[0].finish_reason,
        "request_id": answer._request_id,
        "tools": [
            {"id": call.id, "name": call.function.name, "arguments": json.loads(call.function.arguments)}
            for call in calls
        ],
        **usage_of(answer.usage, "prompt_tokens", "completion_tokens"),
    }


def openai_tools_stream(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": TOOL_TEXT}],
        tools=OPENAI_TOOLS,
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
    )
    calls, finish, usage = {}, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "finish_reason": finish,
        "request_id": stream.response.headers.get("x-request-id"),
        "tools": [
            {**call, "arguments": json.loads(call["arguments"])}
            for _, call in sorted(calls.items())
        ],
        **usage_of(usage, "prompt_tokens", "completion_tokens"),
    }


def openai_bad_request(client, model):
    client.chat.completions.create(model=model, messages=[])
    return {}


# ----- Anthropic -----

def anthropic_message(answer):
    return {
        "model": answer.model,
        "content": "".join(block.text for block in answer.content if block.type == "text"),
        "finish_reason": answer.stop_reason,
        "tools": [
            {"id": block.id, "name": block.name, "arguments": block.input}
            for block in answer.content
            if block.type == "tool_use"
        ],
        **usage_of(answer.usage, "input_tokens", "output_tokens"),
    }


def anthropic_chat(client, model):
    answer = client.messages.create(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": USER_TEXT}],
    )
    return {**anthropic_message(answer), "request_id": answer._request_id}


def anthropic_stream(client, model, tools=False):
    extra = {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "any"}} if tools else {}
    with client.messages.stream(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": TOOL_TEXT if tools else USER_TEXT}],
        **extra,
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
        request_id = stream.request_id
    return {
        **anthropic_message(final),
        "request_id": request_id,
        "events": events,
    }


def anthropic_tools(client, model):
    answer = client.messages.create(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": TOOL_TEXT}],
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any"},
    )
    return {**anthropic_message(answer), "request_id": answer._request_id}


def anthropic_bad_request(client, model):
    client.messages.create(model=model, max_tokens=200, messages=[])
    return {}


OPS = {
    ("openai", "chat"): openai_chat,
    ("openai", "stream"): openai_stream,
    ("openai", "tools"): openai_tools,
    ("openai", "tools-stream"): openai_tools_stream,
    ("openai", "bad-request"): openai_bad_request,
    ("anthropic", "chat"): anthropic_chat,
    ("anthropic", "stream"): anthropic_stream,
    ("anthropic", "tools"): anthropic_tools,
    ("anthropic", "tools-stream"): lambda client, model: anthropic_stream(client, model, tools=True),
    ("anthropic", "bad-request"): anthropic_bad_request,
}


def run(url, call):
    sdk, op, model, key = call["sdk"], call["op"], call["model"], call["key"]
    client = openai_client(url, key) if sdk == "openai" else anthropic_client(url, key)
    started = time.monotonic()
    try:
        result = {"ok": True, **OPS[(sdk, op)](client, model)}
    except (openai.APIStatusError, anthropic.APIStatusError) as err:
        result = {
            "ok": False,
            # The class a user's `except` clause would name.
            "error": type(err).__name__,
            "module": type(err).__module__.split(".")[0],
            "status": err.status_code,
            "request_id": err.request_id,
            "message": err.message,
            "body": err.body,
            "retry_after": err.response.headers.get("retry-after"),
            "should_retry": err.response.headers.get("x-should-retry"),
        }
    result["seconds"] = time.monotonic() - started
    return {"call": call, **result}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gateway.py GATEWAY_URL < calls.json")
    calls = json.load(sys.stdin)
    print(json.dumps([run(sys.argv[1], call) for call in calls]))


if __name__ == "__main__":
    main()
