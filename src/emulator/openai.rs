//! The OpenAI wire format, also spoken by Azure OpenAI and DeepSeek: chat completions,
//! the Responses API, embeddings and the model list.

use actix_web::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    Extra, Finish, Generated, Reply, Request, header, json_reply, last_user_text, message_text,
    number_at, prompt_texts, reply, splitmix, sse_event,
};

/// `created` of every answer: fixed, so that the same request gets the same bytes.
const CREATED: u64 = 1_735_689_600;
const FINGERPRINT: &str = "fp_rubberduck";

/// The models an OpenAI-style API lists; the first answers requests that name none.
pub struct Catalogue {
    pub models: &'static [&'static str],
    pub owned_by: &'static str,
}

impl Catalogue {
    pub const OPENAI: Catalogue = Catalogue {
        models: &["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
        owned_by: "openai",
    };

    fn default_model(&self) -> &'static str {
        self.models.first().copied().unwrap_or("model")
    }

    fn model_json(&self, id: &str) -> Value {
        json!({"id": id, "object": "model", "created": CREATED, "owned_by": self.owned_by})
    }
}

/// Answers the way an OpenAI-style API with `catalogue`'s models would.
pub fn answer(request: &Request<'_>, catalogue: &Catalogue) -> Reply {
    let (deployment, path) = route(request.path);
    let default_model = deployment.unwrap_or(catalogue.default_model());
    match (request.method, path) {
        (&Method::POST, "/chat/completions" | "/responses" | "/embeddings") => {
            let json = match request.json() {
                Ok(json) => json,
                Err(message) => return error(StatusCode::BAD_REQUEST, &message, None),
            };
            let model = json
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(default_model);
            match path {
                "/chat/completions" => chat(request, &json, model),
                "/responses" => responses(request, &json, model),
                _ => embeddings(request, &json, model),
            }
        }
        (&Method::GET, "/models") => {
            let data: Vec<Value> = catalogue
                .models
                .iter()
                .map(|id| catalogue.model_json(id))
                .collect();
            json_reply(
                StatusCode::OK,
                &json!({"object": "list", "data": data}),
                [],
                request.pacer().offset(0),
            )
        }
        (&Method::GET, _) if path.starts_with("/models/") => json_reply(
            StatusCode::OK,
            &catalogue.model_json(&path["/models/".len()..]),
            [],
            request.pacer().offset(0),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({} {})", request.method, request.path),
            Some("unknown_url"),
        ),
    }
}

/// The deployment of an Azure path, and the path with `/openai/deployments/{d}`, `/openai` and
/// `/v1` taken off: every OpenAI-style SDK path lands on one name.
fn route(path: &str) -> (Option<&str>, &str) {
    let (deployment, rest) = match path.strip_prefix("/openai/deployments/") {
        Some(rest) => match rest.find('/') {
            Some(end) => (Some(&rest[..end]), &rest[end..]),
            None => (Some(rest), ""),
        },
        None => (None, path.strip_prefix("/openai").unwrap_or(path)),
    };
    let rest = match rest.strip_prefix("/v1") {
        Some(unversioned) if unversioned.is_empty() || unversioned.starts_with('/') => unversioned,
        _ => rest,
    };
    (deployment, rest)
}

/// OpenAI's error shape; `code` names the error where OpenAI does.
fn error(status: StatusCode, message: &str, code: Option<&str>) -> Reply {
    json_reply(
        status,
        &json!({"error": {
            "message": message, "type": "invalid_request_error", "param": null, "code": code
        }}),
        [],
        std::time::Duration::ZERO,
    )
}

fn request_id(generated: &Generated) -> Extra {
    header("x-request-id", &generated.id("req_"))
}

fn chat(request: &Request<'_>, json: &Value, model: &str) -> Reply {
    let texts = prompt_texts(json);
    let generated = Generated::new(
        model,
        &texts,
        last_user_text(json.get("messages")),
        number_at(json, &["max_completion_tokens"]).or_else(|| number_at(json, &["max_tokens"])),
    );
    let (input, output) = (generated.input_tokens, generated.output_tokens());
    let usage = json!({
        "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    });
    let finish_reason = match generated.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    };
    let id = generated.id("chatcmpl-");
    if json.get("stream").and_then(Value::as_bool) != Some(true) {
        let completion = json!({
            "id": id, "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": generated.text(), "refusal": null, "annotations": []},
                "logprobs": null, "finish_reason": finish_reason
            }],
            "usage": usage, "system_fingerprint": FINGERPRINT
        });
        return json_reply(
            StatusCode::OK,
            &completion,
            [request_id(&generated)],
            generated.duration(request.settings),
        );
    }
    let include_usage = json
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse_event(None, &chunk)
    };
    let mut pacer = request.pacer();
    pacer.push(
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ),
        0,
    );
    for piece in &generated.pieces {
        pacer.push(chunk(json!({"content": piece}), None), 1);
    }
    pacer.push(chunk(json!({}), Some(finish_reason)), 0);
    if include_usage {
        let last = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage
        });
        pacer.push(sse_event(None, &last), 0);
    }
    pacer.push("data: [DONE]\n\n", 0);
    reply(
        StatusCode::OK,
        "text/event-stream; charset=utf-8",
        [request_id(&generated)],
        std::time::Duration::ZERO,
        pacer.into_body(),
    )
}

