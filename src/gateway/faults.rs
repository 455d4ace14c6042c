//! Carrying out the failure decisions on a request: answers in the provider's shape, marked
//! `X-Rubberduck-Injected`, and waits that end early when the client leaves.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::LiveProxy;
use super::connection::client_gone;
use crate::faults::{Injection, TimeoutMode};
use crate::providers::Provider;

pub const INJECTED_HEADER: &str = "x-rubberduck-injected";

fn injected(
    provider: &dyn Provider,
    injection: Injection,
    status: StatusCode,
    retry_after: u64,
) -> HttpResponse {
    let mut response = provider.injected_error(status, retry_after);
    if let Ok(value) = injection.kind().parse() {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(INJECTED_HEADER),
            value,
        );
    }
    response
}

/// Waits `duration`; false when the client left first.
pub async fn wait(req: &HttpRequest, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = client_gone(req) => false,
    }
}

/// The answer for an injected failure, after any wait it involves.
pub async fn inject(
    req: &HttpRequest,
    live: &LiveProxy,
    provider: &dyn Provider,
    injection: Injection,
) -> HttpResponse {
    match injection {
        Injection::IpBlocked => injected(provider, injection, StatusCode::FORBIDDEN, 0),
        Injection::RateLimited {
            retry_after_seconds,
        } => injected(
            provider,
            injection,
            StatusCode::TOO_MANY_REQUESTS,
            retry_after_seconds,
        ),
        Injection::Error {
            status,
            retry_after_seconds,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            injected(provider, injection, status, retry_after_seconds)
        }
        Injection::Timeout {
            mode: TimeoutMode::Hang,
            ..
        } => {
            let stopping = live.stopping.notified();
            tokio::pin!(stopping);
            stopping.as_mut().enable();
            tokio::select! {
                () = client_gone(req) => {}
                () = stopping => {}
            }
            injected(provider, injection, StatusCode::GATEWAY_TIMEOUT, 0)
        }
        Injection::Timeout { wait: duration, .. } => {
            wait(req, duration).await;
            injected(provider, injection, StatusCode::GATEWAY_TIMEOUT, 0)
        }
    }
}
