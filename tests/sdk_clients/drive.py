"""Drives one call with a vendor's official Python SDK and prints what the
SDK made of the answer as one JSON object, for the Rust tests to check.

    python drive.py CASE BASE_URL

CASE is one of openai-chat, openai-stream, openai-tools, openai-error,
anthropic-chat, anthropic-stream, anthropic-error. BASE_URL is what a user
would set as OPENAI_BASE_URL or ANTHROPIC_BASE_URL. Retries are off, so an
error reaches the caller as the SDK's exception class.
"""

import json
import sys

import anthropic
import openai

KEY = "sk-official-sdk-test"


def openai_client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=20)


def anthropic_client(base_url):
    return anthropic.Anthropic(base_url=base_url, api_key=KEY, max_retries=0, timeout=20)


def openai_chat(base_url):
    answer = openai_client(base_url).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello SDK"}],
    )
    return {
        "content": answer.choices[0].message.content,
        "finish_reason": answer.choices[0].finish_reason,
        "prompt_tokens": answer.usage.prompt_tokens,
        "completion_tokens": answer.usage.completion_tokens,
    }


def openai_stream(base_url):
    stream = openai_client(base_url).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream SDK"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "content": "".join(text),
        "finish_reason": finish,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
    }


def openai_tools(base_url):
    answer = openai_client(base_url).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }],
        tool_choice="required",
    )
    call = answer.choices[0].message.tool_calls[0]
    return {
        "finish_reason": answer.choices[0].finish_reason,
        "tool": call.function.name,
        "arguments": json.loads(call.function.arguments),
    }


def anthropic_chat(base_url):
    answer = anthropic_client(base_url).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Hello SDK"}],
    )
    return {
        "content": "".join(block.text for block in answer.content if block.type == "text"),
        "finish_reason": answer.stop_reason,
        "prompt_tokens": answer.usage.input_tokens,
        "completion_tokens": answer.usage.output_tokens,
    }


def anthropic_stream(base_url):
    with anthropic_client(base_url).messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Stream SDK"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {
        "content": text,
        "finish_reason": final.stop_reason,
        "prompt_tokens": final.usage.input_tokens,
        "completion_tokens": final.usage.output_tokens,
    }


def error_of(call):
    try:
        call()
    except (openai.APIStatusError, anthropic.APIStatusError) as err:
        return {"error": type(err).__name__, "status": err.status_code}
    return {"error": None}


CASES = {
    "openai-chat": openai_chat,
    "openai-stream": openai_stream,
    "openai-tools": openai_tools,
    "openai-error": lambda url: error_of(lambda: openai_chat(url)),
    "anthropic-chat": anthropic_chat,
    "anthropic-stream": anthropic_stream,
    "anthropic-error": lambda url: error_of(lambda: anthropic_chat(url)),
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        sys.exit(f"usage: drive.py {{{'|'.join(CASES)}}} BASE_URL")
    print(json.dumps(CASES[sys.argv[1]](sys.argv[2])))


if __name__ == "__main__":
    main()
