//! The built-in provider emulator. A proxy whose upstream is `emulator` answers by itself, in
//! its provider's wire format (JSON, SSE, AWS event stream), so the whole product runs offline
//! through the official SDKs: no provider key, no network.
//!
//! Answers are derived from the request (the same prompt gets the same answer, streamed or not)
//! and paced like a model: the first token after `ttft_ms`, the rest at `tokens_per_second`.
//! Output tokens are the streamed pieces themselves (one word each), so usage numbers always
//! match what was sent; input tokens are estimated at four bytes of prompt text per token.

mod anthropic;
mod bedrock;
mod gemini;
mod openai;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use futures_util::Stream;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::{Instant, Sleep};

/// The `upstream_url` that selects the emulator.
pub const UPSTREAM: &str = "emulator";

/// How fast emulated models answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EmulatorSettings {
    /// Time to first token: a streamed answer's first event, or a whole answer's wait before
    /// the generation time.
    pub ttft_ms: u32,
    pub tokens_per_second: u32,
}

impl EmulatorSettings {
    pub const MAX_TTFT_MS: u32 = 60_000;
    pub const MAX_TOKENS_PER_SECOND: u32 = 100_000;
}

impl Default for EmulatorSettings {
    /// Roughly a small hosted model.
    fn default() -> Self {
        EmulatorSettings {
            ttft_ms: 200,
            tokens_per_second: 50,
        }
    }
}

/// An emulated answer: a head, then a body that is due after `delay` (whole answers) or paced
/// event by event (streams).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// How long a whole answer takes to generate; streams pace themselves and have none.
    pub delay: Duration,
    pub body: Body,
}

/// Where an answer comes from, and what it says.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path as the client sent it.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub settings: &'a EmulatorSettings,
}

impl Request<'_> {
    /// The body as JSON, or the message a provider gives for a malformed body.
    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(self.body)
            .map_err(|e| format!("The request body is not valid JSON: {e}"))
    }

    fn pacer(&self) -> Pacer {
        Pacer::new(self.settings)
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

pub use anthropic::answer as anthropic;
pub use bedrock::answer as bedrock;
pub use gemini::answer as gemini;
pub use openai::{Catalogue, answer as openai};

/// Why a generated answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Stop,
    /// The request's output limit cut it short.
    Length,
}

/// The deterministic answer to a prompt.
struct Generated {
    /// One output token per piece; pieces after the first start with a space.
    pieces: Vec<String>,
    input_tokens: u64,
    finish: Finish,
    /// SHA-256 of the model and prompt: seeds the words and names the answer's ids.
    digest: [u8; 32],
}

/// Filler the answers are made of after the echo of the prompt.
const WORDS: [&str; 32] = [
    "the",
    "duck",
    "listens",
    "quietly",
    "while",
    "you",
    "explain",
    "your",
    "code",
    "line",
    "by",
    "line",
    "and",
    "somewhere",
    "along",
    "the",
    "way",
    "the",
    "bug",
    "becomes",
    "obvious",
    "so",
    "keep",
    "talking",
    "because",
    "every",
    "answer",
    "here",
    "is",
    "emulated",
    "offline",
    "today",
];
/// At most this many words of the prompt are echoed back.
const ECHO_WORDS: usize = 8;

impl Generated {
    /// `texts` is every piece of prompt text (for the digest and the input count), `last_user`
    /// what the user said last (echoed), `max_tokens` the request's output limit.
    fn new(model: &str, texts: &[&str], last_user: Option<&str>, max_tokens: Option<u64>) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        for text in texts {
            hasher.update([0]);
            hasher.update(text.as_bytes());
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let input_tokens = input_tokens(texts);

        let mut seed = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let length = 12 + (splitmix(&mut seed) % 28) as usize;
        let mut pieces: Vec<String> = Vec::with_capacity(length);
        for word in ["Emulated", " answer"] {
            pieces.push(word.to_owned());
        }
        let echo: Vec<&str> = last_user
            .unwrap_or_default()
            .split_whitespace()
            .take(ECHO_WORDS)
            .collect();
        if let Some((last, rest)) = echo.split_last() {
            pieces.push(" to".to_owned());
            for (i, word) in rest.iter().enumerate() {
                pieces.push(if i == 0 {
                    format!(" “{word}")
                } else {
                    format!(" {word}")
                });
            }
            pieces.push(if rest.is_empty() {
                format!(" “{last}”:")
            } else {
                format!(" {last}”:")
            });
        } else {
            pieces.push(":".to_owned());
        }
        while pieces.len() < length {
            let word = WORDS[(splitmix(&mut seed) % WORDS.len() as u64) as usize];
            pieces.push(format!(" {word}"));
        }
        if let Some(last) = pieces.last_mut() {
            last.push('.');
        }
        let limit = max_tokens.map_or(usize::MAX, |m| {
            usize::try_from(m.max(1)).unwrap_or(usize::MAX)
        });
        let finish = if pieces.len() > limit {
            pieces.truncate(limit);
            Finish::Length
        } else {
            Finish::Stop
        };
        Generated {
            pieces,
            input_tokens,
            finish,
            digest,
        }
    }

