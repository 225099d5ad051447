"""An llmhost provider written in Python: any self-hosted server that speaks
the OpenAI chat-completions protocol (Ollama, vLLM, llama.cpp's server,
LM Studio, ...).

Built into a WebAssembly component by ``build.sh`` with componentize-py
against the project's ``wit/``. Like every plugin it only speaks the
protocol: the host approves hosts, holds keys, applies limits and prices
the usage. Set the server with ``LLMHOST_SELFHOSTED_BASE_URL`` (for example
``http://localhost:11434/v1`` for Ollama): a variable of llmhost's naming,
granted to every installed plugin for its own id, so the host then allows
exactly that address.
"""

import json
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import llmhost_provider_types as t
from wit_world.imports import outgoing_handler, streams, tokenizer
from wit_world.imports import wasi_http_types as http

VERSION = "0.1.0"
# Self-hosted models cost nothing per token; the operator may price them in
# the model overrides file.
FREE = t.Pricing(input=0, output=0, cache_read=None, cache_write=None)
CAPS = t.Capabilities.STREAMING | t.Capabilities.TEMPERATURE | t.Capabilities.JSON_MODE


def model(model_id: str, name: str, context: int, max_out: int) -> t.ModelInfo:
    return t.ModelInfo(
        id=model_id,
        display_name=name,
        context_window=context,
        max_output_tokens=max_out,
        pricing=FREE,
        capabilities=CAPS,
        tokenizer="cl100k_base",
        tokenizer_exact=False,
    )


MODELS = [
    model("llama3.1:8b", "Llama 3.1 8B", 131072, 8192),
    model("llama3.2:3b", "Llama 3.2 3B", 131072, 8192),
    model("qwen2.5:7b", "Qwen 2.5 7B", 32768, 8192),
    model("mistral:7b", "Mistral 7B", 32768, 8192),
]


# ---- errors ----------------------------------------------------------------


def detail(message: str, status: Optional[int] = None, code: Optional[str] = None,
           request_id: Optional[str] = None, retry_after_ms: Optional[int] = None) -> t.ErrorDetail:
    return t.ErrorDetail(message=message, status=status, vendor_code=code,
                         request_id=request_id, retry_after_ms=retry_after_ms)


def protocol(message: str) -> Err:
    return Err(t.ProviderError_Protocol(message))


def network(message: str) -> Err:
    return Err(t.ProviderError_Network(message))


def retry_after_ms(headers: dict) -> Optional[int]:
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


def vendor_error(status: int, headers: dict, body: bytes) -> Err:
    """Maps an error status and the OpenAI-style error body onto the
    contract's error hierarchy."""
    message, code = f"HTTP {status}", None
    try:
        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = error.get("code") or error.get("type")
            code = str(code) if code is not None else None
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        if text:
            message = f"HTTP {status}: {text[:300]}"
    d = detail(message, status, code, headers.get("x-request-id"), retry_after_ms(headers))
    lowered = message.lower()
    if code in ("insufficient_quota",) or status == 402:
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
            raise network(f"HTTP failure: {type(err.value).__name__}")
        except Exception as exc:  # noqa: BLE001 - the boundary must not crash
            raise protocol(f"plugin error: {type(exc).__name__}: {exc}")

    return wrapper


# ---- HTTP over wasi:http, blocking ------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict, body: http.IncomingBody,
                 stream: streams.InputStream, response: http.IncomingResponse):
        self.status = status
        self.headers = headers
        # Resources are kept alive, children before parents.
        self._stream = stream
        self._body = body
        self._response = response
        self._done = False

    def read_some(self) -> Optional[bytes]:
        """The next bytes of the body; None at its end."""
        if self._done:
            return None
        try:
            return self._stream.blocking_read(65536)
        except Err as err:
            self._done = True
            if isinstance(err.value, streams.StreamError_Closed):
                return None
            raise network("the connection failed while reading the answer")

    def read_all(self, limit: int = 32 << 20) -> bytes:
        chunks: List[bytes] = []
        size = 0
        while True:
            data = self.read_some()
            if data is None:
                return b"".join(chunks)
            size += len(data)
            if size > limit:
                raise protocol("the answer is larger than the plugin accepts")
            chunks.append(data)


