//! The built-in emulator: proxies whose upstream is `emulator` answer by themselves, in each
//! provider's wire format, paced, metered, cached and logged like forwarded answers.

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use awc::http::header::HeaderMap;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::support::{TestApp, id_of, port_of};

const WAIT: Duration = Duration::from_secs(10);

/// Latency settings that keep tests quick: no wait, tokens as fast as they go.
fn fast() -> Value {
    json!({"ttft_ms": 0, "tokens_per_second": 100_000})
}

struct Emulated {
    id: i64,
    base: String,
}

/// A running proxy answered by the emulator, with its cache on or off and these latency
/// settings.
async fn emulated(app: &TestApp, provider: &str, cache: bool, emulator: Value) -> Emulated {
    let proxy = app
        .create(json!({
            "name": format!("emulated {provider}"),
            "provider": provider,
            "upstream_url": "emulator",
            "emulator": emulator,
            "cache": {"enabled": cache},
        }))
        .await;
    assert_eq!(proxy["status"], "running", "{proxy}");
    assert_eq!(proxy["upstream_url"], "emulator");
    Emulated {
        id: id_of(&proxy),
        base: format!("http://127.0.0.1:{}", port_of(&proxy)),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// When each chunk of the body arrived, from when the request was sent.
    arrivals: Vec<Duration>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!("not JSON: {}", String::from_utf8_lossy(&self.body));
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON `data:` of every server-sent event, with its `event:` name if any.
    fn events(&self) -> Vec<(Option<String>, String)> {
        String::from_utf8_lossy(&self.body)
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                (name, data)
            })
            .collect()
    }

    fn sse_json(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(_, data)| data != "[DONE]")
            .map(|(_, data)| serde_json::from_str(&data).expect("event data is JSON"))
            .collect()
    }

    /// AWS event-stream messages: (`:event-type`, payload JSON).
    fn frames(&self) -> Vec<(String, Value)> {
        let mut buffer = actix_web::web::BytesMut::from(&self.body[..]);
        let mut decoder = MessageFrameDecoder::new();
        let mut frames = Vec::new();
        while !buffer.is_empty() {
            let Ok(DecodedFrame::Complete(message)) = decoder.decode_frame(&mut buffer) else {
                panic!("a complete, valid event-stream frame");
            };
            let event_type = message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == ":event-type")
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
                .expect(":event-type header");
            let payload = serde_json::from_slice(message.payload()).expect("JSON payload");
            frames.push((event_type, payload));
        }
        frames
    }
}

async fn call(method: &str, url: &str, body: Option<&str>) -> Answer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let request = match method {
        "GET" => client.get(url),
        _ => client.post(url).content_type("application/json"),
    };
    let sent = Instant::now();
    let mut response = match body {
        Some(body) => request.send_body(body.to_owned()).await,
        None => request.send().await,
    }
    .expect("the proxy answers");
    let mut bytes = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = response.next().await {
        let chunk = chunk.expect("body chunk");
        arrivals.push(sent.elapsed());
        bytes.extend_from_slice(&chunk);
    }
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: bytes,
        arrivals,
    }
}

async fn post(url: &str, body: &Value) -> Answer {
    call("POST", url, Some(&body.to_string())).await
}