    fn text(&self) -> String {
        self.pieces.concat()
    }

    fn output_tokens(&self) -> u64 {
        self.pieces.len() as u64
    }

    /// A stable id for this answer, like the provider's (`chatcmpl-…`, `msg_…`).
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", hex::encode(&self.digest[..12]))
    }

    /// How long generating it takes.
    fn duration(&self, settings: &EmulatorSettings) -> Duration {
        Pacer::new(settings).offset(self.output_tokens())
    }
}

/// Prompt tokens, estimated at four bytes of text each (at least one).
fn input_tokens(texts: &[&str]) -> u64 {
    texts
        .iter()
        .map(|t| t.len().div_ceil(4) as u64)
        .sum::<u64>()
        .max(1)
}

/// SplitMix64: a tiny, well-distributed generator; plenty for picking filler words.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The text of a chat message: a string `content`, or the first text block of a `content` or
/// `parts` list (OpenAI, Anthropic, Converse, Gemini).
fn message_text(message: &Value) -> Option<&str> {
    let content = message.get("content").or_else(|| message.get("parts"))?;
    match content {
        Value::String(text) => Some(text),
        Value::Array(blocks) => blocks
            .iter()
            .find_map(|block| block.get("text").and_then(Value::as_str)),
        _ => None,
    }
}

/// The last message from the user in a list of messages (roles `user`, or none in Gemini).
fn last_user_text(messages: Option<&Value>) -> Option<&str> {
    messages?
        .as_array()?
        .iter()
        .rev()
        .filter(|m| {
            m.get("role")
                .and_then(Value::as_str)
                .is_none_or(|r| r == "user")
        })
        .find_map(message_text)
}

/// Every piece of text a prompt holds, however nested (messages, parts, system prompts).
fn prompt_texts(json: &Value) -> Vec<&str> {
    const TEXT_FIELDS: [&str; 8] = [
        "text",
        "content",
        "input",
        "prompt",
        "inputText",
        "system",
        "instructions",
        "parts",
    ];
    fn walk<'a>(value: &'a Value, is_text: bool, out: &mut Vec<&'a str>) {
        match value {
            Value::String(text) if is_text => out.push(text),
            Value::Array(items) => items.iter().for_each(|item| walk(item, is_text, out)),
            Value::Object(fields) => {
                for (key, value) in fields {
                    walk(value, TEXT_FIELDS.contains(&key.as_str()), out);
                }
            }
            _ => {}
        }
    }
    let mut texts = Vec::new();
    walk(json, false, &mut texts);
    texts
}

/// A number the request sets, as u64.
fn number_at(json: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(json, |value, key| value.get(key))
        .and_then(Value::as_u64)
}

/// Times a stream's events: the first at `ttft`, each later one after the tokens before it.
struct Pacer {
    ttft: Duration,
    tokens_per_second: u64,
    tokens_sent: u64,
    events: Vec<(Duration, Bytes)>,
}

impl Pacer {
    fn new(settings: &EmulatorSettings) -> Self {
        Pacer {
            ttft: Duration::from_millis(settings.ttft_ms.into()),
            tokens_per_second: u64::from(settings.tokens_per_second.max(1)),
            tokens_sent: 0,
            events: Vec::new(),
        }
    }

    /// When the event after `tokens` tokens is due.
    fn offset(&self, tokens: u64) -> Duration {
        self.ttft + Duration::from_micros(tokens.saturating_mul(1_000_000) / self.tokens_per_second)
    }

    /// An event carrying `tokens` output tokens (0 for bookkeeping events).
    fn push(&mut self, event: impl Into<Bytes>, tokens: u64) {
        self.events
            .push((self.offset(self.tokens_sent), event.into()));
        self.tokens_sent += tokens;
    }

    fn into_body(self) -> Body {
        Body::Paced(Paced {
            start: Instant::now(),
            events: self.events.into_iter(),
            next: None,
            timer: None,
        })
    }
}

