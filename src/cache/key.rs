//! The cache key: SHA-256 over what decides an answer, and nothing else.

use std::fmt;
use std::io::Write;

use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use sha2::{Digest, Sha256};

use crate::providers::Provider;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The parts of a request that make up its key.
pub struct KeyParts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub partition_by_credential: bool,
    /// Answered by the emulator: its answers never stand in for a real upstream's (or back)
    /// when the proxy's upstream changes.
    pub emulated: bool,
    /// Named by `X-Rubberduck-Cassette`: a partition of its own, so two tests may record
    /// different answers to the same request.
    pub cassette: Option<&'a str>,
    /// Dotted paths of body fields left out (`user`, `metadata.run_id`, `messages.0.name`).
    pub ignore_fields: &'a [String],
}

impl CacheKey {
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key as stored: 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(CacheKey(bytes))
    }

    pub fn of(provider: &dyn Provider, parts: &KeyParts<'_>) -> Self {
        let mut hasher = Sha256::new();
        // Each field ends with a NUL so that no two different requests hash the same bytes.
        for field in [
            provider.kind().id(),
            parts.method.as_str(),
            &provider.cache_path(parts.path),
        ] {
            hasher.update(field.as_bytes());
            hasher.update([0]);
        }
        for (name, value) in answer_changing_params(parts.query, provider.cache_query_params()) {
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(value.as_bytes());
            hasher.update([0]);
        }
        hasher.update([0]);
        match serde_json::from_slice::<serde_json::Value>(parts.body) {
            Ok(mut json) => {
                for path in parts.ignore_fields {
                    remove_path(&mut json, path);
                }
                hasher.update(b"json\0");
                write_canonical(&mut HashWriter(&mut hasher), &json);
            }
            Err(_) => {
                hasher.update(b"raw\0");
                hasher.update(parts.body);
            }
        }
        if parts.emulated {
            hasher.update(b"\0emulator\0");
        }
        if let Some(cassette) = parts.cassette {
            hasher.update(b"\0cassette\0");
            hasher.update(cassette.as_bytes());
            hasher.update([0]);
        }
        if parts.partition_by_credential {
            hasher.update(b"\0credential\0");
            if let Some(credential) = provider.credential_identity(parts.headers) {
                // Only a hash of the credential reaches the key.
                hasher.update(Sha256::digest(credential.as_bytes()));
            }
        }
        CacheKey(hasher.finalize().into())
    }
}

