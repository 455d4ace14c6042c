//! The Bedrock runtime: `invoke` with each model family's own body, Converse, and their
//! streams in AWS event-stream framing.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine;
use serde_json::{Value, json};

use super::{
    Extra, Finish, Generated, Reply, Request, anthropic, header, json_reply, last_user_text,
    number_at, prompt_texts, reply,
};

const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// How a model's `invoke` body looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Claude: the Anthropic Messages body.
    Anthropic,
    /// Nova and other Converse-like bodies (`messages` with content blocks).
    Nova,
    /// Titan Text: `inputText` in, `results` out.
    Titan,
    /// Llama and other prompt-completion bodies: `prompt` in, `generation` out.
    Llama,
}

fn family(model: &str, json: &Value) -> Family {
    // ARNs and inference profiles (`us.anthropic.…`) end with the model id.
    let id = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    if id.contains("anthropic.") || json.get("anthropic_version").is_some() {
        Family::Anthropic
    } else if id.contains("amazon.titan") || json.get("inputText").is_some() {
        Family::Titan
    } else if id.contains("meta.") || json.get("prompt").is_some() {
        Family::Llama
    } else {
        Family::Nova
    }
}

pub fn answer(request: &Request<'_>) -> Reply {
    let Some((model, action)) = request
        .path
        .strip_prefix("/model/")
        .and_then(|rest| rest.rsplit_once('/'))
    else {
        return not_found(request);
    };
    if !matches!(
        action,
        "invoke" | "invoke-with-response-stream" | "converse" | "converse-stream"
    ) {
        return not_found(request);
    }
    let model = percent_encoding::percent_decode_str(model).decode_utf8_lossy();
    let json = match request.json() {
        Ok(json) => json,
        Err(message) => return error(StatusCode::BAD_REQUEST, "ValidationException", &message),
    };
    let stream = action.ends_with("stream");
    if action.starts_with("converse") {
        return converse(request, &json, &model, stream);
    }
    let family = family(&model, &json);
    let generated = match family {
        Family::Anthropic => anthropic::generate(&json, &model),
        Family::Nova => Generated::new(
            &model,
            &prompt_texts(&json),
            last_user_text(json.get("messages")),
            number_at(&json, &["inferenceConfig", "maxTokens"])
                .or_else(|| number_at(&json, &["inferenceConfig", "max_new_tokens"])),
        ),
        Family::Titan => Generated::new(
            &model,
            &prompt_texts(&json),
            json.get("inputText").and_then(Value::as_str),
            number_at(&json, &["textGenerationConfig", "maxTokenCount"]),
        ),
        Family::Llama => Generated::new(
            &model,
            &prompt_texts(&json),
            json.get("prompt").and_then(Value::as_str),
            number_at(&json, &["max_gen_len"]).or_else(|| number_at(&json, &["max_tokens"])),
        ),
    };
    let duration = generated.duration(request.settings);
    let metrics = json!({
        "inputTokenCount": generated.input_tokens,
        "outputTokenCount": generated.output_tokens(),
        "invocationLatency": duration.as_millis() as u64,
        "firstByteLatency": request.settings.ttft_ms,
    });
    if !stream {
        let body = match family {
            Family::Anthropic => anthropic::message(&generated, &model),
            Family::Nova => converse_json(&generated, duration),
            Family::Titan => json!({
                "inputTextTokenCount": generated.input_tokens,
                "results": [{
                    "tokenCount": generated.output_tokens(), "outputText": generated.text(),
                    "completionReason": match generated.finish { Finish::Stop => "FINISH", Finish::Length => "LENGTH" }
                }]
            }),
            Family::Llama => json!({
                "generation": generated.text(),
                "prompt_token_count": generated.input_tokens,
                "generation_token_count": generated.output_tokens(),
                "stop_reason": llama_stop(&generated)
            }),
        };
        let mut extra = amz_headers(&generated).to_vec();
        extra.extend([
            header(
                "x-amzn-bedrock-input-token-count",
                &generated.input_tokens.to_string(),
            ),
            header(
                "x-amzn-bedrock-output-token-count",
                &generated.output_tokens().to_string(),
            ),
            header(
                "x-amzn-bedrock-invocation-latency",
                &duration.as_millis().to_string(),
            ),
        ]);
        return json_reply(StatusCode::OK, &body, extra, duration);
    }
    // Each chunk wraps one of the model's own stream events; the last also carries Bedrock's
    // invocation metrics.
    let mut events: Vec<(Value, u64)> = match family {
        Family::Anthropic => anthropic::events(&generated, &model),
        Family::Nova => converse_events(&generated, duration)
            .into_iter()
            .map(|(kind, payload, tokens)| (json!({ kind: payload }), tokens))
            .collect(),
        Family::Titan => {
            let mut sent = 0;
            generated
                .pieces
                .iter()
                .enumerate()
                .map(|(i, piece)| {
                    sent += 1;
                    let last = i + 1 == generated.pieces.len();
                    let reason = match (last, generated.finish) {
                        (false, _) => Value::Null,
                        (true, Finish::Stop) => json!("FINISH"),
                        (true, Finish::Length) => json!("LENGTH"),
                    };
                    let mut chunk = json!({
                        "outputText": piece, "index": 0,
                        "totalOutputTextTokenCount": sent, "completionReason": reason
                    });
                    if i == 0 {
                        chunk["inputTextTokenCount"] = json!(generated.input_tokens);
                    }
                    (chunk, 1)
                })
                .collect()
        }
        Family::Llama => {
            let mut sent = 0;
            generated
                .pieces
                .iter()
                .enumerate()
                .map(|(i, piece)| {
                    sent += 1;
                    let last = i + 1 == generated.pieces.len();
                    let chunk = json!({
                        "generation": piece,
                        "prompt_token_count": if i == 0 { json!(generated.input_tokens) } else { Value::Null },
                        "generation_token_count": sent,
                        "stop_reason": if last { json!(llama_stop(&generated)) } else { Value::Null }
                    });
                    (chunk, 1)
                })
                .collect()
        }
    };
    if let Some((Value::Object(last), _)) = events.last_mut() {
        last.insert("amazon-bedrock-invocationMetrics".into(), metrics);
    }
    let mut pacer = request.pacer();
    for (event, tokens) in events {
        let encoded = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        pacer.push(frame("chunk", &json!({ "bytes": encoded })), tokens);
    }
    reply(
        StatusCode::OK,
        EVENT_STREAM,
        amz_headers(&generated),
        Duration::ZERO,
        pacer.into_body(),
    )
}

