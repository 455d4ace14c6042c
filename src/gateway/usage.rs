//! Reads token usage out of a response while it streams through, without holding it up: whole
//! JSON bodies, SSE events, and AWS event-stream frames.

use std::io::Read;

use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
use actix_web::web::{Bytes, BytesMut};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use base64::Engine;

use crate::providers::{Provider, StreamEvent, StreamMark, Usage};

/// Bodies larger than this are passed through without looking for usage in them.
const MAX_OBSERVED_JSON: usize = 8 << 20;
const MAX_SSE_EVENT: usize = 1 << 20;

enum Format {
    Json {
        body: BytesMut,
        gzip: bool,
        too_large: bool,
    },
    Sse(Box<sse_parse::SseParser>),
    AwsEventStream {
        buffer: BytesMut,
        decoder: MessageFrameDecoder,
    },
    Opaque,
}

pub struct UsageMeter {
    provider: &'static dyn Provider,
    format: Format,
    usage: Usage,
    end: StreamEnd,
}

/// Whether the stream is of a kind that ends with a closing event, and whether it came.
#[derive(Default)]
struct StreamEnd {
    expected: bool,
    seen: bool,
}

impl StreamEnd {
    fn mark(&mut self, provider: &dyn Provider, event: &StreamEvent<'_>) {
        match provider.stream_mark(event) {
            StreamMark::Opens => self.expected = true,
            StreamMark::Closes => self.seen = true,
            StreamMark::Neither => {}
        }
    }
}

impl UsageMeter {
    pub fn for_response(provider: &'static dyn Provider, headers: &HeaderMap) -> Self {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let content_type = header(CONTENT_TYPE);
        let encoding = header(CONTENT_ENCODING);
        let format = if !matches!(encoding.as_str(), "" | "identity" | "gzip") {
            Format::Opaque
        } else if content_type.starts_with("text/event-stream") {
            if encoding == "gzip" {
                Format::Opaque
            } else {
                Format::Sse(Box::new(
                    sse_parse::SseParser::new().max_buffer(MAX_SSE_EVENT),
                ))
            }
        } else if content_type.starts_with("application/vnd.amazon.eventstream") {
            Format::AwsEventStream {
                buffer: BytesMut::new(),
                decoder: MessageFrameDecoder::new(),
            }
        } else if content_type.contains("json") {
            Format::Json {
                body: BytesMut::new(),
                gzip: encoding == "gzip",
                too_large: false,
            }
        } else {
            Format::Opaque
        };
        UsageMeter {
            provider,
            format,
            usage: Usage::default(),
            end: StreamEnd::default(),
        }
    }

    /// False for a stream that says how it ends and has not: cut between two chunks, which
    /// reads like a clean end on the connection.
    pub fn is_whole(&self) -> bool {
        !self.end.expected || self.end.seen
    }

    pub fn observe(&mut self, chunk: &Bytes) {
        match &mut self.format {
            Format::Json {
                body, too_large, ..
            } => {
                if body.len() + chunk.len() > MAX_OBSERVED_JSON {
                    *too_large = true;
                    body.clear();
                } else if !*too_large {
                    body.extend_from_slice(chunk);
                }
            }
            Format::Sse(parser) => {
                parser.feed(chunk);
                while let Some(event) = parser.next_event() {
                    let json = serde_json::from_str(&event.data).ok();
                    if let Some(json) = &json {
                        self.usage.update(self.provider.usage_in(json));
                    }
                    self.end.mark(
                        self.provider,
                        &StreamEvent {
                            name: Some(event.event.as_str()),
                            data: &event.data,
                            json: json.as_ref(),
                        },
                    );
                }
            }
            Format::AwsEventStream { buffer, decoder } => {
                buffer.extend_from_slice(chunk);
                while let Ok(DecodedFrame::Complete(message)) = decoder.decode_frame(&mut *buffer) {
                    let json = event_stream_json(message.payload());
                    if let Some(json) = &json {
                        self.usage.update(self.provider.usage_in(json));
                    }
                    let name = message
                        .headers()
                        .iter()
                        .find(|h| h.name().as_str() == ":event-type")
                        .and_then(|h| h.value().as_string().ok())
                        .map(|name| name.as_str());
                    self.end.mark(
                        self.provider,
                        &StreamEvent {
                            name,
                            data: "",
                            json: json.as_ref(),
                        },
                    );
                }
            }
            Format::Opaque => {}
        }
    }

