"""A recording mock of every upstream Rubberduck talks to.

One threaded HTTP/1.1 server on 127.0.0.1:<ephemeral> answers provider-shaped, deterministic
responses chosen by path (OpenAI, Anthropic, Azure OpenAI, Bedrock, Vertex AI / Gemini API,
DeepSeek, and a Google OAuth token endpoint) and records every request it receives exactly:
method, raw path with query, headers in order, body bytes.

Streams are sent with ``Transfer-Encoding: chunked``, one flushed chunk per event with a short
pause between them, so a proxy that buffers instead of streaming is visible to the client.

Run as a program (``python3 tests/sdk/mock_upstream.py``, as the JavaScript suite in tests/js
does) it prints ``port <N>`` and also serves its recording as JSON at ``/__mock/requests``.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import re
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Text every provider answers, and how it is split into stream chunks.
ANSWER = "Hello from the mock upstream."
ANSWER_CHUNKS = ["Hello", " from", " the", " mock", " upstream."]
INPUT_TOKENS = 11
OUTPUT_TOKENS = 7
EMBEDDING = [0.25, -0.5, 0.125]
# A model name that makes the mock answer 429 in the provider's shape.
RATE_LIMITED_MODEL = "rate-limited-model"
# A model name that makes the mock answer 503 with an HTML page, as a load balancer would.
HTML_503_MODEL = "html-503-model"
HTML_503_BODY = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"
# Token the /token endpoint mints (service-account JWT bearer grant).
MINTED_TOKEN = "ya29.test-token"
CHUNK_PAUSE = 0.01
# Where a mock started as a program (python3 mock_upstream.py) lists and clears its recording.
CONTROL_PATH = "/__mock/requests"


@dataclass
class Recorded:
    """One request exactly as the mock received it."""

    method: str
    raw_path: str  # path and query, as on the request line
    headers: list[tuple[str, str]]  # in the order received, original case
    body: bytes
    chunked: bool = False

    @property
    def path(self) -> str:
        return urlsplit(self.raw_path).path

    @property
    def query(self) -> str:
        return urlsplit(self.raw_path).query

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The value of a header (case-insensitive); None when absent."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_names(self) -> list[str]:
        return [key.lower() for key, _ in self.headers]

    def json(self):
        return json.loads(self.body)


@dataclass
class MockUpstream:
    server: ThreadingHTTPServer = field(init=False)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Serve CONTROL_PATH, for test suites in other languages that run this mock as a process.
    control: bool = False
    # The text answered instead of ANSWER when a request sends no X-Mock-Answer (None: ANSWER),
    # so a test can make the upstream "drift" for requests it does not send itself.
    answer: str | None = None

    def start(self) -> "MockUpstream":
        mock = self

        class Handler(_Handler):
            upstream = mock

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, request: Recorded) -> None:
        with self.lock:
            self.requests.append(request)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def received(self, path_contains: str | None = None) -> list[Recorded]:
        with self.lock:
            found = list(self.requests)
        if path_contains is not None:
            found = [r for r in found if path_contains in r.raw_path]
        return found

    def only(self, path_contains: str | None = None) -> Recorded:
        """The single request received (whose path contains the text); fails otherwise."""
        found = self.received(path_contains)
        assert len(found) == 1, f"expected one request{' to ' + path_contains if path_contains else ''}, got {[(r.method, r.raw_path) for r in self.received()]}"
        return found[0]


class _Handler(BaseHTTPRequestHandler):
    upstream: MockUpstream
    protocol_version = "HTTP/1.1"
    server_version = "MockUpstream/1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    # --- reading ---------------------------------------------------------------------------

    def _read_body(self) -> tuple[bytes, bool]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size_line = self.rfile.readline().strip()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return body, True
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(length) if length else b""), False

    def _handle(self) -> None:
        body, chunked = self._read_body()
        if self.upstream.control and urlsplit(self.path).path == CONTROL_PATH:
            return self._control()
        request = Recorded(
            method=self.command,
            raw_path=self.path,
            headers=list(self.headers.items()),
            body=body,
            chunked=chunked,
        )
        self.upstream.record(request)
        self.current = request
        try:
            route(self, request)
        except Exception as error:  # a mock bug: answer it loudly
            self.send_json(500, {"mock_error": repr(error)})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def _control(self) -> None:
        """GET: the recorded requests as JSON (body as text and base64); DELETE: forget them."""
        self.current = Recorded(self.command, self.path, list(self.headers.items()), b"")
        if self.command == "DELETE":
            self.upstream.clear()
            return self.send_json(200, {"cleared": True})
        self.send_json(200, [
            {
                "method": r.method, "raw_path": r.raw_path, "headers": r.headers,
                "body": r.body.decode(errors="replace"), "body_base64": base64.b64encode(r.body).decode(),
            }
            for r in self.upstream.received()
        ])

    # --- writing ---------------------------------------------------------------------------

    # Test knobs, set by request headers (they are recorded like any other header):
    #   X-Mock-Gzip: 1              gzip the JSON body (Content-Encoding: gzip)
    #   X-Mock-Chunk-Pause: <secs>  pause between stream chunks
    #   X-Mock-Delay: <secs>        wait before answering at all
    #   X-Mock-Answer: <text>       answer this text instead of ANSWER (chat, messages,
    #                               Bedrock, Gemini; streamed word by word); without it, the
    #                               mock's `answer` if set

    def send_json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._delay()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if self.current.header("X-Mock-Gzip") == "1":
            data = gzip.compress(data, mtime=0)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _delay(self) -> None:
        time.sleep(float(self.current.header("X-Mock-Delay") or 0))

    def send_stream(self, content_type: str, chunks: list[bytes], headers: dict[str, str] | None = None) -> None:
        pause = float(self.current.header("X-Mock-Chunk-Pause") or CHUNK_PAUSE)
        self._delay()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.flush()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
            time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --- routing ---------------------------------------------------------------------------------

_VERTEX = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/([^/]+)/models/([^/:]+):(\w+)$")
_GEMINI = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(\w+)$")
_BEDROCK = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream|converse|converse-stream)$")
_AZURE = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")


def route(handler: _Handler, request: Recorded) -> None:
    path = request.path
    if path == "/token" and request.method == "POST":
        return handler.send_json(200, {"access_token": MINTED_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
    if m := _BEDROCK.match(path):
        return bedrock(handler, request, m.group(1), m.group(2))
    if m := _VERTEX.match(path):
        return vertex(handler, request, publisher=m.group(4), model=m.group(5), method=m.group(6))
    if m := _GEMINI.match(path):
        return vertex(handler, request, publisher="google", model=m.group(2), method=m.group(3))
    if m := _AZURE.match(path):
        if m.group(2) == "embeddings":
            return openai_embeddings(handler, request)
        return openai_chat(handler, request, default_model=m.group(1))
    if path.startswith("/openai/v1/chat/completions"):
        return openai_chat(handler, request)
    if path in ("/v1/messages", "/messages"):
        return anthropic_messages(handler, request)
    if path in ("/v1/messages/count_tokens", "/messages/count_tokens"):
        return handler.send_json(200, {"input_tokens": INPUT_TOKENS})
    if path.endswith("/chat/completions"):
        return openai_chat(handler, request)
    if path.endswith("/files") and request.method == "POST":
        return openai_file(handler, request)
    if path.endswith("/embeddings"):
        return openai_embeddings(handler, request)
    if path.endswith("/responses"):
        return openai_responses(handler, request)
    if path == "/v1/models" and request.method == "GET" and request.header("anthropic-version"):
        return handler.send_json(200, {
            "data": [{"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}],
            "has_more": False, "first_id": "claude-haiku-4-5", "last_id": "claude-haiku-4-5",
        })
    if path.endswith("/models") and request.method == "GET":
        return handler.send_json(200, {
            "object": "list",
            "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "openai"},
                {"id": "text-embedding-3-small", "object": "model", "created": 1700000000, "owned_by": "openai"},
            ],
        })
    handler.send_json(404, {"error": {"message": f"mock has no route for {request.method} {request.raw_path}", "type": "invalid_request_error", "param": None, "code": "not_found"}})


def _answer(handler: _Handler, request: Recorded) -> tuple[str, list[str]]:
    """The text to answer and its stream chunks: ANSWER, or what X-Mock-Answer (else the mock's
    `answer`) asks for."""
    asked = request.header("X-Mock-Answer")
    if asked is None:
        asked = handler.upstream.answer
    if asked is None:
        return ANSWER, ANSWER_CHUNKS
    return asked, re.findall(r"\s*\S+", asked) or [asked]


def _body(request: Recorded) -> dict:
    try:
        return json.loads(request.body) if request.body else {}
    except ValueError:
        return {}


# --- OpenAI / DeepSeek / Azure OpenAI --------------------------------------------------------

def openai_chat(handler: _Handler, request: Recorded, default_model: str = "gpt-4o-mini") -> None:
    body = _body(request)
    model = body.get("model", default_model)
    if model == RATE_LIMITED_MODEL:
        return handler.send_json(
            429,
            {"error": {"message": "Rate limit reached for requests", "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
            {"Retry-After": "1", "x-ratelimit-remaining-requests": "0"},
        )
    if model == HTML_503_MODEL:
        handler.send_response(503)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(HTML_503_BODY)))
        handler.send_header("X-Upstream-Marker", "lb-7")
        handler.end_headers()
        handler.wfile.write(HTML_503_BODY)
        return handler.wfile.flush()
    usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
    base = {"id": "chatcmpl-mock1", "created": 1700000000, "model": model, "system_fingerprint": "fp_mock"}
    # metadata.answer_bytes asks for a long answer (for body-size limits along the way).
    answer, pieces = _answer(handler, request)
    size = int((body.get("metadata") or {}).get("answer_bytes") or 0)
    if size:
        answer = (ANSWER + " ") * (size // (len(ANSWER) + 1) + 1)
        answer = answer[:size]
    if not body.get("stream"):
        return handler.send_json(200, {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        }, {"x-request-id": "req_mock_chat"})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunk = {**base, "object": "chat.completion.chunk"}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}]
    for piece in pieces:
        events.append({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}]})
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        for event in events:
            event["usage"] = None
        events.append({**chunk, "choices": [], "usage": usage})
    data = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    handler.send_stream("text/event-stream; charset=utf-8", data)


def openai_file(handler: _Handler, request: Recorded) -> None:
    content_type = request.header("Content-Type") or ""
    assert content_type.startswith("multipart/form-data; boundary="), content_type
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = request.body.split(b"--" + boundary)
    names = re.findall(rb'name="([^"]+)"(?:; filename="([^"]+)")?', request.body)
    filename = next((f.decode() for n, f in names if n == b"file" and f), "upload")
    purpose = next((p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n").decode() for p in parts if b'name="purpose"' in p), "")
    handler.send_json(200, {
        "id": "file-mock1", "object": "file", "bytes": len(request.body), "created_at": 1700000000,
        "filename": filename, "purpose": purpose, "status": "processed",
    })


def openai_embeddings(handler: _Handler, request: Recorded) -> None:
    body = _body(request)
    inputs = body.get("input", "")
    count = len(inputs) if isinstance(inputs, list) else 1
    if body.get("encoding_format") == "base64":
        vector = base64.b64encode(struct.pack(f"<{len(EMBEDDING)}f", *EMBEDDING)).decode()
    else:
        vector = EMBEDDING
    handler.send_json(200, {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)],
        "model": body.get("model", "text-embedding-3-small"),
        "usage": {"prompt_tokens": INPUT_TOKENS, "total_tokens": INPUT_TOKENS},
    })


def openai_responses(handler: _Handler, request: Recorded) -> None:
    body = _body(request)
    model = body.get("model", "gpt-4o-mini")
    message = {
        "type": "message", "id": "msg_mock1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
    }
    response = {
        "id": "resp_mock1", "object": "response", "created_at": 1700000000, "status": "completed",
        "model": model, "output": [message], "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
        "temperature": 1.0, "top_p": 1.0,
        "usage": {
            "input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    if not body.get("stream"):
        return handler.send_json(200, response)
    # The events OpenAI sends, in its order: the item and its text part open, the text streams,
    # then part, item and response close (SDKs that assemble the message need every one).
    in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
    part = {"output_index": 0, "item_id": "msg_mock1", "content_index": 0}
    text_part = {"type": "output_text", "text": ANSWER, "annotations": []}
    events = [
        ("response.created", {"response": in_progress}),
        ("response.in_progress", {"response": in_progress}),
        ("response.output_item.added", {"output_index": 0, "item": {**message, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {**part, "part": {**text_part, "text": ""}}),
    ]
    events += [("response.output_text.delta", {**part, "delta": piece, "logprobs": []}) for piece in ANSWER_CHUNKS]
    events += [
        ("response.output_text.done", {**part, "text": ANSWER, "logprobs": []}),
        ("response.content_part.done", {**part, "part": text_part}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        ("response.completed", {"response": response}),
    ]
    chunks = [
        f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': number, **data})}\n\n".encode()
        for number, (name, data) in enumerate(events)
    ]
    handler.send_stream("text/event-stream; charset=utf-8", chunks)


# --- Anthropic (also Bedrock invoke and Vertex rawPredict for Claude) -------------------------

def anthropic_message(model: str, answer: str = ANSWER) -> dict:
    return {
        "id": "msg_mock01", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": answer}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    }


def anthropic_events(model: str, pieces: list[str] = ANSWER_CHUNKS) -> list[dict]:
    start = {**anthropic_message(model), "content": [], "stop_reason": None, "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    for piece in pieces:
        events.append({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": OUTPUT_TOKENS}},
        {"type": "message_stop"},
    ]
    return events


def anthropic_sse(model: str, pieces: list[str] = ANSWER_CHUNKS) -> list[bytes]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in anthropic_events(model, pieces)]


def anthropic_messages(handler: _Handler, request: Recorded, model: str | None = None) -> None:
    body = _body(request)
    model = model or body.get("model", "claude-mock")
    if model == RATE_LIMITED_MODEL:
        return handler.send_json(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}}, {"retry-after": "1"})
    answer, pieces = _answer(handler, request)
    if body.get("stream"):
        return handler.send_stream("text/event-stream; charset=utf-8", anthropic_sse(model, pieces), {"request-id": "req_mock_stream"})
    handler.send_json(200, anthropic_message(model, answer), {"request-id": "req_mock_msg"})


# --- AWS Bedrock -----------------------------------------------------------------------------

def _event_header(name: str, value: str) -> bytes:
    name_b, value_b = name.encode(), value.encode()
    return struct.pack("!B", len(name_b)) + name_b + struct.pack("!BH", 7, len(value_b)) + value_b


def event_frame(event_type: str, payload: bytes, content_type: str = "application/json") -> bytes:
    """One `application/vnd.amazon.eventstream` message."""
    headers = _event_header(":event-type", event_type) + _event_header(":content-type", content_type) + _event_header(":message-type", "event")
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(headers))
    prelude += struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + payload
    return message + struct.pack("!I", zlib.crc32(message) & 0xFFFFFFFF)


def decode_event_frames(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Splits an event stream into (headers, payload) pairs, checking both CRCs."""
    frames = []
    while data:
        total, headers_len, prelude_crc = struct.unpack("!III", data[:12])
        assert zlib.crc32(data[:8]) & 0xFFFFFFFF == prelude_crc, "prelude crc"
        message, data = data[:total], data[total:]
        assert zlib.crc32(message[:-4]) & 0xFFFFFFFF == struct.unpack("!I", message[-4:])[0], "message crc"
        raw, headers = message[12:12 + headers_len], {}
        while raw:
            name_len = raw[0]
            name = raw[1:1 + name_len].decode()
            kind, value_len = struct.unpack("!BH", raw[1 + name_len:4 + name_len])
            assert kind == 7
            headers[name] = raw[4 + name_len:4 + name_len + value_len].decode()
            raw = raw[4 + name_len + value_len:]
        frames.append((headers, message[12 + headers_len:-4]))
    return frames