fn with(body: &Value, extra: Value) -> Value {
    let mut body = body.clone();
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

const PROMPT: &str = "Tell me about rubber ducks";

#[actix_web::test]
async fn openai_chat_completions_whole_and_streamed() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "openai", false, fast()).await;
    let request = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT}
    ]});

    let whole = post(&format!("{}/v1/chat/completions", proxy.base), &request).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert!(
        whole
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let json = whole.json();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["model"], "gpt-4o-mini");
    let text = json["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    assert!(text.contains("“Tell me about rubber ducks”"), "{text}");
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    let completion_tokens = json["usage"]["completion_tokens"].as_u64().expect("usage");
    assert!(json["usage"]["prompt_tokens"].as_u64() > Some(0));

    // Without /v1, streamed with a usage chunk: the same text, piece by piece.
    let streamed = post(
        &format!("{}/chat/completions", proxy.base),
        &with(
            &request,
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert!(
        streamed
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
    );
    let events = streamed.events();
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let chunks = streamed.sse_json();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pieces.concat(), text, "streamed and whole answers agree");
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(usage["completion_tokens"].as_u64(), Some(completion_tokens));
    assert_eq!(
        pieces.len() as u64,
        completion_tokens,
        "one token per piece"
    );

    // An output limit cuts the answer, and says so.
    let cut = post(
        &format!("{}/v1/chat/completions", proxy.base),
        &with(&request, json!({"max_tokens": 3})),
    )
    .await
    .json();
    assert_eq!(cut["choices"][0]["finish_reason"], "length");
    assert_eq!(cut["usage"]["completion_tokens"], 3);
    app.shutdown().await;
}

#[actix_web::test]
async fn openai_responses_embeddings_and_models() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "openai", false, fast()).await;

    let request = json!({"model": "gpt-4o-mini", "input": PROMPT});
    let whole = post(&format!("{}/v1/responses", proxy.base), &request)
        .await
        .json();
    assert_eq!(whole["object"], "response");
    assert_eq!(whole["status"], "completed");
    let text = whole["output"][0]["content"][0]["text"]
        .as_str()
        .expect("output text")
        .to_owned();
    assert!(text.contains("rubber ducks”"), "{text}");
    assert!(whole["usage"]["output_tokens"].as_u64() > Some(0));

    let streamed = post(
        &format!("{}/v1/responses", proxy.base),
        &with(&request, json!({"stream": true})),
    )
    .await;
    let events = streamed.events();
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(names.contains(&"response.output_item.added"));
    let deltas: String = streamed
        .sse_json()
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(deltas, text);
    let completed = streamed.sse_json().pop().expect("completed");
    assert_eq!(completed["response"]["usage"], whole["usage"]);

    let embeddings = post(
        &format!("{}/v1/embeddings", proxy.base),
        &json!({"model": "text-embedding-3-small", "input": ["duck", "goose"], "dimensions": 8}),
    )
    .await
    .json();
    let data = embeddings["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["embedding"].as_array().map(Vec::len), Some(8));
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    let base64 = post(
        &format!("{}/v1/embeddings", proxy.base),
        &json!({"model": "text-embedding-3-small", "input": "duck", "dimensions": 8, "encoding_format": "base64"}),
    )
    .await
    .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64["data"][0]["embedding"].as_str().expect("base64"))
        .expect("valid base64");
    let floats: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let first: Vec<f64> = data[0]["embedding"]
        .as_array()
        .expect("floats")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(floats.len(), 8);
    for (a, b) in floats.iter().zip(&first) {
        assert!((a - b).abs() < 1e-6, "same vector in both encodings");
    }

    let models = call("GET", &format!("{}/v1/models", proxy.base), None)
        .await
        .json();
    assert_eq!(models["object"], "list");
    assert!(models["data"][0]["id"].is_string());
    app.shutdown().await;
}

