"""An llmhost provider written in Python: any self-hosted server that speaks
the OpenAI chat-completions protocol (Ollama, vLLM, llama.cpp's server,
LM Studio, ...).

Built into a WebAssembly component by ``build.sh`` with componentize-py
against the project's ``wit/`` (contract ``llmhost:provider@0.2.0``). Like
every 0.2 plugin it only translates the protocol and does no I/O: it
prepares each HTTP request (a path below the base URL, headers, a JSON
body) and parses the answer; the host sends the request, adding
``content-length``, ``user-agent``, the request id and the key, and for a
stream frames the server-sent events and feeds them to ``StreamDecoder``.

The key never enters the plugin. With ``LLMHOST_SELFHOSTED_API_KEY`` set the
host sends it as a bearer token; without it (the manifest's
``key-optional``) requests go out with no key, as most local servers want.
Set the server with ``LLMHOST_SELFHOSTED_BASE_URL`` (for example
``http://localhost:11434/v1`` for Ollama): a variable of llmhost's naming,
granted to every installed plugin for its own id, so the host then allows
exactly that address.

One fresh instance serves each call (a chat, a stream, a count, a health
check), so what a ``prepare_*`` export remembers for its ``parse_*`` lives
in module globals: nothing outlives the call, nothing leaks into the next.
"""

import json
from typing import Dict, List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import tokenizer
from wit_world.imports import types as t

VERSION = "0.2.0"
ENCODING = "cl100k_base"
# Self-hosted models cost nothing per token; the operator may price them in
# the model overrides file.
FREE = t.Pricing(
    base=t.Prices(input=0, output=0, cache_read=None, cache_write=None, cache_write_hour=None),
    tiers=[],
    off_peak=[],
)
CAPS = t.Capabilities.STREAMING | t.Capabilities.TEMPERATURE | t.Capabilities.JSON_MODE


def model(model_id: str, name: str, context: int, max_out: int) -> t.ModelInfo:
    return t.ModelInfo(
        id=model_id,
        display_name=name,
        context_window=context,
        max_output_tokens=max_out,
        pricing=FREE,
        capabilities=CAPS,
        tokenizer=ENCODING,
        tokenizer_exact=False,
    )


MODELS = [
    model("llama3.1:8b", "Llama 3.1 8B", 131072, 8192),
    model("llama3.2:3b", "Llama 3.2 3B", 131072, 8192),
    model("qwen2.5:7b", "Qwen 2.5 7B", 32768, 8192),
    model("mistral:7b", "Mistral 7B", 32768, 8192),
]

# What this call's prepare export was given, for its parse export.
prepared_request: Optional[t.ChatRequest] = None
prepared_base_url: Optional[str] = None


# ---- errors ----------------------------------------------------------------


def detail(message: str, status: Optional[int] = None, code: Optional[str] = None,
           request_id: Optional[str] = None, retry_after_ms: Optional[int] = None) -> t.ErrorDetail:
    return t.ErrorDetail(message=message, status=status, vendor_code=code,
                         request_id=request_id, retry_after_ms=retry_after_ms)


def protocol(message: str) -> Err:
    return Err(t.ProviderError_Protocol(message))


