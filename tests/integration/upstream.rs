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
    journal.requests.lock().expect("journal").push(Recorded {
        method: req.method().to_string(),
        target: target.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
            .collect(),
        body: body.clone(),
    });
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
    if let Some(code) = path.strip_prefix("/status/") {
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