fn llama_stop(generated: &Generated) -> &'static str {
    match generated.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn amz_headers(generated: &Generated) -> [Extra; 1] {
    [header("x-amzn-requestid", &request_id(generated))]
}

/// A UUID-shaped request id, as AWS sends.
fn request_id(generated: &Generated) -> String {
    let hex = hex::encode(&generated.digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn stop_reason(generated: &Generated) -> &'static str {
    match generated.finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

fn usage(generated: &Generated) -> Value {
    json!({
        "inputTokens": generated.input_tokens,
        "outputTokens": generated.output_tokens(),
        "totalTokens": generated.input_tokens + generated.output_tokens()
    })
}

fn converse_json(generated: &Generated, duration: Duration) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": generated.text()}]}},
        "stopReason": stop_reason(generated),
        "usage": usage(generated),
        "metrics": {"latencyMs": duration.as_millis() as u64}
    })
}

/// Converse stream events: (event type, payload, output tokens).
fn converse_events(generated: &Generated, duration: Duration) -> Vec<(&'static str, Value, u64)> {
    let mut events = vec![("messageStart", json!({"role": "assistant"}), 0)];
    for piece in &generated.pieces {
        events.push((
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
            1,
        ));
    }
    events.push(("contentBlockStop", json!({"contentBlockIndex": 0}), 0));
    events.push((
        "messageStop",
        json!({"stopReason": stop_reason(generated)}),
        0,
    ));
    events.push((
        "metadata",
        json!({"usage": usage(generated), "metrics": {"latencyMs": duration.as_millis() as u64}}),
        0,
    ));
    events
}

fn converse(request: &Request<'_>, json: &Value, model: &str, stream: bool) -> Reply {
    let generated = Generated::new(
        model,
        &prompt_texts(json),
        last_user_text(json.get("messages")),
        number_at(json, &["inferenceConfig", "maxTokens"]),
    );
    let duration = generated.duration(request.settings);
    if !stream {
        return json_reply(
            StatusCode::OK,
            &converse_json(&generated, duration),
            amz_headers(&generated),
            duration,
        );
    }
    let mut pacer = request.pacer();
    for (kind, payload, tokens) in converse_events(&generated, duration) {
        pacer.push(frame(kind, &payload), tokens);
    }
    reply(
        StatusCode::OK,
        EVENT_STREAM,
        amz_headers(&generated),
        Duration::ZERO,
        pacer.into_body(),
    )
}

/// One event-stream message with the headers Bedrock sets; the crate writes the CRCs.
fn frame(event_type: &'static str, payload: &Value) -> Bytes {
    let message = Message::new(payload.to_string())
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut buffer = BytesMut::new();
    match write_message_to(&message, &mut buffer) {
        Ok(()) => buffer.freeze(),
        // Only payloads over 16 MiB fail, and emulated ones are a few hundred bytes.
        Err(e) => {
            log::error!("emulator: cannot frame a Bedrock event: {e}");
            Bytes::new()
        }
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({ "message": message }),
        [header("x-amzn-errortype", kind)],
        Duration::ZERO,
    )
}

fn not_found(request: &Request<'_>) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        &format!("Unknown operation: {} {}", request.method, request.path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};

    #[test]
    fn frames_decode_with_their_event_type() {
        let mut bytes = BytesMut::from(&frame("messageStart", &json!({"role": "assistant"}))[..]);
        let mut decoder = MessageFrameDecoder::new();
        let Ok(DecodedFrame::Complete(message)) = decoder.decode_frame(&mut bytes) else {
            panic!("a complete frame");
        };
        let event_type = message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == ":event-type")
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_owned());
        assert_eq!(event_type.as_deref(), Some("messageStart"));
        assert_eq!(&message.payload()[..], br#"{"role":"assistant"}"#);
    }

    #[test]
    fn families_follow_the_model_id() {
        let empty = json!({});
        assert_eq!(
            family("anthropic.claude-3-haiku-20240307-v1:0", &empty),
            Family::Anthropic
        );
        assert_eq!(
            family(
                "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-3",
                &empty
            ),
            Family::Anthropic
        );
        assert_eq!(
            family("meta.llama3-8b-instruct-v1:0", &empty),
            Family::Llama
        );
        assert_eq!(
            family("amazon.titan-text-express-v1", &empty),
            Family::Titan
        );
        assert_eq!(family("amazon.nova-lite-v1:0", &empty), Family::Nova);
    }
}
