//! The Anthropic Messages wire format, also what Claude models speak through Bedrock's invoke
//! and Vertex's rawPredict.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    Finish, Generated, Reply, Request, header, input_tokens, json_reply, last_user_text, number_at,
    prompt_texts, reply, sse_event,
};

pub fn answer(request: &Request<'_>) -> Reply {
    let path = match request.path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => rest,
        _ => request.path,
    };
    match (request.method, path) {
        (&Method::POST, "/messages" | "/messages/count_tokens") => {
            let json = match request.json() {
                Ok(json) => json,
                Err(message) => {
                    return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
                }
            };
            let Some(model) = json.get("model").and_then(Value::as_str) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "model: Field required",
                );
            };
            if path == "/messages/count_tokens" {
                let tokens = input_tokens(&prompt_texts(&json));
                return json_reply(
                    StatusCode::OK,
                    &json!({"input_tokens": tokens}),
                    [],
                    request.pacer().offset(0),
                );
            }
            if json.get("max_tokens").is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "max_tokens: Field required",
                );
            }
            messages(request, &json, model)
        }
        (&Method::GET, "/models") => {
            let data: Vec<Value> = MODELS
                .iter()
                .map(|(id, name)| model_json(id, name))
                .collect();
            json_reply(
                StatusCode::OK,
                &json!({
                    "data": data, "has_more": false,
                    "first_id": MODELS[0].0, "last_id": MODELS[MODELS.len() - 1].0
                }),
                [],
                request.pacer().offset(0),
            )
        }
        (&Method::GET, _) if path.starts_with("/models/") => {
            let id = &path["/models/".len()..];
            json_reply(
                StatusCode::OK,
                &model_json(id, id),
                [],
                request.pacer().offset(0),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("Not found: {} {}", request.method, request.path),
        ),
    }
}

const MODELS: [(&str, &str); 3] = [
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-opus-4-1", "Claude Opus 4.1"),
];

fn model_json(id: &str, name: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"})
}

fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
        [],
        Duration::ZERO,
    )
}

/// The answer to a Messages request, as Anthropic's API sends it.
fn messages(request: &Request<'_>, json: &Value, model: &str) -> Reply {
    let generated = generate(json, model);
    let request_id = header("request-id", &generated.id("req_"));
    if json.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_reply(
            StatusCode::OK,
            &message(&generated, model),
            [request_id],
            generated.duration(request.settings),
        );
    }
    let mut pacer = request.pacer();
    for (event, tokens) in events(&generated, model) {
        let name = event.get("type").and_then(Value::as_str).unwrap_or("event");
        pacer.push(sse_event(Some(name), &event), tokens);
    }
    reply(
        StatusCode::OK,
        "text/event-stream; charset=utf-8",
        [request_id],
        Duration::ZERO,
        pacer.into_body(),
    )
}

/// The answer to a Messages-shaped request body.
pub(super) fn generate(json: &Value, model: &str) -> Generated {
    Generated::new(
        model,
        &prompt_texts(json),
        last_user_text(json.get("messages")),
        number_at(json, &["max_tokens"]),
    )
}

fn stop_reason(generated: &Generated) -> &'static str {
    match generated.finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

/// A whole message.
pub(super) fn message(generated: &Generated, model: &str) -> Value {
    json!({
        "id": generated.id("msg_"), "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": generated.text()}],
        "stop_reason": stop_reason(generated), "stop_sequence": null,
        "usage": {
            "input_tokens": generated.input_tokens, "output_tokens": generated.output_tokens(),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0
        }
    })
}

/// A message's stream events, each with the output tokens it carries.
pub(super) fn events(generated: &Generated, model: &str) -> Vec<(Value, u64)> {
    let mut start = message(generated, model);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut events = vec![
        (json!({"type": "message_start", "message": start}), 0),
        (
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            0,
        ),
        (json!({"type": "ping"}), 0),
    ];
    for piece in &generated.pieces {
        events.push((
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            1,
        ));
    }
    events.push((json!({"type": "content_block_stop", "index": 0}), 0));
    events.push((
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(generated), "stop_sequence": null},
            "usage": {"output_tokens": generated.output_tokens()}
        }),
        0,
    ));
    events.push((json!({"type": "message_stop"}), 0));
    events
}

/// Vertex's rawPredict and streamRawPredict: the Messages API with the model in the path.
pub(super) fn raw_predict(request: &Request<'_>, json: &Value, model: &str, stream: bool) -> Reply {
    let mut json = json.clone();
    if stream {
        json["stream"] = json!(true);
    }
    messages(request, &json, model)
}