#[actix_web::test]
async fn azure_and_deepseek_speak_openai() {
    let mut app = TestApp::start().await;
    // "emulator" stands in for the Azure resource endpoint Azure proxies otherwise need.
    let azure = emulated(&app, "azure_openai", false, fast()).await;
    let deepseek = emulated(&app, "deepseek", false, fast()).await;

    let answer = post(
        &format!(
            "{}/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
            azure.base
        ),
        &json!({"messages": [{"role": "user", "content": PROMPT}]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json()["model"],
        "my-gpt",
        "the deployment when the body names no model"
    );

    let answer = post(
        &format!("{}/chat/completions", deepseek.base),
        &json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": PROMPT}]}),
    )
    .await
    .json();
    assert_eq!(answer["model"], "deepseek-chat");
    assert!(answer["usage"]["total_tokens"].as_u64() > Some(0));
    app.shutdown().await;
}

#[actix_web::test]
async fn anthropic_messages_count_tokens_and_models() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "anthropic", false, fast()).await;
    let request = json!({"model": "claude-haiku-4-5", "max_tokens": 256,
        "system": "Be brief.", "messages": [{"role": "user", "content": PROMPT}]});

    let whole = post(&format!("{}/v1/messages", proxy.base), &request)
        .await
        .json();
    assert_eq!(whole["type"], "message");
    assert_eq!(whole["stop_reason"], "end_turn");
    let text = whole["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned();
    let output_tokens = whole["usage"]["output_tokens"].as_u64().expect("usage");

    let streamed = post(
        &format!("{}/v1/messages", proxy.base),
        &with(&request, json!({"stream": true})),
    )
    .await;
    let events = streamed.events();
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    let json = streamed.sse_json();
    let deltas: String = json
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(deltas, text);
    let delta = json
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(
        delta["usage"]["output_tokens"].as_u64(),
        Some(output_tokens)
    );

    let count = post(
        &format!("{}/v1/messages/count_tokens", proxy.base),
        &json!({"model": "claude-haiku-4-5", "system": "Be brief.", "messages": [{"role": "user", "content": PROMPT}]}),
    )
    .await
    .json();
    assert_eq!(count["input_tokens"], whole["usage"]["input_tokens"]);

    let missing = post(
        &format!("{}/v1/messages", proxy.base),
        &json!({"model": "claude-haiku-4-5", "messages": []}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json()["error"]["type"], "invalid_request_error");

    let models = call("GET", &format!("{}/v1/models", proxy.base), None)
        .await
        .json();
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(models["has_more"], false);
    app.shutdown().await;
}

#[actix_web::test]
async fn bedrock_invoke_converse_and_event_streams() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "bedrock", false, fast()).await;
    let claude = "anthropic.claude-3-haiku-20240307-v1%3A0";
    let messages = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
        "messages": [{"role": "user", "content": PROMPT}]});

    // No AWS credentials and no signature: the emulator needs none.
    let invoke = post(&format!("{}/model/{claude}/invoke", proxy.base), &messages).await;
    assert_eq!(invoke.status, StatusCode::OK);
    let whole = invoke.json();
    assert_eq!(whole["type"], "message");
    let text = whole["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned();
    assert_eq!(
        invoke.header("x-amzn-bedrock-output-token-count"),
        whole["usage"]["output_tokens"].to_string().as_str().into()
    );

    let streamed = post(
        &format!("{}/model/{claude}/invoke-with-response-stream", proxy.base),
        &messages,
    )
    .await;
    assert_eq!(
        streamed.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let chunks: Vec<Value> = streamed
        .frames()
        .into_iter()
        .map(|(kind, payload)| {
            assert_eq!(kind, "chunk");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload["bytes"].as_str().expect("bytes"))
                .expect("base64");
            serde_json::from_slice(&bytes).expect("chunk JSON")
        })
        .collect();
    assert_eq!(chunks[0]["type"], "message_start");
    let last = chunks.last().expect("chunks");
    assert_eq!(last["type"], "message_stop");
    assert_eq!(
        last["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
        whole["usage"]["output_tokens"]
    );
    let deltas: String = chunks
        .iter()
        .filter_map(|c| c["delta"]["text"].as_str())
        .collect();
    assert_eq!(deltas, text);

    let llama = post(
        &format!("{}/model/meta.llama3-8b-instruct-v1%3A0/invoke", proxy.base),
        &json!({"prompt": PROMPT, "max_gen_len": 5}),
    )
    .await
    .json();
    assert_eq!(llama["generation_token_count"], 5);
    assert_eq!(llama["stop_reason"], "length");

    let converse_request = json!({"messages": [{"role": "user", "content": [{"text": PROMPT}]}]});
    let converse = post(
        &format!("{}/model/{claude}/converse", proxy.base),
        &converse_request,
    )
    .await
    .json();
    assert_eq!(converse["stopReason"], "end_turn");
    let converse_text = converse["output"]["message"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned();

    let frames = post(
        &format!("{}/model/{claude}/converse-stream", proxy.base),
        &converse_request,
    )
    .await
    .frames();
    let kinds: Vec<&str> = frames.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"messageStart"));
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    let streamed_text: String = frames
        .iter()
        .filter_map(|(_, p)| p["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed_text, converse_text);
    assert_eq!(
        frames.last().expect("metadata").1["usage"],
        converse["usage"]
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn vertex_and_gemini_generate_stream_and_count() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "vertex_ai", false, fast()).await;
    let model =
        "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash";
    let request = json!({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]});

    let whole = post(&format!("{}{model}:generateContent", proxy.base), &request)
        .await
        .json();
    let text = whole["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned();
    assert_eq!(whole["candidates"][0]["finishReason"], "STOP");
    let usage = whole["usageMetadata"].clone();
    assert!(usage["candidatesTokenCount"].as_u64() > Some(0));

    let sse = post(
        &format!("{}{model}:streamGenerateContent?alt=sse", proxy.base),
        &request,
    )
    .await;
    let chunks = sse.sse_json();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(chunks.last().expect("chunks")["usageMetadata"], usage);

    // Without alt=sse the chunks come as one JSON array; the Gemini API's own paths too.
    let array = post(
        &format!(
            "{}/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            proxy.base
        ),
        &request,
    )
    .await
    .json();
    let array = array.as_array().expect("a JSON array");
    assert_eq!(array.len(), chunks.len());

    let count = post(&format!("{}{model}:countTokens", proxy.base), &request)
        .await
        .json();
    assert_eq!(count["totalTokens"], usage["promptTokenCount"]);

    // Claude on Vertex: rawPredict speaks Anthropic's Messages API.
    let claude = post(
        &format!(
            "{}/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5:rawPredict",
            proxy.base
        ),
        &json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}),
    )
    .await
    .json();
    assert_eq!(claude["type"], "message");
    app.shutdown().await;
}