def retry_after_ms(headers: Dict[str, str]) -> Optional[int]:
    for name, scale in (("retry-after-ms", 1.0), ("retry-after", 1000.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if number >= 0:
            return int(number * scale + 0.999)
    return None


def error_fields(error) -> Tuple[str, Optional[str]]:
    """Message and code of an OpenAI-style error object (or string)."""
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return "", None
    code = error.get("code") or error.get("type")
    return str(error.get("message") or ""), (str(code) if code is not None else None)


def vendor_error(status: int, headers: Dict[str, str], body: bytes) -> Err:
    """Maps an error status and the OpenAI-style error body onto the
    contract's error hierarchy."""
    message, code = f"HTTP {status}", None
    try:
        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        text, code = error_fields(error)
        message = text or message
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        if text:
            message = f"HTTP {status}: {text[:300]}"
    d = detail(message, status, code, headers.get("x-request-id"), retry_after_ms(headers))
    lowered = message.lower()
    if code == "insufficient_quota" or status == 402:
        return Err(t.ProviderError_QuotaExhausted(d))
    if code == "context_length_exceeded" or "context length" in lowered or status == 413:
        return Err(t.ProviderError_TokenLimitExceeded(d))
    if status in (401, 403):
        return Err(t.ProviderError_Authentication(d))
    if status == 404:
        return Err(t.ProviderError_ModelNotSupported(d))
    if status == 429:
        return Err(t.ProviderError_RateLimited(d))
    if status in (503, 529):
        return Err(t.ProviderError_Overloaded(d))
    if status >= 500 or status in (408, 409):
        return Err(t.ProviderError_ServerError(d))
    return Err(t.ProviderError_InvalidRequest(d))


def stream_error(error) -> Err:
    """Maps an error object that arrived inside a stream, where no status
    tells what it was."""
    message, code = error_fields(error)
    d = detail(message or "error event in the stream", code=code)
    if code == "insufficient_quota":
        return Err(t.ProviderError_QuotaExhausted(d))
    if code == "context_length_exceeded":
        return Err(t.ProviderError_TokenLimitExceeded(d))
    return Err(t.ProviderError_ServerError(d))


PROVIDER_ERRORS = (
    t.ProviderError_ApiKeyMissing, t.ProviderError_Authentication, t.ProviderError_RateLimited,
    t.ProviderError_QuotaExhausted, t.ProviderError_TokenLimitExceeded,
    t.ProviderError_ModelNotSupported, t.ProviderError_InvalidRequest, t.ProviderError_Overloaded,
    t.ProviderError_ServerError, t.ProviderError_Timeout, t.ProviderError_Network,
    t.ProviderError_Protocol,
)


def guarded(function):
    """Whatever goes wrong inside an export leaves it as a typed provider
    error: an exception escaping an export would crash the component."""

    def wrapper(*args):
        try:
            return function(*args)
        except Err as err:
            if isinstance(err.value, PROVIDER_ERRORS):
                raise
            raise protocol(f"plugin error: {type(err.value).__name__}: {err.value}")
        except Exception as exc:  # noqa: BLE001 - the boundary must not crash
            raise protocol(f"plugin error: {type(exc).__name__}: {exc}")

    return wrapper


# ---- requests ---------------------------------------------------------------


ROLES = {t.Role.SYSTEM: "system", t.Role.USER: "user", t.Role.ASSISTANT: "assistant", t.Role.TOOL: "tool"}


def text_of(message: t.Message) -> str:
    return "".join(part.value for part in message.content if isinstance(part, t.ContentPart_Text))


JSON_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}


def merge_vendor_params(body: dict, request: t.ChatRequest) -> None:
    """Merges the request's `vendor-params` object into the body; its
    members replace those of the same name."""
    if request.vendor_params is None:
        return
    try:
        params = json.loads(request.vendor_params)
    except ValueError as err:
        raise Err(t.ProviderError_InvalidRequest(detail(
            f"vendor-params is not valid JSON ({err}); it must be a JSON object")))
    if not isinstance(params, dict):
        raise Err(t.ProviderError_InvalidRequest(detail(
            f"vendor-params must be a JSON object, not {JSON_KINDS.get(type(params), 'null')}")))
    body.update(params)


def chat_request(request: t.ChatRequest, stream: bool) -> t.HttpRequest:
    global prepared_request
    prepared_request = request
    body = {
        "model": request.model,
        "messages": [{"role": ROLES.get(m.role, "user"), "content": text_of(m)} for m in request.messages],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if isinstance(request.response_format, t.ResponseFormat_JsonObject):
        body["response_format"] = {"type": "json_object"}
    if request.user:
        body["user"] = request.user
    merge_vendor_params(body, request)
    accept = "text/event-stream" if stream else "application/json"
    return t.HttpRequest(
        method=t.Method.POST,
        path="/chat/completions",
        headers=[("content-type", "application/json"), ("accept", accept)],
        body=json.dumps(body).encode(),
    )


def the_prepared_request() -> t.ChatRequest:
    if prepared_request is None:
        raise protocol("an answer arrived for a chat this plugin did not prepare")
    return prepared_request


# ---- answers ----------------------------------------------------------------


def header_map(response: t.HttpResponse) -> Dict[str, str]:
    """The response's headers by lowercase name; the first value wins."""
    headers: Dict[str, str] = {}
    for name, value in response.headers:
        headers.setdefault(name.lower(), value)
    return headers


def checked(response: t.HttpResponse) -> Dict[str, str]:
    """The response's headers, or its mapped error when it failed."""
    headers = header_map(response)
    if not 200 <= response.status < 300:
        raise vendor_error(response.status, headers, response.body)
    return headers


def finish_reason(value: Optional[str]) -> t.FinishReason:
    return {
        "stop": t.FinishReason_Stop(),
        "length": t.FinishReason_Length(),
        "tool_calls": t.FinishReason_ToolCalls(),
        "content_filter": t.FinishReason_ContentFilter(),
    }.get(value or "stop", t.FinishReason_Other(str(value)))


def usage_of(value) -> Optional[t.Usage]:
    """The server's usage, or None when it reported none (or only zeros,
    as some servers do before the end of a stream)."""
    if not isinstance(value, dict):
        return None
    try:
        usage = t.Usage(
            input_tokens=int(value.get("prompt_tokens") or 0),
            output_tokens=int(value.get("completion_tokens") or 0),
            cache_read_tokens=0,
            cache_write_tokens=0,
            cache_write_hour_tokens=0,
            reasoning_tokens=0,
            estimated=False,
        )
    except (TypeError, ValueError):
        return None
    return usage if usage.input_tokens or usage.output_tokens else None


def count(text: str) -> int:
    try:
        return tokenizer.count(ENCODING, text)
    except Err:
        raise protocol(f"the host has no tokenizer named {ENCODING}")


def count_messages(messages: List[t.Message]) -> int:
    # About four tokens of framing per message, as chat templates add.
    return sum(count(text_of(m)) + 4 for m in messages) + 2


def estimated_usage(request: t.ChatRequest, output: str) -> t.Usage:
    return t.Usage(input_tokens=count_messages(request.messages), output_tokens=count(output),
                   cache_read_tokens=0, cache_write_tokens=0, cache_write_hour_tokens=0,
                   reasoning_tokens=0, estimated=True)


def answer_parts(reasoning: Optional[str], content: str) -> List[t.ContentPart]:
    parts: List[t.ContentPart] = []
    if reasoning:
        parts.append(t.ContentPart_Thinking(t.Thinking(text=reasoning, signature=None)))
    if content:
        parts.append(t.ContentPart_Text(content))
    return parts


class StreamDecoder(exports.provider.StreamDecoder):
    """Decodes the server's SSE answer from the events the host frames.

    Usage is held back until ``[DONE]`` and emitted once: the last figures
    the server sent, or an estimate when it sent none. Events after
    ``[DONE]`` are ignored."""

    def __init__(self, request: t.ChatRequest, request_id: Optional[str]):
        self.request = request
        self.request_id = request_id
        self.started = False
        self.finished = False
        self.done = False
        self.usage: Optional[t.Usage] = None
        self.text = ""

    @guarded
    def feed(self, input: t.StreamInput) -> List[t.Chunk]:
        if not isinstance(input, t.StreamInput_Events):
            raise protocol("this decoder reads server-sent events, and was fed raw bytes")
        out: List[t.Chunk] = []
        for event in input.value:
            self.decode(event.data.strip(), out)
        return out

    @guarded
    def finish(self) -> List[t.Chunk]:
        if not self.done:
            raise protocol("the stream ended before its [DONE] marker")
        return []

    def start(self, event: dict, out: List[t.Chunk]) -> None:
        if self.started:
            return
        self.started = True
        out.append(t.Chunk_Start(t.StreamStart(
            id=str(event.get("id") or ""), model=str(event.get("model") or self.request.model),
            rate_limits=None, request_id=self.request_id)))

    def decode(self, data: str, out: List[t.Chunk]) -> None:
        if self.done or not data:
            return
        if data == "[DONE]":
            self.start({}, out)
            out.append(t.Chunk_Usage(self.usage or estimated_usage(self.request, self.text)))
            self.done = True
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise protocol(f"a stream event is not JSON: {data[:200]}")
        if not isinstance(event, dict):
            raise protocol(f"a stream event is not a JSON object: {data[:200]}")
        if event.get("error") is not None:
            raise stream_error(event["error"])
        self.start(event, out)
        self.usage = usage_of(event.get("usage")) or self.usage
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or (choice.get("index") or 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.append(t.Chunk_Reasoning(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.text += content
                out.append(t.Chunk_Text(content))
            if choice.get("finish_reason") and not self.finished:
                self.finished = True
                out.append(t.Chunk_Finish(finish_reason(choice["finish_reason"])))


# ---- exports ----------------------------------------------------------------


class Provider(exports.Provider):
    def info(self) -> t.ProviderInfo:
        return t.ProviderInfo(
            id="selfhosted",
            name="Self-hosted OpenAI-compatible server (Python plugin)",
            version=VERSION,
            default_base_url="http://localhost:11434/v1",
            api_key_env=["LLMHOST_SELFHOSTED_API_KEY"],
            base_url_env=["LLMHOST_SELFHOSTED_BASE_URL"],
            hosts=[],
            auth=t.AuthScheme_Bearer(),
            key_optional=True,
            stream_format=t.StreamFormat.SSE,
            models=MODELS,
        )

    @guarded
    def prepare_chat(self, config: t.ProviderConfig, request: t.ChatRequest) -> t.HttpRequest:
        return chat_request(request, stream=False)

    @guarded
    def parse_chat(self, response: t.HttpResponse) -> t.ChatStep:
        request = the_prepared_request()
        headers = checked(response)
        try:
            answer = json.loads(response.body)
            choice = answer["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise protocol("the answer is not a chat completion")
        if not isinstance(message, dict):
            raise protocol("the answer's message is not a JSON object")
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if not isinstance(content, str) or not isinstance(reasoning, (str, type(None))):
            raise protocol("the answer's content is not text")
        usage = usage_of(answer.get("usage")) or estimated_usage(request, content)
        return t.ChatStep_Done(t.ChatResponse(
            id=str(answer.get("id") or ""),
            model=str(answer.get("model") or request.model),
            content=content,
            reasoning_content=reasoning or None,
            tool_calls=[],
            parts=answer_parts(reasoning, content),
            finish_reason=finish_reason(choice.get("finish_reason")),
            usage=usage,
            rate_limits=None,
            request_id=headers.get("x-request-id"),
        ))

    @guarded
    def prepare_stream(self, config: t.ProviderConfig, request: t.ChatRequest) -> t.HttpRequest:
        return chat_request(request, stream=True)

    @guarded
    def open_stream(self, response: t.HttpResponse) -> exports.provider.StreamDecoder:
        request = the_prepared_request()
        headers = checked(response)
        return StreamDecoder(request, headers.get("x-request-id"))

    @guarded
    def prepare_count_tokens(self, config: t.ProviderConfig, model_id: str,
                             input: t.TokenInput) -> t.CountStep:
        if isinstance(input, t.TokenInput_Text):
            tokens = count(input.value)
        else:
            tokens = count_messages(input.value)
        return t.CountStep_Done(t.TokenCount(tokens=tokens, estimated=True, encoding=ENCODING))

    @guarded
    def parse_count_tokens(self, response: t.HttpResponse) -> t.CountStep:
        raise protocol("this plugin counts tokens locally and sent no count request")

    @guarded
    def prepare_health_check(self, config: t.ProviderConfig) -> t.HttpRequest:
        global prepared_base_url
        prepared_base_url = config.base_url
        return t.HttpRequest(method=t.Method.GET, path="/models",
                             headers=[("accept", "application/json")], body=b"")

    @guarded
    def parse_health_check(self, response: t.HttpResponse) -> t.HealthStep:
        checked(response)
        try:
            listed = json.loads(response.body).get("data") or []
        except (ValueError, AttributeError):
            raise protocol("the model list is not JSON")
        if not isinstance(listed, list):
            raise protocol("the model list's data is not a list")
        server = prepared_base_url or "the server"
        return t.HealthStep_Done(t.HealthReport(
            models_available=len(listed), detail=f"{server} answered; {len(listed)} models listed"))