def split_url(url: str) -> Tuple[http.Scheme, str, str]:
    if url.startswith("https://"):
        scheme, rest = http.Scheme_Https(), url[len("https://"):]
    elif url.startswith("http://"):
        scheme, rest = http.Scheme_Http(), url[len("http://"):]
    else:
        raise Err(t.ProviderError_InvalidRequest(detail(f"unsupported base URL {url}")))
    slash = rest.find("/")
    if slash < 0:
        return scheme, rest, "/"
    return scheme, rest[:slash], rest[slash:]


def send(config: t.ProviderConfig, method: http.Method, path: str,
         body: Optional[bytes], accept: str = "application/json") -> Response:
    scheme, authority, base_path = split_url(config.base_url)
    pairs = [("accept", accept.encode()), ("user-agent", f"llmhost-selfhosted/{VERSION}".encode())]
    if body is not None:
        pairs.append(("content-type", b"application/json"))
    if config.api_key:
        pairs.append(("authorization", f"Bearer {config.api_key}".encode()))
    for name, value in config.extra_headers:
        pairs.append((name.lower(), value.encode()))
    request = http.OutgoingRequest(http.Fields.from_list(pairs))
    request.set_method(method)
    request.set_scheme(scheme)
    request.set_authority(authority)
    request.set_path_with_query(base_path.rstrip("/") + path)
    outgoing = request.body()
    options = http.RequestOptions()
    timeout_ns = max(config.timeout_ms, 1) * 1_000_000
    try:
        options.set_first_byte_timeout(timeout_ns)
        options.set_between_bytes_timeout(timeout_ns)
    except Err:
        pass
    try:
        future = outgoing_handler.handle(request, options)
    except Err as err:
        raise network(f"the request could not be sent: {err.value}")
    # If the host refused the request the body cannot be written; the
    # response future then says why.
    try:
        if body is not None:
            out = outgoing.write()
            for start in range(0, len(body), 4096):
                out.blocking_write_and_flush(body[start:start + 4096])
            out.__exit__(None, None, None)
        http.OutgoingBody.finish(outgoing, None)
    except Err:
        pass
    pollable = future.subscribe()
    pollable.block()
    pollable.__exit__(None, None, None)
    result = future.get()
    if result is None:
        raise network("no response")
    try:
        response = result.value.value
    except AttributeError:
        raise network("no response")
    if not isinstance(response, http.IncomingResponse):
        code = response
        if isinstance(code, (http.ErrorCode_ConnectionReadTimeout, http.ErrorCode_ConnectionTimeout)):
            raise Err(t.ProviderError_Timeout(f"no answer from {authority} in time"))
        if isinstance(code, http.ErrorCode_HttpRequestDenied):
            raise network(f"request to {authority} denied by the host")
        raise network(f"{authority}: {type(code).__name__}")
    headers = {}
    for name, value in response.headers().entries():
        headers[name.lower()] = value.decode("utf-8", "replace")
    incoming = response.consume()
    return Response(response.status(), headers, incoming, incoming.stream(), response)


def checked(response: Response) -> Response:
    if response.status >= 400:
        raise vendor_error(response.status, response.headers, response.read_all(1 << 20))
    return response


# ---- request and answer -----------------------------------------------------


ROLES = {t.Role.SYSTEM: "system", t.Role.USER: "user", t.Role.ASSISTANT: "assistant", t.Role.TOOL: "tool"}


def text_of(message: t.Message) -> str:
    return "".join(part.value for part in message.content if isinstance(part, t.ContentPart_Text))


def request_body(request: t.ChatRequest, stream: bool) -> bytes:
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
    return json.dumps(body).encode()


def finish_reason(value: Optional[str]) -> t.FinishReason:
    return {
        "stop": t.FinishReason_Stop(),
        "length": t.FinishReason_Length(),
        "tool_calls": t.FinishReason_ToolCalls(),
        "content_filter": t.FinishReason_ContentFilter(),
    }.get(value or "stop", t.FinishReason_Other(str(value)))


def usage_of(value) -> Optional[t.Usage]:
    if not isinstance(value, dict):
        return None
    try:
        return t.Usage(
            input_tokens=int(value.get("prompt_tokens") or 0),
            output_tokens=int(value.get("completion_tokens") or 0),
            cache_read_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
            estimated=False,
        )
    except (TypeError, ValueError):
        return None


def estimate(text: str) -> int:
    return tokenizer.count("cl100k_base", text)


