//! The error answers of every provider, for every injectable status and every error the proxy
//! makes itself, read back as a client would. The per-status tables are checked over HTTP, with
//! the official SDKs, in `tests/integration/faults.rs` and `tests/sdk/test_faults.py`.

use actix_web::body::to_bytes;
use actix_web::http::StatusCode;

use super::{ProviderKind, ProxyErrorKind, go_duration};
use crate::faults::INJECTABLE_STATUSES;

const PROXY_ERRORS: [ProxyErrorKind; 9] = [
    ProxyErrorKind::BadRequest,
    ProxyErrorKind::Unauthorized,
    ProxyErrorKind::BadGateway,
    ProxyErrorKind::GatewayTimeout,
    ProxyErrorKind::PayloadTooLarge,
    ProxyErrorKind::RequestTimeout,
    ProxyErrorKind::Overloaded,
    ProxyErrorKind::NotCached,
    ProxyErrorKind::SpendCapReached,
];

struct Read {
    status: StatusCode,
    headers: actix_web::http::header::HeaderMap,
    json: serde_json::Value,
}

async fn read(response: actix_web::HttpResponse) -> Read {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body()).await.expect("body");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    Read {
        status,
        headers,
        json,
    }
}

fn header<'a>(read: &'a Read, name: &str) -> Option<&'a str> {
    read.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The message a client shows, wherever the provider's shape keeps it.
fn message(kind: ProviderKind, json: &serde_json::Value) -> Option<&str> {
    match kind {
        ProviderKind::Bedrock => json["message"].as_str(),
        _ => json["error"]["message"].as_str(),
    }
}

#[actix_web::test]
async fn every_injectable_status_is_answered_with_that_status_in_the_providers_shape() {
    for kind in ProviderKind::ALL {
        for code in INJECTABLE_STATUSES {
            let status = StatusCode::from_u16(code).expect("a status");
            let reply = read(kind.provider().injected_error(status, 7)).await;
            let what = format!("{kind} {code}");
            assert_eq!(reply.status, status, "{what}");
            assert!(
                header(&reply, "content-type").is_some_and(|c| c.contains("json")),
                "{what}: {:?}",
                reply.headers
            );
            assert!(
                message(kind, &reply.json).is_some_and(|m| m.contains("Rubberduck")),
                "{what}: {}",
                reply.json
            );
            let retry_after = header(&reply, "retry-after");
            if matches!(code, 429 | 503 | 529) {
                assert_eq!(retry_after, Some("7"), "{what}");
            } else {
                assert_eq!(
                    retry_after, None,
                    "{what}: only retryable statuses say when"
                );
            }
        }
    }
}

#[actix_web::test]
async fn proxy_made_errors_have_their_status_and_the_providers_shape() {
    for kind in ProviderKind::ALL {
        for error in PROXY_ERRORS {
            let reply = read(kind.provider().error_response(error, "Rubberduck: why")).await;
            let what = format!("{kind} {error:?}");
            assert_eq!(reply.status, error.status(), "{what}");
            assert_eq!(
                message(kind, &reply.json),
                Some("Rubberduck: why"),
                "{what}: {}",
                reply.json
            );
            assert_eq!(header(&reply, "retry-after"), None, "{what}");
            match kind {
                ProviderKind::Anthropic => {
                    assert_eq!(reply.json["type"], "error", "{what}");
                    assert!(reply.json["error"]["type"].is_string(), "{what}");
                    assert_eq!(
                        reply.json["request_id"].as_str(),
                        header(&reply, "request-id"),
                        "{what}: one request id in body and header"
                    );
                }
                ProviderKind::Bedrock => {
                    assert!(header(&reply, "x-amzn-errortype").is_some(), "{what}");
                    assert!(header(&reply, "x-amzn-requestid").is_some(), "{what}");
                }
                ProviderKind::VertexAi => {
                    assert_eq!(
                        reply.json["error"]["code"],
                        error.status().as_u16(),
                        "{what}"
                    );
                    assert!(reply.json["error"]["status"].is_string(), "{what}");
                }
                ProviderKind::Openai | ProviderKind::AzureOpenai | ProviderKind::Deepseek => {
                    for field in ["type", "param", "code"] {
                        assert!(
                            reply.json["error"].get(field).is_some(),
                            "{what}: error.{field} in {}",
                            reply.json
                        );
                    }
                }
            }
        }
    }
}

#[actix_web::test]
async fn anthropic_reports_the_reset_as_a_time_the_wait_away() {
    let before = chrono::Utc::now();
    let reply = read(
        ProviderKind::Anthropic
            .provider()
            .injected_error(StatusCode::TOO_MANY_REQUESTS, 30),
    )
    .await;
    let reset = header(&reply, "anthropic-ratelimit-requests-reset").expect("a reset header");
    let reset = chrono::DateTime::parse_from_rfc3339(reset)
        .unwrap_or_else(|e| panic!("reset {reset:?} is not RFC 3339: {e}"));
    let wait = reset.signed_duration_since(before).num_seconds();
    assert!(
        (29..=31).contains(&wait),
        "reset {reset} is {wait} s away, not 30"
    );
}

#[actix_web::test]
async fn request_ids_differ_per_answer() {
    let ids = |kind: ProviderKind, name: &'static str| async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let reply = read(
                kind.provider()
                    .injected_error(StatusCode::INTERNAL_SERVER_ERROR, 1),
            )
            .await;
            seen.push(header(&reply, name).map(str::to_owned).expect(name));
        }
        seen
    };
    for (kind, name) in [
        (ProviderKind::Openai, "x-request-id"),
        (ProviderKind::AzureOpenai, "x-request-id"),
        (ProviderKind::Anthropic, "request-id"),
        (ProviderKind::Bedrock, "x-amzn-requestid"),
    ] {
        let seen = ids(kind, name).await;
        assert_ne!(seen[0], seen[1], "{kind}: {name} {seen:?}");
    }
}

#[test]
fn resets_are_go_durations() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(59), "59s");
    assert_eq!(go_duration(360), "6m0s");
    assert_eq!(go_duration(3723), "1h2m3s");
}
