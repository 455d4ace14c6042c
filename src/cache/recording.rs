//! What an entry remembers beside its answer: the request it answers, the cassette it was
//! recorded under, its model and usage, and the timing of a stream's chunks. A fixture file is
//! made of this and the answer; credentials are never part of it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::key::answer_changing_params;
use crate::providers::{Provider, Usage};

/// Bytes as a reader wants to see them: JSON when they are JSON, else text, else base64.
/// Serialized as one of three fields (`body`, `body_text`, `body_base64`) of the object it is
/// flattened into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl Payload {
    pub fn of(bytes: &[u8]) -> Self {
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes)
            && !json.is_null()
        {
            return Payload {
                body: Some(json),
                ..Payload::default()
            };
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Payload {
                body_text: Some(text.to_owned()),
                ..Payload::default()
            },
            Err(_) => Payload {
                body_base64: Some(BASE64.encode(bytes)),
                ..Payload::default()
            },
        }
    }

    /// The bytes again (JSON compact, as a client parses it the same); `Err` names what is
    /// wrong.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_text, &self.body_base64) {
            (Some(json), None, None) => {
                serde_json::to_vec(json).map_err(|e| format!("body cannot be written: {e}"))
            }
            (None, Some(text), None) => Ok(text.clone().into_bytes()),
            (None, None, Some(base64)) => BASE64
                .decode(base64)
                .map_err(|e| format!("body_base64 is not base64: {e}")),
            (None, None, None) => Ok(Vec::new()),
            _ => Err("give only one of body, body_text and body_base64".into()),
        }
    }
}

/// One chunk of a recorded stream, with the time it took to arrive after the one before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedChunk {
    pub after_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl RecordedChunk {
    pub fn of(bytes: &[u8], after_ms: u64) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => RecordedChunk {
                after_ms,
                text: Some(text.to_owned()),
                base64: None,
            },
            Err(_) => RecordedChunk {
                after_ms,
                text: None,
                base64: Some(BASE64.encode(bytes)),
            },
        }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.text, &self.base64) {
            (Some(text), None) => Ok(text.clone().into_bytes()),
            (None, Some(base64)) => BASE64
                .decode(base64)
                .map_err(|e| format!("a chunk's base64 is not base64: {e}")),
            _ => Err("a chunk needs exactly one of text and base64".into()),
        }
    }
}

/// The request an answer was given to, as far as it decides the answer: no headers, so no
/// credentials; of the query only the parameters that change the answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(flatten)]
    pub payload: Payload,
}

impl RecordedRequest {
    /// The request as recorded: of the query only what changes the answer (so never a key
    /// passed in it).
    pub fn of(
        provider: &dyn Provider,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Self {
        RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: answer_changing_params(query, provider.cache_query_params())
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            payload: Payload::of(body),
        }
    }
}

/// What is kept with an entry to write it out as a fixture file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassette: Option<String>,
    pub request: RecordedRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    /// Milliseconds between a stream's chunks (the first: since the answer's head); empty for a
    /// plain answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_gaps_ms: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_json_text_and_binary_apart_and_give_the_bytes_back() {
        let json = Payload::of(br#"{"b": 1, "a": [true]}"#);
        assert_eq!(json.body, Some(serde_json::json!({"b": 1, "a": [true]})));
        assert_eq!(
            json.bytes().expect("json"),
            br#"{"b":1,"a":[true]}"#,
            "compact, in the order it came"
        );

        let text = Payload::of(b"data: hello\n\n");
        assert_eq!(text.body_text.as_deref(), Some("data: hello\n\n"));
        assert_eq!(text.bytes().expect("text"), b"data: hello\n\n");

        let binary = Payload::of(&[0, 159, 146, 150]);
        assert!(binary.body_base64.is_some());
        assert_eq!(binary.bytes().expect("binary"), [0, 159, 146, 150]);

        let both = Payload {
            body_text: Some("a".into()),
            body_base64: Some("YQ==".into()),
            ..Payload::default()
        };
        assert!(both.bytes().is_err());
    }
}
