//! The HTTP client openidconnect calls the identity provider with, over awc: the app already
//! carries awc with rustls for its upstreams, so single sign-on adds no second HTTP stack.

use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};
use openidconnect::url::{Host, Url};
use openidconnect::{HttpRequest, HttpResponse};

/// Covers connecting and reading the whole answer: sign-in waits on it, startup never does.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents, key sets and token answers are a few KiB.
const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "{0} is refused: an identity provider is reached over https (plain http only on this machine)"
    )]
    Insecure(String),
    #[error("cannot build the request to {url}: {reason}")]
    Build { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Send { url: String, reason: String },
    #[error("cannot read the answer of {url}: {reason}")]
    Read { url: String, reason: String },
}

/// https anywhere; plain http only to this machine (a local provider, or a test's mock),
/// because tokens and keys must not cross a network unencrypted.
pub fn is_acceptable(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Sends one request for openidconnect (which hands over `http` 1.x types; awc speaks
/// `http` 0.2, so headers are copied by name and bytes).
pub async fn send(request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let url = request.uri().to_string();
    let build = |reason: String| HttpError::Build {
        url: url.clone(),
        reason,
    };
    let parsed = Url::parse(&url).map_err(|e| build(e.to_string()))?;
    if !is_acceptable(&parsed) {
        return Err(HttpError::Insecure(url));
    }
    // A redirect would let whoever answers steer our requests elsewhere (SSRF); providers
    // do not redirect these calls.
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(TIMEOUT)
        .finish();
    let method = awc::http::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(|e| build(e.to_string()))?;
    let mut outgoing = client.request(method, url.as_str());
    for (name, value) in request.headers() {
        let name =
            HeaderName::from_bytes(name.as_str().as_bytes()).map_err(|e| build(e.to_string()))?;
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|e| build(e.to_string()))?;
        outgoing = outgoing.append_header((name, value));
    }
    let mut response =
        outgoing
            .send_body(request.into_body())
            .await
            .map_err(|e| HttpError::Send {
                url: url.clone(),
                reason: e.to_string(),
            })?;
    let body = response
        .body()
        .limit(MAX_BODY_BYTES)
        .await
        .map_err(|e| HttpError::Read {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let mut answer = openidconnect::http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        answer = answer.header(name.as_str(), value.as_bytes());
    }
    answer.body(body.to_vec()).map_err(|e| HttpError::Read {
        url,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "https://accounts.google.com",
            "https://kc.corp.example/realms/dev",
            "http://127.0.0.1:8080/realms/dev",
            "http://localhost:8080",
            "http://[::1]:9000/",
        ] {
            assert!(is_acceptable(&Url::parse(ok).expect("url")), "{ok}");
        }
        for refused in [
            "http://kc.corp.example/realms/dev",
            "http://10.0.0.5/",
            "http://localhost.evil.example/",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                !is_acceptable(&Url::parse(refused).expect("url")),
                "{refused}"
            );
        }
    }
}