def bedrock(handler: _Handler, request: Recorded, model_id: str, action: str) -> None:
    amz = {"x-amzn-RequestId": "00000000-0000-0000-0000-000000000001"}
    answer, pieces = _answer(handler, request)
    if action == "invoke":
        return handler.send_json(200, anthropic_message(model_id, answer), {
            **amz,
            "X-Amzn-Bedrock-Input-Token-Count": str(INPUT_TOKENS),
            "X-Amzn-Bedrock-Output-Token-Count": str(OUTPUT_TOKENS),
        })
    if action == "invoke-with-response-stream":
        events = anthropic_events(model_id, pieces)
        events[-1] = {**events[-1], "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": INPUT_TOKENS, "outputTokenCount": OUTPUT_TOKENS, "invocationLatency": 10, "firstByteLatency": 5}}
        frames = [
            event_frame("chunk", json.dumps({"bytes": base64.b64encode(json.dumps(e).encode()).decode()}).encode())
            for e in events
        ]
        return handler.send_stream("application/vnd.amazon.eventstream", frames, amz)
    usage = {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS, "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS}
    if action == "converse":
        return handler.send_json(200, {
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 10},
        }, amz)
    events = [("messageStart", {"role": "assistant"})]
    events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}) for piece in pieces]
    events += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": usage, "metrics": {"latencyMs": 10}}),
    ]
    handler.send_stream("application/vnd.amazon.eventstream", [event_frame(name, json.dumps(data).encode()) for name, data in events], amz)