class ChatStream(exports.provider.ChatStream):
    """Reads the server's SSE answer event by event."""

    def __init__(self, response: Response, model_id: str):
        self.response = response
        self.model = model_id
        self.buffer = b""
        self.pending: List[t.Chunk] = []
        self.started = False
        self.ended = False

    @guarded
    def next(self) -> Optional[t.Chunk]:
        while not self.pending:
            if self.ended:
                return None
            event = self.next_event()
            if event is None:
                raise protocol("the stream ended before its [DONE] marker")
            self.handle(event)
        return self.pending.pop(0)

    def next_event(self) -> Optional[str]:
        while True:
            for separator in (b"\r\n\r\n", b"\n\n"):
                end = self.buffer.find(separator)
                if end >= 0:
                    raw, self.buffer = self.buffer[:end], self.buffer[end + len(separator):]
                    data = [line[5:].lstrip() for line in raw.replace(b"\r\n", b"\n").split(b"\n")
                            if line.startswith(b"data:")]
                    if data:
                        return b"\n".join(data).decode("utf-8", "replace")
                    break
            else:
                more = self.response.read_some()
                if more is None:
                    return None
                self.buffer += more
                continue

    def handle(self, data: str) -> None:
        if data.strip() == "[DONE]":
            self.ended = True
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise protocol("a stream event is not JSON")
        if isinstance(event, dict) and "error" in event:
            error = event["error"]
            message = error.get("message", "error") if isinstance(error, dict) else str(error)
            raise Err(t.ProviderError_ServerError(detail(str(message))))
        if not self.started:
            self.started = True
            self.pending.append(t.Chunk_Start(t.StreamStart(
                id=str(event.get("id", "")), model=str(event.get("model", self.model)),
                rate_limits=None, request_id=self.response.headers.get("x-request-id"))))
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.pending.append(t.Chunk_Text(content))
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.pending.append(t.Chunk_Reasoning(reasoning))
            if choice.get("finish_reason"):
                self.pending.append(t.Chunk_Finish(finish_reason(choice["finish_reason"])))
        usage = usage_of(event.get("usage"))
        if usage is not None and (usage.input_tokens or usage.output_tokens):
            self.pending.append(t.Chunk_Usage(usage))


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
            models=MODELS,
        )

    @guarded
    def chat(self, config: t.ProviderConfig, request: t.ChatRequest) -> t.ChatResponse:
        response = checked(send(config, http.Method_Post(), "/chat/completions", request_body(request, False)))
        try:
            answer = json.loads(response.read_all())
            choice = answer["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise protocol("the answer is not a chat completion")
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        usage = usage_of(answer.get("usage"))
        if usage is None:
            prompt = "".join(text_of(m) for m in request.messages)
            usage = t.Usage(input_tokens=estimate(prompt), output_tokens=estimate(content),
                            cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                            estimated=True)
        return t.ChatResponse(
            id=str(answer.get("id", "")),
            model=str(answer.get("model", request.model)),
            content=content,
            reasoning_content=reasoning,
            tool_calls=[],
            parts=[t.ContentPart_Text(content)] if content else [],
            finish_reason=finish_reason(choice.get("finish_reason")),
            usage=usage,
            rate_limits=None,
            request_id=response.headers.get("x-request-id"),
        )

    @guarded
    def stream(self, config: t.ProviderConfig, request: t.ChatRequest) -> exports.provider.ChatStream:
        response = checked(send(config, http.Method_Post(), "/chat/completions",
                                request_body(request, True), accept="text/event-stream"))
        return ChatStream(response, request.model)

    @guarded
    def count_tokens(self, config: t.ProviderConfig, model_id: str, input: t.TokenInput) -> t.TokenCount:
        if isinstance(input, t.TokenInput_Text):
            tokens = estimate(input.value)
        else:
            # About four tokens of framing per message, as chat templates add.
            tokens = sum(estimate(text_of(m)) + 4 for m in input.value) + 2
        return t.TokenCount(tokens=tokens, estimated=True, encoding="cl100k_base")

    @guarded
    def health_check(self, config: t.ProviderConfig) -> t.HealthReport:
        response = checked(send(config, http.Method_Get(), "/models", None))
        try:
            listed = json.loads(response.read_all()).get("data") or []
        except (ValueError, AttributeError):
            raise protocol("the model list is not JSON")
        return t.HealthReport(models_available=len(listed),
                              detail=f"{config.base_url} answered; {len(listed)} models listed")
