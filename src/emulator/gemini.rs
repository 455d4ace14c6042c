//! Google's Gemini wire format, on Vertex AI paths and the Gemini API's: generateContent, its
//! stream (SSE with `alt=sse`, else a JSON array), countTokens; Claude's rawPredict on Vertex.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use serde_json::{Value, json};

use super::{
    Finish, Generated, Reply, Request, anthropic, input_tokens, json_reply, last_user_text,
    number_at, prompt_texts, reply,
};

pub fn answer(request: &Request<'_>) -> Reply {
    // `/v1beta1/projects/p/locations/l/publishers/google/models/m:generateContent` or
    // `/v1beta/models/m:generateContent`.
    let Some((model, method)) = request
        .path
        .rsplit_once("/models/")
        .and_then(|(_, rest)| rest.split_once(':'))
        .filter(|_| request.method == Method::POST)
    else {
        return not_found(request);
    };
    let known = matches!(
        method,
        "generateContent"
            | "streamGenerateContent"
            | "countTokens"
            | "rawPredict"
            | "streamRawPredict"
    );
    if !known {
        return not_found(request);
    }
    let json = match request.json() {
        Ok(json) => json,
        Err(message) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message),
    };
    match method {
        "rawPredict" => anthropic::raw_predict(request, &json, model, false),
        "streamRawPredict" => anthropic::raw_predict(request, &json, model, true),
        "countTokens" => {
            let tokens = input_tokens(&prompt_texts(&json));
            json_reply(
                StatusCode::OK,
                &json!({"totalTokens": tokens}),
                [],
                request.pacer().offset(0),
            )
        }
        "generateContent" => {
            let generated = generate(&json, model);
            let body = response(
                &generated,
                model,
                &generated.text(),
                generated.output_tokens(),
                true,
            );
            json_reply(
                StatusCode::OK,
                &body,
                [],
                generated.duration(request.settings),
            )
        }
        _ => stream(request, &json, model),
    }
}

fn generate(json: &Value, model: &str) -> Generated {
    Generated::new(
        model,
        &prompt_texts(json),
        last_user_text(json.get("contents")),
        number_at(json, &["generationConfig", "maxOutputTokens"]),
    )
}

/// One response (or stream chunk) with `text`; counts are cumulative, as Gemini's are.
fn response(generated: &Generated, model: &str, text: &str, sent: u64, last: bool) -> Value {
    let mut candidate =
        json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if last {
        candidate["finishReason"] = json!(match generated.finish {
            Finish::Stop => "STOP",
            Finish::Length => "MAX_TOKENS",
        });
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": generated.input_tokens,
            "candidatesTokenCount": sent,
            "totalTokenCount": generated.input_tokens + sent
        },
        "modelVersion": model,
        "responseId": generated.id("")
    })
}

/// `alt=sse`: server-sent events; otherwise the chunks as the elements of one JSON array,
/// still sent as they are generated.
fn stream(request: &Request<'_>, json: &Value, model: &str) -> Reply {
    let generated = generate(json, model);
    let sse = request.query_param("alt") == Some("sse");
    let mut pacer = request.pacer();
    let count = generated.pieces.len();
    for (i, piece) in generated.pieces.iter().enumerate() {
        let chunk = response(&generated, model, piece, i as u64 + 1, i + 1 == count);
        let chunk = chunk.to_string();
        let event = if sse {
            format!("data: {chunk}\r\n\r\n")
        } else if i == 0 {
            format!("[{chunk}")
        } else {
            format!(",\r\n{chunk}")
        };
        pacer.push(event, 1);
    }
    let content_type = if sse {
        "text/event-stream"
    } else {
        pacer.push(Bytes::from_static(b"]"), 0);
        "application/json; charset=UTF-8"
    };
    reply(
        StatusCode::OK,
        content_type,
        [],
        Duration::ZERO,
        pacer.into_body(),
    )
}

fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": kind}}),
        [],
        Duration::ZERO,
    )
}

fn not_found(request: &Request<'_>) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!(
            "The requested URL {} was not found on this server.",
            request.path
        ),
    )
}