def verify_sigv4(request: Recorded, secret_key: str) -> dict[str, str]:
    """Recomputes the SigV4 signature of a received request with botocore's own signer.

    Returns the parsed credential scope (access_key, date, region, service) when the signature
    matches; raises AssertionError with the details otherwise.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = request.header("Authorization") or ""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})",
        authorization,
    )
    assert match, f"not a SigV4 Authorization header: {authorization!r}"
    access_key, date, region, service, signed, signature = match.groups()
    signed_names = signed.split(";")
    amz_date = request.header("X-Amz-Date")
    assert amz_date and amz_date.startswith(date), f"X-Amz-Date {amz_date!r} vs scope date {date}"
    host = request.header("Host")
    assert host, "no Host header"
    headers = {}
    for name in signed_names:
        value = request.header(name)
        assert value is not None, f"signed header {name} not received"
        headers[name] = value
    aws_request = AWSRequest(method=request.method, url=f"http://{host}{request.raw_path}", headers=headers, data=request.body)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key, request.header("X-Amz-Security-Token")), service, region)
    canonical = signer.canonical_request(aws_request)
    expected_signed = signer.signed_headers(signer.headers_to_sign(aws_request))
    assert expected_signed == signed, f"signed headers {signed!r}, botocore would sign {expected_signed!r}"
    string_to_sign = signer.string_to_sign(aws_request, canonical)
    expected = signer.signature(string_to_sign, aws_request)
    assert expected == signature, (
        f"SigV4 signature mismatch for secret {secret_key!r}\n"
        f"received {signature}\nexpected {expected}\ncanonical request:\n{canonical}"
    )
    stamp = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds())
    assert skew < 300, f"X-Amz-Date {amz_date} is {skew:.0f}s off"
    return {"access_key": access_key, "date": date, "region": region, "service": service, "signed_headers": signed}


# --- Vertex AI / Gemini API ------------------------------------------------------------------

def gemini_response(model: str, text: str, final: bool = True) -> dict:
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    response = {"candidates": [candidate], "modelVersion": model, "responseId": "mock-response-1"}
    if final:
        candidate["finishReason"] = "STOP"
    response["usageMetadata"] = {
        "promptTokenCount": INPUT_TOKENS,
        "candidatesTokenCount": OUTPUT_TOKENS if final else 0,
        "totalTokenCount": INPUT_TOKENS + (OUTPUT_TOKENS if final else 0),
    }
    return response


def vertex(handler: _Handler, request: Recorded, publisher: str, model: str, method: str) -> None:
    if method == "rawPredict":
        return anthropic_messages(handler, request, model=model)
    if method == "streamRawPredict":
        return handler.send_stream("text/event-stream; charset=utf-8", anthropic_sse(model))
    if model == RATE_LIMITED_MODEL:
        return handler.send_json(429, {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}})
    answer, chunks = _answer(handler, request)
    if method == "generateContent":
        return handler.send_json(200, gemini_response(model, answer))
    if method == "streamGenerateContent":
        pieces = [gemini_response(model, piece, final=i == len(chunks) - 1) for i, piece in enumerate(chunks)]
        if request.params.get("alt") == ["sse"]:
            return handler.send_stream("text/event-stream", [f"data: {json.dumps(p)}\r\n\r\n".encode() for p in pieces])
        return handler.send_json(200, pieces)
    if method == "countTokens":
        return handler.send_json(200, {"totalTokens": INPUT_TOKENS})
    handler.send_json(404, {"error": {"code": 404, "message": f"mock: no method {method}", "status": "NOT_FOUND"}})


def main() -> None:
    """Serves until standard input closes (so the mock dies with the suite that started it);
    prints `port <N>` once it listens."""
    mock = MockUpstream(control=True).start()
    print(f"port {mock.port}", flush=True)
    sys.stdin.read()
    mock.stop()


__all__ = [
    "ANSWER", "ANSWER_CHUNKS", "INPUT_TOKENS", "OUTPUT_TOKENS", "EMBEDDING", "RATE_LIMITED_MODEL",
    "HTML_503_MODEL", "HTML_503_BODY",
    "MINTED_TOKEN", "MockUpstream", "Recorded", "decode_event_frames", "event_frame", "verify_sigv4",
]

if __name__ == "__main__":
    main()
