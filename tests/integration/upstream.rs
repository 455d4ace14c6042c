//! A local mock upstream that records what it received and answers per path.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::stream;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

#[derive(Default)]
pub struct Journal {
    requests: Mutex<Vec<Recorded>>,
    /// Set when an endless stream is dropped, i.e. the proxy let go of the upstream.
    pub stream_dropped: AtomicBool,
}

pub struct MockUpstream {
    pub url: String,
    pub journal: Arc<Journal>,
    handle: ServerHandle,
}

impl MockUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("mock binds");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let journal = Arc::new(Journal::default());
        let data = web::Data::from(Arc::clone(&journal));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(256 << 20))
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("mock listens")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        MockUpstream {
            url,
            journal,
            handle,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.journal
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received a request")
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

struct DropFlag(Arc<Journal>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.stream_dropped.store(true, Ordering::SeqCst);
    }
}

async fn answer(req: HttpRequest, body: Bytes, journal: web::Data<Journal>) -> HttpResponse {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let sequence = {
        let mut requests = journal.requests.lock().expect("journal");
        requests.push(Recorded {
            method: req.method().to_string(),
            target: target.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
                .collect(),
            body: body.clone(),
        });
        requests.len()
    };
    if let Some(millis) = knob(&req, "x-mock-delay-ms") {
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
    if let Some(kind) = req
        .headers()
        .get("x-mock-stamp")
        .and_then(|v| v.to_str().ok())
    {
        return stamped(&req, kind, sequence, body.len());
    }
    let path = req.path();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return HttpResponse::Ok().body("late");
    }
    if path.ends_with("/gzip") {
        return HttpResponse::Ok()
            .insert_header(("content-encoding", "gzip"))
            .insert_header(("content-type", "application/json"))
            .body(Bytes::from_static(b"\x1f\x8b\x08\x00not-really-gzip"));
    }
    if let Some(code) = path.split("/status/").nth(1) {
        let status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::IM_A_TEAPOT);
        return HttpResponse::build(status)
            .insert_header(("retry-after", "7"))
            .insert_header(("x-ratelimit-remaining-requests", "0"))
            .json(serde_json::json!({"error": {"message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}));
    }
    if path.ends_with("/endless") {
        let guard = DropFlag(journal.into_inner());
        let events = stream::unfold(guard, |guard| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, actix_web::Error>(Bytes::from_static(b"data: tick\n\n")),
                guard,
            ))
        });
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .streaming(events);
    }
    if String::from_utf8_lossy(&body).contains("\"stream\":true") {
        let events = stream::unfold(0u32, |n| async move {
            if n == 5 {
                return None;
            }
            if n > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let event = if n == 4 {
                "data: {\"n\":4,\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n"
                    .to_owned()
            } else {
                format!("data: {{\"n\":{n}}}\n\n")
            };
            Some((Ok::<_, actix_web::Error>(Bytes::from(event)), n + 1))
        });
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .streaming(events);
    }
    if path.ends_with("/responses") {
        return HttpResponse::Ok().json(serde_json::json!({
            "object": "response", "usage": {"input_tokens": 11, "output_tokens": 7}
        }));
    }
    HttpResponse::Ok()
        .insert_header(("x-request-id", "req-123"))
        .append_header(("x-repeated", "one"))
        .append_header(("x-repeated", "two"))
        .content_type("application/json")
        .body(format!("{{\"echo\":{}}}", body.len()))
}