    /// The usage seen; `None` counts where the response did not say.
    pub fn finish(mut self) -> Usage {
        if let Format::Json {
            body,
            gzip,
            too_large: false,
        } = &self.format
        {
            let json = if *gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .take(MAX_OBSERVED_JSON as u64)
                    .read_to_end(&mut plain)
                    .ok()
                    .and_then(|_| serde_json::from_slice(&plain).ok())
            } else {
                serde_json::from_slice(body).ok()
            };
            if let Some(json) = json {
                self.usage.update(self.provider.usage_in(&json));
            }
        }
        self.usage
    }
}

/// An event-stream payload as JSON; `invoke-with-response-stream` wraps each chunk as
/// `{"bytes": "<base64 JSON>"}`.
fn event_stream_json(payload: &[u8]) -> Option<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match json.get("bytes").and_then(|b| b.as_str()) {
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            serde_json::from_slice(&decoded).ok()
        }
        None => Some(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;
    use actix_web::http::header::HeaderValue;

    fn meter(kind: ProviderKind, content_type: &'static str) -> UsageMeter {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        UsageMeter::for_response(kind.provider(), &headers)
    }

    #[test]
    fn openai_json_split_across_chunks() {
        let mut meter = meter(ProviderKind::Openai, "application/json");
        meter.observe(&Bytes::from_static(b"{\"usage\":{\"prompt_tokens\":12,"));
        meter.observe(&Bytes::from_static(b"\"completion_tokens\":3}}"));
        assert_eq!(meter.finish(), Usage::new(12, 3));
    }

    #[test]
    fn anthropic_stream_events() {
        let mut meter = meter(ProviderKind::Anthropic, "text/event-stream");
        meter.observe(&Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        ));
        meter.observe(&Bytes::from_static(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":"));
        meter.observe(&Bytes::from_static(
            b"15}}\n\nevent: message_stop\ndata: {}\n\n",
        ));
        assert_eq!(meter.finish(), Usage::new(25, 15));
    }

    #[test]
    fn gemini_stream_keeps_the_last_counts() {
        let mut meter = meter(ProviderKind::VertexAi, "text/event-stream");
        meter.observe(&Bytes::from_static(
            b"data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1}}\n\n",
        ));
        meter.observe(&Bytes::from_static(
            b"data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":9}}\n\n",
        ));
        assert_eq!(meter.finish(), Usage::new(4, 9));
    }

    #[test]
    fn a_stream_that_says_how_it_ends_is_whole_only_once_it_has() {
        let cases: [(ProviderKind, &[&[u8]], bool); 8] = [
            (
                ProviderKind::Openai,
                &[b"data: {\"object\":\"chat.completion.chunk\"}\n\n"],
                false,
            ),
            (
                ProviderKind::Openai,
                &[
                    b"data: {\"object\":\"chat.completion.chunk\"}\n\n",
                    b"data: [DONE]\n\n",
                ],
                true,
            ),
            (
                ProviderKind::Openai,
                &[b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n"],
                false,
            ),
            (
                ProviderKind::Anthropic,
                &[b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n"],
                false,
            ),
            (
                ProviderKind::Anthropic,
                &[
                    b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
                    b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                ],
                true,
            ),
            (
                ProviderKind::VertexAi,
                &[b"data: {\"candidates\":[{\"content\":{}}]}\n\n"],
                false,
            ),
            (
                ProviderKind::VertexAi,
                &[b"data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n"],
                true,
            ),
            // A stream of a shape no provider knows says nothing about its end.
            (ProviderKind::Openai, &[b"data: {\"n\":1}\n\n"], true),
        ];
        for (kind, chunks, whole) in cases {
            let mut meter = meter(kind, "text/event-stream");
            for chunk in chunks {
                meter.observe(&Bytes::from_static(chunk));
            }
            assert_eq!(meter.is_whole(), whole, "{kind:?} {chunks:?}");
        }
    }

    #[test]
    fn unknown_bodies_have_no_usage() {
        let mut meter = meter(ProviderKind::Openai, "text/plain");
        meter.observe(&Bytes::from_static(b"{\"usage\":{\"prompt_tokens\":1}}"));
        assert_eq!(meter.finish(), Usage::default());
    }
}