#[actix_web::test]
async fn unknown_paths_and_malformed_bodies_get_provider_errors() {
    let mut app = TestApp::start().await;
    for (provider, path, check) in [
        (
            "openai",
            "/v1/nothing",
            (|json: &Value| json["error"]["type"] == "invalid_request_error") as fn(&Value) -> bool,
        ),
        ("anthropic", "/v1/nothing", |json| {
            json["type"] == "error" && json["error"]["type"] == "not_found_error"
        }),
        ("bedrock", "/model/x/nothing", |json| {
            json["message"].is_string()
        }),
        ("vertex_ai", "/v1/models/m:nothing", |json| {
            json["error"]["status"] == "NOT_FOUND" && json["error"]["code"] == 404
        }),
    ] {
        let proxy = emulated(&app, provider, false, fast()).await;
        let answer = post(&format!("{}{path}", proxy.base), &json!({})).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{provider}");
        assert!(check(&answer.json()), "{provider}: {}", answer.json());
        if provider == "bedrock" {
            assert_eq!(
                answer.header("x-amzn-errortype"),
                Some("UnknownOperationException")
            );
        }
    }

    for (provider, path) in [
        ("openai", "/v1/chat/completions"),
        ("anthropic", "/v1/messages"),
        ("bedrock", "/model/m/converse"),
        ("vertex_ai", "/v1/models/m:generateContent"),
    ] {
        let proxy = emulated(&app, provider, false, fast()).await;
        let answer = call("POST", &format!("{}{path}", proxy.base), Some("{not json")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{provider}");
        let body = answer.json();
        assert!(
            body.to_string().contains("not valid JSON"),
            "{provider}: {body}"
        );
    }
    app.shutdown().await;
}

#[actix_web::test]
async fn same_request_same_answer() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "anthropic", false, fast()).await;
    let request = |prompt: &str| json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": prompt}]});
    let url = format!("{}/v1/messages", proxy.base);
    let first = post(&url, &request(PROMPT)).await;
    let second = post(&url, &request(PROMPT)).await;
    assert_eq!(first.header("x-cache"), Some("BYPASS"), "not from a cache");
    assert_eq!(first.body, second.body, "byte for byte");
    let other = post(&url, &request("Something else entirely")).await;
    assert_ne!(first.json()["content"], other.json()["content"]);
    app.shutdown().await;
}