/// The Responses API: `input` is a string or a list of items.
fn responses(request: &Request<'_>, json: &Value, model: &str) -> Reply {
    let texts = prompt_texts(json);
    let last_user = match json.get("input") {
        Some(Value::String(text)) => Some(text.as_str()),
        input => last_user_text(input).or_else(|| {
            // Items without a role are the user's too.
            input?.as_array()?.iter().rev().find_map(message_text)
        }),
    };
    let generated = Generated::new(
        model,
        &texts,
        last_user,
        number_at(json, &["max_output_tokens"]),
    );
    let (input, output) = (generated.input_tokens, generated.output_tokens());
    let id = generated.id("resp_");
    let item_id = generated.id("msg_");
    let text = generated.text();
    let message = |status: &str, text: Option<&str>| {
        let content = match text {
            Some(text) => {
                json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
            }
            None => json!([]),
        };
        json!({"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content})
    };
    let (status, incomplete) = match generated.finish {
        Finish::Stop => ("completed", Value::Null),
        Finish::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
    };
    let response = |status: &str, output: Value, usage: Value, incomplete: Value| {
        json!({
            "id": id, "object": "response", "created_at": CREATED, "status": status,
            "error": null, "incomplete_details": incomplete,
            "instructions": json.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": json.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
            "store": true, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": null, "metadata": {}
        })
    };
    let usage = json!({
        "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output
    });
    let done = response(
        status,
        json!([message(status, Some(&text))]),
        usage,
        incomplete,
    );
    if json.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_reply(
            StatusCode::OK,
            &done,
            [request_id(&generated)],
            generated.duration(request.settings),
        );
    }
    let started = response("in_progress", json!([]), Value::Null, Value::Null);
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let mut sequence = 0u64;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        sse_event(Some(kind), &data)
    };
    let mut pacer = request.pacer();
    pacer.push(event("response.created", json!({"response": started})), 0);
    pacer.push(
        event("response.in_progress", json!({"response": started})),
        0,
    );
    pacer.push(
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": message("in_progress", None)}),
        ),
        0,
    );
    let at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
    let with = |fields: Value| {
        let mut data = at.clone();
        if let (Some(data), Value::Object(fields)) = (data.as_object_mut(), fields) {
            data.extend(fields);
        }
        data
    };
    pacer.push(
        event(
            "response.content_part.added",
            with(json!({"part": part("")})),
        ),
        0,
    );
    for piece in &generated.pieces {
        pacer.push(
            event(
                "response.output_text.delta",
                with(json!({"delta": piece, "logprobs": []})),
            ),
            1,
        );
    }
    pacer.push(
        event(
            "response.output_text.done",
            with(json!({"text": text, "logprobs": []})),
        ),
        0,
    );
    pacer.push(
        event(
            "response.content_part.done",
            with(json!({"part": part(&text)})),
        ),
        0,
    );
    pacer.push(
        event(
            "response.output_item.done",
            json!({"output_index": 0, "item": message(status, Some(&text))}),
        ),
        0,
    );
    let last = match generated.finish {
        Finish::Stop => "response.completed",
        Finish::Length => "response.incomplete",
    };
    pacer.push(event(last, json!({"response": done})), 0);
    reply(
        StatusCode::OK,
        "text/event-stream; charset=utf-8",
        [request_id(&generated)],
        std::time::Duration::ZERO,
        pacer.into_body(),
    )
}

/// Unit vectors derived from each input, so equal inputs embed equally.
fn embeddings(request: &Request<'_>, json: &Value, model: &str) -> Reply {
    let inputs: Vec<&Value> = match json.get("input") {
        // A list of strings or of token lists is many inputs; a list of numbers is one.
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_number()) => items.iter().collect(),
        Some(input) => vec![input],
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "'input' is a required property",
                None,
            );
        }
    };
    let dimensions = number_at(json, &["dimensions"])
        .filter(|d| (1..=8192).contains(d))
        .unwrap_or(if model.contains("large") { 3072 } else { 1536 });
    let base64 = json.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            tokens += match input {
                Value::String(text) => text.len().div_ceil(4) as u64,
                Value::Array(ids) => ids.len() as u64,
                _ => 1,
            };
            let vector = unit_vector(model, input, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        }),
        [],
        request.pacer().offset(0),
    )
}

fn unit_vector(model: &str, input: &Value, dimensions: u64) -> Vec<f32> {
    let digest = Sha256::new()
        .chain_update(model.as_bytes())
        .chain_update([0])
        .chain_update(input.to_string().as_bytes())
        .finalize();
    let mut seed = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| (splitmix(&mut seed) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_path_lands_on_one_route() {
        assert_eq!(route("/v1/chat/completions"), (None, "/chat/completions"));
        assert_eq!(route("/chat/completions"), (None, "/chat/completions"));
        assert_eq!(
            route("/openai/deployments/gpt4/chat/completions"),
            (Some("gpt4"), "/chat/completions")
        );
        assert_eq!(route("/openai/v1/responses"), (None, "/responses"));
        assert_eq!(route("/v1beta/x"), (None, "/v1beta/x"));
    }

    #[test]
    fn embeddings_are_unit_length_and_stable() {
        let a = unit_vector("m", &json!("duck"), 64);
        let b = unit_vector("m", &json!("duck"), 64);
        assert_eq!(a, b);
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
}
