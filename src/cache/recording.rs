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

/// How many characters of a prompt a list of entries shows.
pub const PROMPT_PREVIEW_CHARS: usize = 120;

impl RecordedRequest {
    /// The start of what the request asks, for a list of entries: the last user message's text
    /// for the chat, messages, Converse and generateContent shapes (and a Responses, completions
    /// or embeddings `input`/`prompt`), else the start of the body. Whitespace is folded;
    /// `None` without a body.
    pub fn prompt(&self) -> Option<String> {
        let text = match (&self.payload.body, &self.payload.body_text) {
            (Some(json), _) => asked(json).unwrap_or_else(|| json.to_string()),
            (None, Some(text)) => text.clone(),
            (None, None) => {
                return self
                    .payload
                    .body_base64
                    .as_ref()
                    .map(|_| "(binary body)".to_owned());
            }
        };
        let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if folded.is_empty() {
            return None;
        }
        let mut chars = folded.chars();
        let mut preview: String = chars.by_ref().take(PROMPT_PREVIEW_CHARS).collect();
        if chars.next().is_some() {
            preview.push('…');
        }
        Some(preview)
    }
}

/// The last user message's text in the request shapes that carry a conversation.
fn asked(body: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let role = |message: &Value| {
        message
            .get("role")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // OpenAI chat, Anthropic messages, Bedrock Converse: `messages`; Gemini: `contents`, whose
    // role may be left out for the user.
    let turns = [("messages", "content", false), ("contents", "parts", true)];
    for (list, content, role_optional) in turns {
        if let Some(messages) = body.get(list).and_then(Value::as_array) {
            return messages
                .iter()
                .rev()
                .filter(|m| match role(m) {
                    Some(role) => role == "user",
                    None => role_optional,
                })
                .find_map(|m| m.get(content).and_then(text_of));
        }
    }
    for field in ["input", "prompt", "inputText"] {
        match body.get(field) {
            Some(Value::String(text)) => return Some(text.clone()),
            // Responses API input items, or a list of embedding inputs.
            Some(Value::Array(items)) => {
                let last_user = items
                    .iter()
                    .rev()
                    .filter(|item| role(item).as_deref() == Some("user"))
                    .find_map(|item| item.get("content").and_then(text_of));
                return last_user.or_else(|| items.first().and_then(text_of));
            }
            _ => {}
        }
    }
    None
}

/// A message's text: a string, or the text of its blocks (`{"type":"text","text"}`, Converse's
/// `{"text"}`, Gemini's parts), joined by spaces.
fn text_of(content: &serde_json::Value) -> Option<String> {
    match content {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter_map(|block| block.get("text").and_then(serde_json::Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join(" "))
        }
        _ => None,
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

    fn prompt(body: &str) -> Option<String> {
        RecordedRequest {
            payload: Payload::of(body.as_bytes()),
            ..RecordedRequest::default()
        }
        .prompt()
    }

    #[test]
    fn the_prompt_is_the_last_user_text_of_each_shape_else_the_start_of_the_body() {
        let chat = r#"{"model":"m","messages":[{"role":"system","content":"Be brief"},
            {"role":"user","content":"First"},{"role":"assistant","content":"Ok"},
            {"role":"user","content":[{"type":"text","text":"Say"},{"type":"image_url"},{"type":"text","text":"hello\n  there"}]}]}"#;
        assert_eq!(prompt(chat).as_deref(), Some("Say hello there"));
        let messages = r#"{"messages":[{"role":"user","content":"Hi Claude"},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]}]}"#;
        assert_eq!(
            prompt(messages).as_deref(),
            Some("Hi Claude"),
            "a turn without text is passed over"
        );
        let converse = r#"{"messages":[{"role":"user","content":[{"text":"Converse please"}]}]}"#;
        assert_eq!(prompt(converse).as_deref(), Some("Converse please"));
        let gemini = r#"{"contents":[{"parts":[{"text":"Gemini"}]},{"role":"model","parts":[{"text":"no"}]}]}"#;
        assert_eq!(prompt(gemini).as_deref(), Some("Gemini"));
        assert_eq!(
            prompt(r#"{"model":"m","input":"Responses"}"#).as_deref(),
            Some("Responses")
        );
        assert_eq!(
            prompt(r#"{"input":["embed me","and me"]}"#).as_deref(),
            Some("embed me")
        );
        assert_eq!(
            prompt(r#"{"model":"m"}"#).as_deref(),
            Some(r#"{"model":"m"}"#)
        );
        assert_eq!(prompt("plain text").as_deref(), Some("plain text"));
        assert_eq!(prompt(""), None);
        let long = format!(r#"{{"prompt":"{}"}}"#, "é".repeat(500));
        let preview = prompt(&long).expect("a prompt");
        assert_eq!(preview.chars().count(), PROMPT_PREVIEW_CHARS + 1);
        assert!(preview.ends_with('…'));
    }
}