#[actix_web::test]
async fn streams_are_paced_and_whole_answers_wait() {
    let mut app = TestApp::start().await;
    let (ttft_ms, tokens_per_second) = (300u64, 40u64);
    let proxy = emulated(
        &app,
        "openai",
        false,
        json!({"ttft_ms": ttft_ms, "tokens_per_second": tokens_per_second}),
    )
    .await;
    let request = json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": PROMPT}]});
    let streamed = post(&format!("{}/v1/chat/completions", proxy.base), &request).await;
    let pieces = streamed
        .sse_json()
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
        })
        .count() as u64;
    let expected = Duration::from_millis(ttft_ms + pieces * 1000 / tokens_per_second);
    let (first, last) = (
        streamed.arrivals[0],
        *streamed.arrivals.last().expect("chunks"),
    );
    // Sleeps never end early, so lower bounds hold however loaded the machine is.
    assert!(
        last >= expected.mul_f64(0.9),
        "the stream took {last:?}, generating {pieces} tokens takes {expected:?}"
    );
    assert!(
        first >= Duration::from_millis(ttft_ms).mul_f64(0.9),
        "the first event came after {first:?}"
    );
    assert!(
        streamed.arrivals.len() as u64 >= pieces / 2,
        "events arrive one by one, not in one piece: {} chunks",
        streamed.arrivals.len()
    );
    assert!(
        last - first >= (expected - Duration::from_millis(ttft_ms)).mul_f64(0.5),
        "the events were spread over the generation time: first {first:?}, last {last:?}"
    );

    let started = Instant::now();
    let whole = post(
        &format!("{}/v1/chat/completions", proxy.base),
        &with(&request, json!({"stream": false})),
    )
    .await;
    let tokens = whole.json()["usage"]["completion_tokens"]
        .as_u64()
        .expect("usage");
    assert!(
        started.elapsed()
            >= Duration::from_millis(ttft_ms + tokens * 1000 / tokens_per_second).mul_f64(0.9),
        "a whole answer waits for its generation"
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn usage_and_cost_are_logged_and_answers_cached() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "openai", true, fast()).await;
    let url = format!("{}/v1/chat/completions", proxy.base);
    let request =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]});

    let miss = post(&url, &request).await;
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    let hit = post(&url, &request).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.body, miss.body);
    let usage = miss.json()["usage"].clone();

    let stream = with(
        &request,
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let streamed_miss = post(&url, &stream).await;
    let streamed_hit = post(&url, &stream).await;
    assert_eq!(streamed_hit.header("x-cache"), Some("HIT"));
    assert_eq!(streamed_hit.body, streamed_miss.body);

    let deadline = Instant::now() + WAIT;
    let logs = loop {
        let (_, body) = app
            .get(&format!("/api/logs?proxy_id={}&limit=10", proxy.id))
            .await;
        if body["total"].as_i64() == Some(4) {
            break body["logs"].as_array().cloned().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "four log entries: {body}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    for entry in &logs {
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["failure"], Value::Null, "{entry}");
        assert_eq!(entry["input_tokens"], usage["prompt_tokens"], "{entry}");
        assert_eq!(
            entry["output_tokens"], usage["completion_tokens"],
            "{entry}"
        );
        assert!(entry["cost_usd"].as_f64() > Some(0.0), "{entry}");
        assert_eq!(entry["model"], "gpt-4o-mini");
    }
    let caches: Vec<&str> = logs.iter().filter_map(|e| e["cache"].as_str()).collect();
    assert_eq!(caches.iter().filter(|c| **c == "hit").count(), 2);
    assert_eq!(logs.iter().filter(|e| e["stream"] == true).count(), 2);
    app.shutdown().await;
}

