//! Requests sent through a proxy port as a client would send them, and their answers read whole.

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use awc::http::header::HeaderMap;
use awc::http::{Method, StatusCode};
use serde_json::Value;

#[derive(Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Call {
    pub fn post(path: &str, body: &str) -> Self {
        Call {
            method: Method::POST,
            path: path.to_owned(),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn get(path: &str) -> Self {
        Call {
            method: Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Asks the mock for an answer stamped with its request number (see upstream.rs).
    pub fn stamp(self, kind: &str) -> Self {
        self.header("x-mock-stamp", kind)
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text()))
    }
}

/// Sends `call` to the proxy at `base` (`http://127.0.0.1:PORT`) and reads the whole answer.
pub async fn send(base: &str, call: &Call) -> Answer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut request = client.request(call.method.clone(), format!("{base}{}", call.path));
    for (name, value) in &call.headers {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    let started = Instant::now();
    let mut response = request.send_body(call.body.clone()).await.expect("proxied");
    let body = response.body().limit(16 << 20).await.expect("body read");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body,
        elapsed: started.elapsed(),
    }
}