/// An emulated response body, as a stream of chunks like an upstream's.
pub enum Body {
    Whole(Option<Bytes>),
    Paced(Paced),
}

impl Body {
    /// The length of a whole body, for `Content-Length`.
    pub fn length(&self) -> Option<u64> {
        match self {
            Body::Whole(bytes) => bytes.as_ref().map(|b| b.len() as u64),
            Body::Paced(_) => None,
        }
    }
}

/// A stream whose events are released at their due time, never earlier and never buffered.
pub struct Paced {
    start: Instant,
    events: std::vec::IntoIter<(Duration, Bytes)>,
    next: Option<(Duration, Bytes)>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Stream for Body {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let paced = match self.get_mut() {
            Body::Whole(bytes) => return Poll::Ready(bytes.take().map(Ok)),
            Body::Paced(paced) => paced,
        };
        if paced.next.is_none() {
            paced.next = paced.events.next();
        }
        let Some((due, _)) = &paced.next else {
            return Poll::Ready(None);
        };
        let deadline = paced.start + *due;
        if Instant::now() < deadline {
            let timer = match &mut paced.timer {
                Some(timer) => {
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    timer
                }
                None => paced
                    .timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(paced.next.take().map(|(_, event)| Ok(event)))
    }
}

/// A response header, left out when its value cannot be one.
type Extra = Option<(HeaderName, HeaderValue)>;

fn header(name: &'static str, value: &str) -> Extra {
    Some((
        HeaderName::from_static(name),
        HeaderValue::from_str(value).ok()?,
    ))
}

/// A reply with `content_type` and extra headers.
fn reply(
    status: StatusCode,
    content_type: &'static str,
    extra: impl IntoIterator<Item = Extra>,
    delay: Duration,
    body: Body,
) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in extra.into_iter().flatten() {
        headers.insert(name, value);
    }
    Reply {
        status,
        headers,
        delay,
        body,
    }
}

/// A whole JSON answer, due after `delay`.
fn json_reply(
    status: StatusCode,
    json: &Value,
    extra: impl IntoIterator<Item = Extra>,
    delay: Duration,
) -> Reply {
    let bytes = serde_json::to_vec(json).unwrap_or_default();
    reply(
        status,
        "application/json",
        extra,
        delay,
        Body::Whole(Some(Bytes::from(bytes))),
    )
}

/// One server-sent event, with its `event:` name when the API names its events.
fn sse_event(name: Option<&str>, data: &Value) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn settings(ttft_ms: u32, tokens_per_second: u32) -> EmulatorSettings {
        EmulatorSettings {
            ttft_ms,
            tokens_per_second,
        }
    }

    #[test]
    fn answers_are_deterministic_and_echo_the_prompt() {
        let a = Generated::new(
            "m",
            &["Say hello to the duck"],
            Some("Say hello to the duck"),
            None,
        );
        let b = Generated::new(
            "m",
            &["Say hello to the duck"],
            Some("Say hello to the duck"),
            None,
        );
        assert_eq!(a.text(), b.text());
        assert!(a.text().contains("“Say hello to the duck”"), "{}", a.text());
        let other = Generated::new("m", &["Something else"], Some("Something else"), None);
        assert_ne!(a.text(), other.text());
        assert_eq!(a.input_tokens, 6);
        assert_eq!(a.finish, Finish::Stop);
    }

    #[test]
    fn output_limits_cut_the_answer() {
        let cut = Generated::new("m", &["hi"], Some("hi"), Some(3));
        assert_eq!(cut.output_tokens(), 3);
        assert_eq!(cut.finish, Finish::Length);
    }

    #[test]
    fn pacer_spaces_events_by_tokens() {
        let mut pacer = Pacer::new(&settings(100, 10));
        pacer.push("a", 0);
        pacer.push("b", 1);
        pacer.push("c", 2);
        pacer.push("d", 0);
        let due: Vec<u128> = pacer.events.iter().map(|(d, _)| d.as_millis()).collect();
        assert_eq!(due, [100, 100, 200, 400]);
    }

    #[actix_web::test]
    async fn paced_streams_release_every_event_in_order() {
        let mut pacer = Pacer::new(&settings(0, 1000));
        for piece in ["one", "two", "three"] {
            pacer.push(piece, 1);
        }
        let chunks: Vec<Bytes> = pacer
            .into_body()
            .map(|chunk| chunk.unwrap_or_default())
            .collect()
            .await;
        assert_eq!(chunks, ["one", "two", "three"]);
    }
}
