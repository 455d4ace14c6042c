//! Which headers cross the proxy.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers addressed to the proxy itself (cassette, cache and fault control).
const RUBBERDUCK_PREFIX: &str = "x-rubberduck-";

/// Headers of the client's request that must not be copied upstream: hop-by-hop ones, those
/// named in `Connection`, those addressed to the proxy (`X-Rubberduck-*`), and those the proxy
/// sets itself (`Host`, `Content-Length`).
pub fn forwardable(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    let named_in_connection = connection_tokens(headers);
    headers.iter().filter(move |(name, _)| {
        let name = name.as_str();
        !HOP_BY_HOP.contains(&name)
            && name != "host"
            && name != "content-length"
            && !name.starts_with(RUBBERDUCK_PREFIX)
            && !named_in_connection.iter().any(|token| token == name)
    })
}

/// Whether an upstream response header goes back to the client. `Content-Length` is dropped
/// because actix sets it from the body it streams.
pub fn returnable(name: &HeaderName, connection_tokens: &[String]) -> bool {
    let name = name.as_str();
    !HOP_BY_HOP.contains(&name)
        && name != "content-length"
        && !connection_tokens.iter().any(|token| token == name)
}

pub fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("host", "proxy:8001"),
            ("content-length", "2"),
            ("authorization", "Bearer sk"),
            ("openai-organization", "org"),
            ("x-rubberduck-cassette", "test_a"),
            ("x-rubberduck-cache", "refresh"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let kept: Vec<&str> = forwardable(&headers).map(|(n, _)| n.as_str()).collect();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains(&"authorization") && kept.contains(&"openai-organization"));
    }
}