#[actix_web::test]
async fn latency_settings_are_validated() {
    let mut app = TestApp::start().await;
    for (emulator, field) in [
        (json!({"ttft_ms": -1}), "emulator.ttft_ms"),
        (json!({"ttft_ms": 60_001}), "emulator.ttft_ms"),
        (json!({"ttft_ms": 1.5}), "emulator.ttft_ms"),
        (
            json!({"tokens_per_second": 0}),
            "emulator.tokens_per_second",
        ),
        (
            json!({"tokens_per_second": "fast"}),
            "emulator.tokens_per_second",
        ),
        (json!({"speed": 1}), "emulator"),
        (json!(5), "emulator"),
    ] {
        let (status, body) = app
            .post(
                "/api/proxies",
                json!({"name": "bad", "provider": "openai", "upstream_url": "emulator", "emulator": emulator}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{emulator}");
        assert_eq!(body["error"]["field"], field, "{emulator}: {body}");
    }

    let proxy = emulated(&app, "openai", false, fast()).await;
    let (status, body) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"emulator": {"tokens_per_second": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "emulator.tokens_per_second");
    let (status, body) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"emulator": {"tokens_per_second": 7}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["emulator"],
        json!({"ttft_ms": 0, "tokens_per_second": 7}),
        "a partial edit keeps the other setting"
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn emulator_settings_survive_a_restart() {
    let mut app = TestApp::start().await;
    let proxy = emulated(
        &app,
        "anthropic",
        false,
        json!({"ttft_ms": 5, "tokens_per_second": 2000}),
    )
    .await;
    app.restart().await;
    let (status, stored) = app.get(&format!("/api/proxies/{}", proxy.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["upstream_url"], "emulator");
    assert_eq!(
        stored["emulator"],
        json!({"ttft_ms": 5, "tokens_per_second": 2000})
    );
    assert_eq!(stored["status"], "running", "{stored}");
    let answer = post(
        &format!("http://127.0.0.1:{}/v1/messages", port_of(&stored)),
        &json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": PROMPT}]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    app.shutdown().await;
}

#[actix_web::test]
async fn forms_choose_the_emulator_without_scripts() {
    let mut app = TestApp::start().await;
    let (_, page) = app.get_text("/proxies/new", false).await;
    assert!(
        page.contains("Use built-in emulator"),
        "the create form offers it"
    );

    let rejected = app
        .post_form(
            "/proxies",
            &[
                ("name", "offline"),
                ("provider", "azure_openai"),
                ("use_emulator", "on"),
                ("emulator_ttft_ms", "10"),
                ("emulator_tokens_per_second", "0"),
            ],
            false,
        )
        .await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        rejected.html.contains("Tokens per second must be"),
        "inline error"
    );

    let created = app
        .post_form(
            "/proxies",
            &[
                ("name", "offline"),
                ("provider", "azure_openai"),
                ("use_emulator", "on"),
                ("emulator_ttft_ms", "10"),
                ("emulator_tokens_per_second", "500"),
            ],
            false,
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let (_, proxies) = app.get("/api/proxies").await;
    let proxy = proxies
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == "offline"))
        .cloned()
        .expect("created");
    assert_eq!(proxy["upstream_url"], "emulator");
    assert_eq!(
        proxy["emulator"],
        json!({"ttft_ms": 10, "tokens_per_second": 500})
    );
    let id = id_of(&proxy);

    let (_, list) = app.get_text("/proxies", false).await;
    assert!(list.contains("tag-emulator"), "the card says so");
    let (_, configure) = app.get_text(&format!("/proxies/{id}/edit"), true).await;
    assert!(
        configure.contains("name=\"use_emulator\" id=\"edit-use-emulator\" checked"),
        "Configure shows the choice"
    );

    // Unticked in Configure: back to an upstream URL.
    let edited = app
        .post_form(
            &format!("/proxies/{id}"),
            &[
                ("name", "offline"),
                ("port", &proxy["port"].to_string()),
                ("upstream_url", "https://r.openai.azure.com"),
            ],
            false,
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.html);
    let (_, proxy) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(proxy["upstream_url"], "https://r.openai.azure.com");
    app.shutdown().await;
}
