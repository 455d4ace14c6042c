"""HTTP-level forwarding behaviour every SDK relies on, shown through an OpenAI proxy with the
`openai` SDK where it can express the request, and plain httpx where it cannot."""

import gzip
import io
import json
import time

import httpx
import openai
import pytest

from concurrent.futures import ThreadPoolExecutor

from mock_upstream import ANSWER, ANSWER_CHUNKS, HTML_503_BODY, HTML_503_MODEL

API_KEY = "sk-test"
MESSAGES = [{"role": "user", "content": "Say hello"}]
# Host is rewritten and Connection is hop-by-hop. Date is tolerated: actix-http's HTTP/1 encoder
# (under awc) writes a Date header on every request that lacks one, and nothing turns it off.
UNCOMPARED = ("host", "connection", "date")


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("openai")


@pytest.fixture
def client(proxy):
    with openai.OpenAI(api_key=API_KEY, base_url=f"{proxy.url}/v1", max_retries=0, timeout=60) as client:
        yield client


def test_hop_by_hop_headers_are_stripped(proxy, mock, through_proxy):
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Connection": "keep-alive, X-Connection-Scoped",
            "X-Connection-Scoped": "drop me",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
            "X-End-To-End": "keep me",
        },
        timeout=30,
    )

    assert response.status_code == 200, response.text
    names = mock.only().header_names()
    for hop in ("keep-alive", "proxy-authorization", "x-connection-scoped", "te", "upgrade", "proxy-connection"):
        assert hop not in names, f"hop-by-hop header {hop} reached the upstream: {names}"
    assert mock.only().header("X-End-To-End") == "keep me"


def test_upstream_error_pages_pass_through_unchanged(client, mock):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=HTML_503_MODEL, messages=MESSAGES)

    response = caught.value.response
    assert response.status_code == 503
    assert response.headers["content-type"] == "text/html"
    assert response.headers["x-upstream-marker"] == "lb-7"
    assert response.content == HTML_503_BODY


def test_concurrent_streams(client, mock):
    def one(i):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}], stream=True,
            extra_headers={"X-Mock-Chunk-Pause": "0.1"},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(one, range(12)))

    assert answers == [ANSWER] * 12
    assert sorted(r.json()["messages"][0]["content"] for r in mock.received()) == sorted(f"hello {i}" for i in range(12))


def test_end_to_end_headers_arrive_unchanged(client, mock):
    """Exactly the SDK's headers reach the upstream: same names, values and repeats; the proxy
    adds none of its own (no User-Agent or Accept-Encoding of its HTTP client)."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Trace-Id": "t-1"}
    )

    sent = sorted((k.lower(), v) for k, v in raw.http_request.headers.multi_items() if k.lower() not in UNCOMPARED)
    received = sorted((k.lower(), v) for k, v in mock.only().headers if k.lower() not in UNCOMPARED)
    added = [h for h in received if h not in sent]
    lost = [h for h in sent if h not in received]
    assert (added, lost) == ([], []), f"headers added by the proxy: {added}; lost: {lost}"


def test_no_headers_are_added_to_a_bare_request(proxy, mock):
    def bare(request: httpx.Request) -> None:
        for name in ("User-Agent", "Accept", "Accept-Encoding"):
            request.headers.pop(name, None)

    with httpx.Client(event_hooks={"request": [bare]}, timeout=30) as http:
        response = http.post(
            f"{proxy.url}/v1/chat/completions",
            content=json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )

    assert response.status_code == 200, response.text
    received = [(k.lower(), v) for k, v in mock.only().headers if k.lower() not in UNCOMPARED or k.lower() == "host"]
    assert sorted(n for n, _ in received) == ["authorization", "content-length", "content-type", "host"], received


def test_repeated_headers_are_kept(proxy, mock):
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers=[("Authorization", f"Bearer {API_KEY}"), ("X-Tag", "one"), ("X-Tag", "two")],
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert [v for k, v in mock.only().headers if k.lower() == "x-tag"] == ["one", "two"]


def test_raw_query_string_is_kept(proxy, mock):
    query = "api-version=2024-10-21&path=a%2Fb%20c&empty=&flag&repeat=1&repeat=2"
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions?{query}",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert mock.only().raw_path == f"/v1/chat/completions?{query}"


def test_content_encoding_passes_through(proxy, mock):
    """A gzip answer reaches the client still compressed, with its Content-Encoding."""
    with httpx.Client(timeout=30) as http:
        request = http.build_request(
            "POST",
            f"{proxy.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {API_KEY}", "Accept-Encoding": "gzip", "X-Mock-Gzip": "1"},
        )
        response = http.send(request, stream=True)
        raw = b"".join(response.iter_raw())
        response.close()

    assert response.status_code == 200
    assert response.headers.get("content-encoding") == "gzip"
    assert json.loads(gzip.decompress(raw))["choices"][0]["message"]["content"] == ANSWER
    assert mock.only().header("Accept-Encoding") == "gzip"


def test_large_request_and_response_bodies(client, mock):
    """Bodies past awc's 2 MiB default buffer limit go through both ways."""
    big = "duck " * (3 * 1024 * 1024 // 5)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": big}],
        metadata={"answer_bytes": str(3 * 1024 * 1024)},
    )
    completion = raw.parse()

    assert len(completion.choices[0].message.content) == 3 * 1024 * 1024
    assert mock.only().body == raw.http_request.content
    assert len(mock.only().body) > 3 * 1024 * 1024


def test_slow_upstream_is_waited_for(client, mock):
    """A non-streaming call whose upstream takes 6 s (longer than awc's 5 s default timeout)."""
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Mock-Delay": "6"}
    )

    assert completion.choices[0].message.content == ANSWER


def test_long_stream_is_not_cut(client, mock):
    """A stream that lasts about 7 s arrives whole and chunk by chunk."""
    start = time.monotonic()
    arrivals = []
    pieces = []
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"X-Mock-Chunk-Pause": "1.0"}
    ):
        arrivals.append(time.monotonic() - start)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)

    assert pieces == ANSWER_CHUNKS
    assert arrivals[0] < 2.0, f"first chunk after {arrivals[0]:.1f}s: the stream was buffered"
    assert arrivals[-1] > 5.0


def test_chunked_request_body(proxy, mock):
    """A request body sent with Transfer-Encoding: chunked (no Content-Length) arrives whole."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()

    def pieces():
        yield body[:10]
        yield body[10:]

    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=pieces(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert mock.only().body == body


def test_multipart_file_upload(client, mock):
    data = b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{}}\n'
    raw = client.files.with_raw_response.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch")
    uploaded = raw.parse()

    assert uploaded.filename == "batch.jsonl"
    assert uploaded.purpose == "batch"
    recorded = mock.only()
    assert recorded.raw_path == "/v1/files"
    assert recorded.header("Content-Type") == raw.http_request.headers["Content-Type"]
    assert recorded.body == raw.http_request.read()
    assert data in recorded.body


def test_unreachable_upstream_is_an_openai_shaped_error(create_proxy, through_proxy):
    dead = create_proxy("openai", upstream_url="http://127.0.0.1:9/v1")
    with openai.OpenAI(api_key=API_KEY, base_url=f"{dead.url}/v1", max_retries=0, timeout=30) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    error = caught.value
    assert error.status_code in (502, 503, 504), error.status_code
    assert isinstance(error.body, dict) and error.body.get("message"), error.body
    assert error.response.json()["error"].keys() >= {"message", "type", "param", "code"}