/// A numeric test knob sent as a request header.
fn knob(req: &HttpRequest, name: &str) -> Option<u64> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Answers that carry `n`, the request's 1-based sequence number at this mock, so that a replay
/// from a cache is told apart from a fresh upstream answer. Chosen with request headers (which no
/// cache key includes), on any path:
///   x-mock-stamp: json | gzip | sse | chunks | eventstream   the kind of answer
///   x-mock-stop-after: <n>                          end a `chunks` stream cleanly after n events
///   x-mock-status: <code>                           answer JSON with that status instead
///   x-mock-pause-ms: <ms>                           pause between stream events (default 20)
///   x-mock-cut-after: <n>                           drop the connection after n SSE events
///   x-mock-delay-ms: <ms>                           wait before answering (any request)
///   x-mock-pad: <bytes>                             a JSON answer this much longer
/// Every stamped answer also has per-request headers that a cache must not replay.
fn stamped(req: &HttpRequest, kind: &str, n: usize, echo: usize) -> HttpResponse {
    let status = knob(req, "x-mock-status")
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response
        .insert_header(("x-request-id", format!("req-{n}")))
        .insert_header(("x-ratelimit-remaining-requests", "42"))
        .insert_header(("retry-after", "1"));
    if !status.is_success() {
        return response.json(serde_json::json!({"error": {
            "message": format!("mock failure {n}"), "type": "server_error", "param": null, "code": null
        }}));
    }
    let pause = Duration::from_millis(knob(req, "x-mock-pause-ms").unwrap_or(20));
    let cut_after = knob(req, "x-mock-cut-after").and_then(|n| usize::try_from(n).ok());
    match kind {
        "gzip" => {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(format!("{{\"n\":{n},\"echo\":{echo}}}").as_bytes())
                .expect("gzip");
            response
                .insert_header(("content-encoding", "gzip"))
                .content_type("application/json")
                .body(encoder.finish().expect("gzip"))
        }
        "sse" => {
            let mut events: Vec<Bytes> = (0..4)
                .map(|i| Bytes::from(format!("data: {{\"n\":{n},\"i\":{i}}}\n\n")))
                .collect();
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
            if cut_after.is_some() {
                // A declared length, so that the cut is seen as one (a chunked body closed
                // between chunks reads as complete to a lenient client).
                let length = events.iter().map(Bytes::len).sum::<usize>() as u64;
                response.no_chunking(length);
            }
            response
                .content_type("text/event-stream")
                .streaming(paced(events, pause, cut_after))
        }
        "chunks" => {
            // Chat Completions chunks, as OpenAI streams them; x-mock-stop-after ends the stream
            // cleanly (a last empty chunk) after that many, without the closing `[DONE]`.
            let mut events: Vec<Bytes> = (0..4)
                .map(|i| {
                    Bytes::from(format!(
                        "data: {{\"object\":\"chat.completion.chunk\",\"n\":{n},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"part {i} \"}}}}]}}\n\n"
                    ))
                })
                .collect();
            events.push(Bytes::from_static(b"data: [DONE]\n\n"));
            if let Some(stop) = knob(req, "x-mock-stop-after").and_then(|n| usize::try_from(n).ok())
            {
                events.truncate(stop);
            }
            response
                .content_type("text/event-stream")
                .streaming(paced(events, pause, None))
        }
        "eventstream" => {
            let events = (0..4)
                .map(|i| {
                    let inner = format!("{{\"type\":\"chunk\",\"n\":{n},\"i\":{i}}}");
                    let payload = format!(
                        "{{\"bytes\":\"{}\"}}",
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, inner)
                    );
                    Bytes::from(event_frame("chunk", payload.as_bytes()))
                })
                .collect();
            response
                .content_type("application/vnd.amazon.eventstream")
                .streaming(paced(events, pause, cut_after))
        }
        _ => {
            let pad = "x".repeat(
                knob(req, "x-mock-pad")
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0),
            );
            let body = if pad.is_empty() {
                format!("{{\"n\":{n},\"echo\":{echo}}}")
            } else {
                format!("{{\"n\":{n},\"echo\":{echo},\"pad\":\"{pad}\"}}")
            };
            response.content_type("application/json").body(body)
        }
    }
}

/// The events one by one, `pause` apart; with `cut_after`, an error (the connection dropped)
/// in place of the rest after that many.
fn paced(
    events: Vec<Bytes>,
    pause: Duration,
    cut_after: Option<usize>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let events = events.into_iter().enumerate();
    stream::unfold((events, true), move |(mut rest, first)| async move {
        let (index, event) = rest.next()?;
        if !first {
            tokio::time::sleep(pause).await;
        }
        if cut_after.is_some_and(|n| index >= n) {
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "mock cut");
            return Some((
                Err(actix_web::error::ErrorInternalServerError(cut)),
                (rest, false),
            ));
        }
        Some((Ok(event), (rest, false)))
    })
}

/// One `application/vnd.amazon.eventstream` message with string headers and both CRCs.
pub fn event_frame(event_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(u8::try_from(name.len()).expect("short name"));
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&u16::try_from(value.len()).expect("short").to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&u32::try_from(total).expect("small").to_be_bytes());
    message.extend_from_slice(&u32::try_from(headers.len()).expect("small").to_be_bytes());
    let prelude_crc = crc32(&message);
    message.extend_from_slice(&prelude_crc.to_be_bytes());
    message.extend_from_slice(&headers);
    message.extend_from_slice(payload);
    let message_crc = crc32(&message);
    message.extend_from_slice(&message_crc.to_be_bytes());
    message
}

/// CRC-32 (IEEE), as the AWS event-stream framing uses.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(u32::MAX, |crc, byte| {
        (0..8).fold(crc ^ u32::from(*byte), |crc, _| {
            if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            }
        })
    })
}