/// Removes the field a dotted path names, if the body has it; a number picks a list item.
pub fn remove_path(json: &mut serde_json::Value, path: &str) {
    let mut segments: Vec<&str> = path.split('.').collect();
    let Some(last) = segments.pop() else {
        return;
    };
    let mut at = json;
    for segment in segments {
        let next = match at {
            serde_json::Value::Object(fields) => fields.get_mut(segment),
            serde_json::Value::Array(items) => {
                segment.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            }
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        at = next;
    }
    match at {
        serde_json::Value::Object(fields) => {
            fields.shift_remove(last);
        }
        serde_json::Value::Array(items) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Selected query parameters, sorted, so their order in the URL does not matter.
pub(super) fn answer_changing_params<'a>(
    query: Option<&'a str>,
    names: &[&str],
) -> Vec<(&'a str, &'a str)> {
    let mut params: Vec<(&str, &str)> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            names.contains(&name).then_some((name, value))
        })
        .collect();
    params.sort_unstable();
    params
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// JSON with object keys sorted and no insignificant whitespace, whatever order serde_json's
/// maps keep.
fn write_canonical(out: &mut impl Write, value: &serde_json::Value) {
    use serde_json::Value;
    // Writing into a hasher cannot fail.
    let _ = match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let _ = out.write_all(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                let _ = serde_json::to_writer(&mut *out, key);
                let _ = out.write_all(b":");
                write_canonical(out, item);
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                write_canonical(out, item);
            }
            out.write_all(b"]")
        }
        scalar => serde_json::to_writer(&mut *out, scalar).map_err(std::io::Error::other),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn key(
        kind: ProviderKind,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> CacheKey {
        CacheKey::of(
            kind.provider(),
            &KeyParts {
                method,
                path,
                query,
                headers: &HeaderMap::new(),
                body: body.as_bytes(),
                partition_by_credential: false,
                emulated: false,
                cassette: None,
                ignore_fields: &[],
            },
        )
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = key(
            ProviderKind::Openai,
            &Method::POST,
            "/v1/chat/completions",
            None,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        let b = key(
            ProviderKind::Openai,
            &Method::POST,
            "/chat/completions",
            None,
            "{ \"messages\" : [ {\"content\":\"hi\", \"role\":\"user\"} ],\n \"model\":\"m\" }",
        );
        assert_eq!(a, b);
        assert_eq!(a.to_string().len(), 64);
    }

    #[test]
    fn anything_that_changes_the_answer_changes_the_key() {
        let base = key(
            ProviderKind::Openai,
            &Method::POST,
            "/v1/embeddings",
            None,
            r#"{"input":"a","model":"m"}"#,
        );
        assert_ne!(
            base,
            key(
                ProviderKind::Openai,
                &Method::POST,
                "/v1/embeddings",
                None,
                r#"{"input":"b","model":"m"}"#
            )
        );
        assert_ne!(
            base,
            key(
                ProviderKind::Openai,
                &Method::POST,
                "/v1/completions",
                None,
                r#"{"input":"a","model":"m"}"#
            )
        );
        assert_ne!(
            base,
            key(
                ProviderKind::Deepseek,
                &Method::POST,
                "/v1/embeddings",
                None,
                r#"{"input":"a","model":"m"}"#
            )
        );
        assert_ne!(
            base,
            key(
                ProviderKind::Openai,
                &Method::GET,
                "/v1/embeddings",
                None,
                r#"{"input":"a","model":"m"}"#
            )
        );
        let azure = |query| {
            key(
                ProviderKind::AzureOpenai,
                &Method::POST,
                "/openai/deployments/d/chat/completions",
                Some(query),
                "{}",
            )
        };
        assert_ne!(
            azure("api-version=2024-10-21"),
            azure("api-version=2025-01-01")
        );
        assert_eq!(
            azure("api-version=1&trace=x"),
            azure("trace=y&api-version=1"),
            "only answer-changing params count"
        );
    }

    #[test]
    fn credentials_count_only_when_partitioned() {
        let with = |token: &'static str, partition| {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static(token),
            );
            CacheKey::of(
                ProviderKind::Openai.provider(),
                &KeyParts {
                    method: &Method::POST,
                    path: "/v1/chat/completions",
                    query: None,
                    headers: &headers,
                    body: b"{}",
                    partition_by_credential: partition,
                    emulated: false,
                    cassette: None,
                    ignore_fields: &[],
                },
            )
        };
        assert_eq!(with("Bearer a", false), with("Bearer b", false));
        assert_ne!(with("Bearer a", true), with("Bearer b", true));
    }
}

#[cfg(test)]
mod ignored_fields {
    use super::*;
    use crate::providers::ProviderKind;

    fn key(body: &str, ignore_fields: &[String]) -> CacheKey {
        CacheKey::of(
            ProviderKind::Openai.provider(),
            &KeyParts {
                method: &Method::POST,
                path: "/v1/chat/completions",
                query: None,
                headers: &HeaderMap::new(),
                body: body.as_bytes(),
                partition_by_credential: false,
                emulated: false,
                cassette: None,
                ignore_fields,
            },
        )
    }

    #[test]
    fn ignored_fields_do_not_change_the_key_and_the_others_still_do() {
        let ignored = [
            "user".to_owned(),
            "metadata.run_id".to_owned(),
            "messages.0.name".to_owned(),
        ];
        let one = r#"{"model":"m","user":"a","metadata":{"run_id":"1","team":"x"},"messages":[{"role":"user","name":"n1","content":"hi"}]}"#;
        let two = r#"{"model":"m","user":"b","metadata":{"run_id":"2","team":"x"},"messages":[{"role":"user","name":"n2","content":"hi"}]}"#;
        let other = r#"{"model":"m","user":"b","metadata":{"run_id":"2","team":"y"},"messages":[{"role":"user","name":"n2","content":"hi"}]}"#;
        assert_eq!(key(one, &ignored), key(two, &ignored));
        assert_ne!(key(one, &[]), key(two, &[]), "without the list they differ");
        assert_ne!(
            key(two, &ignored),
            key(other, &ignored),
            "metadata.team still counts"
        );
        let without_user = r#"{"model":"m","metadata":{"run_id":"9","team":"x"},"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            key(one, &ignored),
            key(without_user, &ignored),
            "absent is the same as ignored"
        );
    }
}
