//! Failures of the proxy itself, answered in the provider's own error shape.

use actix_web::HttpResponse;

use actix_web::http::header::{HeaderName, HeaderValue};

use crate::providers::{Provider, ProviderError, ProxyErrorKind};
use crate::telemetry::{usd, usd_as_set};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("request body is larger than the proxy's limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {seconds} s")]
    BodyTimeout { seconds: u64 },
    #[error(
        "the proxies are already receiving {mib} MiB of request bodies, as much as they may hold; retry shortly"
    )]
    Overloaded { mib: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("cannot reach the upstream {upstream}: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("the upstream {upstream} did not answer within {seconds} s")]
    Timeout { upstream: String, seconds: u64 },
    /// With why: the nearest recorded entry and how the request differs from it.
    #[error(
        "there is no recorded answer in the cache for this request, and the proxy replays only (replay_only), so it was not sent upstream{}",
        .nearest.as_ref().map_or_else(|| "; nothing was recorded for this path and model".to_owned(), |n| format!("; {n}"))
    )]
    NotCached { nearest: Option<String> },
    #[error(
        "the daily spend cap of ${} for this proxy is reached (${} spent today, UTC); cached answers are still served",
        usd_as_set(*cap_usd),
        usd(*spent_usd)
    )]
    SpendCapReached { cap_usd: f64, spent_usd: f64 },
}

/// Tells the official SDKs (which honour it before any status) not to retry: a capped proxy
/// refuses misses until the UTC day ends.
const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

impl GatewayError {
    fn kind(&self) -> ProxyErrorKind {
        match self {
            GatewayError::BodyTooLarge { .. } => ProxyErrorKind::PayloadTooLarge,
            GatewayError::BodyTimeout { .. } => ProxyErrorKind::RequestTimeout,
            GatewayError::Overloaded { .. } => ProxyErrorKind::Overloaded,
            GatewayError::BodyRead(_) | GatewayError::BadRequest(_) => ProxyErrorKind::BadRequest,
            GatewayError::Provider(error) => error.kind(),
            GatewayError::Unreachable { .. } => ProxyErrorKind::BadGateway,
            GatewayError::Timeout { .. } => ProxyErrorKind::GatewayTimeout,
            GatewayError::NotCached { .. } => ProxyErrorKind::NotCached,
            GatewayError::SpendCapReached { .. } => ProxyErrorKind::SpendCapReached,
        }
    }

    pub fn to_response(&self, provider: &dyn Provider) -> HttpResponse {
        let mut response = provider.error_response(self.kind(), &format!("Rubberduck: {self}"));
        if let GatewayError::SpendCapReached { .. } = self {
            response
                .headers_mut()
                .insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
        }
        response
    }
}
