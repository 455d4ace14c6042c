//! Everything provider-specific sits behind [`Provider`]; the rest of the product never matches
//! on provider names. Providers are pure protocol knowledge: they know the wire formats, paths,
//! credentials and error shapes of an API, and nothing of the gateway that calls them. Adding a
//! provider is one file here plus its line in [`ProviderKind`].

mod anthropic;
mod azure_openai;
mod bedrock;
mod deepseek;
#[cfg(test)]
mod error_tests;
mod openai;
mod snippets;
mod vertex_ai;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use actix_web::HttpResponse;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use crate::emulator;

pub use snippets::Snippets;

/// The providers a proxy can front. The serialized form is the id used in the API and the DB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    AzureOpenai,
    Bedrock,
    VertexAi,
    Deepseek,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::AzureOpenai,
        ProviderKind::Bedrock,
        ProviderKind::VertexAi,
        ProviderKind::Deepseek,
    ];

    pub fn id(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::AzureOpenai => "azure_openai",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::VertexAi => "vertex_ai",
            ProviderKind::Deepseek => "deepseek",
        }
    }

    pub fn provider(self) -> &'static dyn Provider {
        match self {
            ProviderKind::Openai => &openai::OpenAi,
            ProviderKind::Anthropic => &anthropic::Anthropic,
            ProviderKind::AzureOpenai => &azure_openai::AzureOpenAi,
            ProviderKind::Bedrock => &bedrock::Bedrock,
            ProviderKind::VertexAi => &vertex_ai::VertexAi,
            ProviderKind::Deepseek => &deepseek::DeepSeek,
        }
    }

    pub fn name(self) -> &'static str {
        self.provider().display_name()
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown provider “{0}”; expected one of {ids}",
    ids = ProviderKind::ALL.map(ProviderKind::id).join(", ")
)]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.id() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

/// Why a provider cannot prepare a request for its upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The request or the proxy's settings do not say enough (no region, no upstream URL).
    #[error("{0}")]
    BadRequest(String),
    /// No usable credentials for the upstream.
    #[error("{0}")]
    Credentials(String),
}

impl ProviderError {
    pub fn kind(&self) -> ProxyErrorKind {
        match self {
            ProviderError::BadRequest(_) => ProxyErrorKind::BadRequest,
            ProviderError::Credentials(_) => ProxyErrorKind::Unauthorized,
        }
    }
}

/// What a provider reads of a proxy's configuration to reach its upstream; the gateway builds
/// it for each request.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTarget<'a> {
    /// For messages that name the proxy.
    pub proxy_name: &'a str,
    /// The proxy's upstream URL, when it overrides the provider's default.
    pub base_url: Option<&'a str>,
    /// The AWS region the proxy is set to (Bedrock).
    pub region: Option<&'a str>,
    /// The service-account key file the proxy mints tokens with (Vertex AI).
    pub key_file: Option<&'a str>,
    /// A member's proxy: the server's own credentials (its AWS identity, tokens minted with a
    /// key file) go only to the provider's own endpoints, never to an upstream a member chose.
    pub restricted: bool,
}

impl<'a> UpstreamTarget<'a> {
    /// The override, else the provider's `default`.
    pub(crate) fn base_or(&self, default: Option<&'a str>) -> Result<&'a str, ProviderError> {
        self.base_url.or(default).ok_or_else(|| {
            ProviderError::BadRequest(format!(
                "proxy “{}” has no upstream URL configured",
                self.proxy_name
            ))
        })
    }
}

/// Why the proxy itself (not the upstream) answers with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyErrorKind {
    BadRequest,
    Unauthorized,
    BadGateway,
    GatewayTimeout,
    PayloadTooLarge,
    /// The client took too long to send its request.
    RequestTimeout,
    /// The proxy holds as much in-flight request data as it may.
    Overloaded,
    /// A replay-only cache has no answer for the request.
    NotCached,
    /// The proxy's daily spend cap is reached: misses are refused until the next UTC day.
    SpendCapReached,
}

impl ProxyErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ProxyErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ProxyErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ProxyErrorKind::NotCached => StatusCode::BAD_REQUEST,
            ProxyErrorKind::SpendCapReached => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// One chat turn as a load test asks it of a proxy.
#[derive(Debug, Clone, Copy)]
pub struct ChatCall<'a> {
    pub model: &'a str,
    pub stream: bool,
    /// The project and location, for APIs whose paths name them (Vertex AI).
    pub project: &'a str,
    pub location: &'a str,
}

/// The most tokens a load test's chat request asks for, where the API wants a limit.
pub(crate) const SAMPLE_MAX_TOKENS: u32 = 256;

/// Characters boto3 leaves alone in a Bedrock model id; it encodes the rest (`:` becomes `%3A`).
/// Used for every name put into a path, so that any model name gives a valid request.
const PATH_NAME: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `name` as a path segment.
pub(crate) fn path_name(name: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(name, PATH_NAME)
}

/// How an SDK user points their client at a proxy.
pub struct SdkHint {
    /// The client setting that takes the proxy URL (`base_url`, `endpoint_url`, …).
    pub setting: &'static str,
    /// Path appended to the proxy's address, e.g. `/v1` for OpenAI-style SDKs.
    pub path: &'static str,
}

/// Tokens a response reports; `None` where it says nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl Usage {
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens: Some(input_tokens),
            output_tokens: Some(output_tokens),
        }
    }

    /// Later reports win: streams repeat or complete their counts as they go.
    pub fn update(&mut self, later: Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
    }
}

/// The first number found at any of `paths` (each a list of object keys).
pub(crate) fn count_at(json: &serde_json::Value, paths: &[&[&str]]) -> Option<u64> {
    paths.iter().find_map(|path| {
        path.iter()
            .try_fold(json, |value, key| value.get(key))
            .and_then(serde_json::Value::as_u64)
    })
}

/// Anthropic's message shape, also served through Bedrock and Vertex: `usage` at the top, or
/// inside `message` on a stream's `message_start`.
pub(crate) fn anthropic_usage(json: &serde_json::Value) -> Usage {
    Usage {
        input_tokens: count_at(
            json,
            &[
                &["usage", "input_tokens"],
                &["message", "usage", "input_tokens"],
            ],
        ),
        output_tokens: count_at(
            json,
            &[
                &["usage", "output_tokens"],
                &["message", "usage", "output_tokens"],
            ],
        ),
    }
}

/// Chat completions and embeddings (`prompt_tokens`), and the Responses API (`input_tokens`,
/// also inside `response` on its stream's `response.completed`).
pub(crate) fn openai_usage(json: &serde_json::Value) -> Usage {
    Usage {
        input_tokens: count_at(
            json,
            &[
                &["usage", "prompt_tokens"],
                &["usage", "input_tokens"],
                &["response", "usage", "input_tokens"],
            ],
        ),
        output_tokens: count_at(
            json,
            &[
                &["usage", "completion_tokens"],
                &["usage", "output_tokens"],
                &["response", "usage", "output_tokens"],
            ],
        ),
    }
}

/// A request as it will go upstream: the provider may rewrite headers (credentials) before it
/// is sent.
pub struct UpstreamRequest {
    pub method: Method,
    /// Absolute URL; path and query exactly as they go on the wire.
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What one running proxy server holds for its provider: credentials loaded at start, token
/// caches.
#[derive(Default)]
pub struct ProviderState {
    pub aws: bedrock::AwsDefaults,
    pub vertex_tokens: vertex_ai::TokenSource,
}

impl ProviderState {
    /// Loads what the provider needs from the process environment; called when a proxy starts,
    /// never per request.
    pub fn load(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Bedrock => ProviderState {
                aws: bedrock::AwsDefaults::from_environment(),
                ..ProviderState::default()
            },
            _ => ProviderState::default(),
        }
    }
}

pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    fn display_name(&self) -> &'static str;

    /// The upstream base URL used when the proxy has no override; `None` when it depends on the
    /// user's own resource (Azure).
    fn default_upstream(&self) -> Option<&'static str>;

    fn sdk_hint(&self) -> SdkHint;

    /// Programs (Python, TypeScript, curl) that call a proxy at `base_url` (`http://host:port`)
    /// with this provider's official SDKs, changing only the base URL.
    fn snippets(&self, base_url: &str) -> Snippets;

    /// Why a proxy of this provider cannot go without an upstream URL (the user's own
    /// resource); `None` when the provider has a default upstream.
    fn upstream_url_required(&self) -> Option<&'static str> {
        None
    }

    /// Whether a proxy may name a service-account key file to mint upstream tokens with.
    fn takes_key_file(&self) -> bool {
        false
    }

    /// The absolute upstream URL for an incoming path and raw query string.
    fn upstream_url(
        &self,
        target: &UpstreamTarget<'_>,
        state: &ProviderState,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<String, ProviderError> {
        let _ = (state, headers);
        Ok(join_url(
            target.base_or(self.default_upstream())?,
            path,
            query,
        ))
    }

    /// Sets the upstream credentials: passthrough by default; Bedrock re-signs, Vertex may mint
    /// a token.
    fn authorize<'a>(
        &'a self,
        target: &'a UpstreamTarget<'a>,
        state: &'a ProviderState,
        request: &'a mut UpstreamRequest,
    ) -> LocalBoxFuture<'a, Result<(), ProviderError>> {
        let _ = (target, state, request);
        Box::pin(async { Ok(()) })
    }

    /// The model a path names, for APIs that put it there (`/models/{model}:generateContent`);
    /// otherwise the log reads the body's `model` field.
    fn model_in_path(&self, path: &str) -> Option<String> {
        path_segment_after(path, "/models/").map(str::to_owned)
    }

    /// Content types of streamed answers, which replay from the cache chunk by chunk.
    fn stream_content_types(&self) -> &'static [&'static str] {
        &["text/event-stream"]
    }

    /// Whether an answer with these headers is a stream.
    fn is_stream(&self, headers: &HeaderMap) -> bool {
        headers
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                self.stream_content_types()
                    .iter()
                    .any(|stream| t.starts_with(stream))
            })
    }

    /// The built-in emulator's answer, in this provider's wire format.
    fn emulate(&self, request: &emulator::Request<'_>) -> emulator::Reply;

    /// The model a load test's chat request names when the user names none.
    fn sample_model(&self) -> &'static str;

    /// Path and query of a chat request, as the provider's SDK sends it to a proxy.
    fn chat_path(&self, call: &ChatCall<'_>) -> String;

    /// Headers a chat request needs beyond `content-type: application/json` (credentials
    /// aside).
    fn chat_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The JSON body of a chat request asking `prompt`.
    fn chat_body(&self, call: &ChatCall<'_>, prompt: &str) -> serde_json::Value;

    /// The path as it decides the answer: prefixes that only address the API are folded.
    fn cache_path<'a>(&self, path: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(path)
    }

    /// Query parameters that change the answer; others (tracing, say) stay out of cache keys.
    fn cache_query_params(&self) -> &'static [&'static str] {
        &[]
    }

    /// What identifies the caller, for caches partitioned by credential.
    fn credential_identity(&self, headers: &HeaderMap) -> Option<String> {
        ["authorization", "x-api-key", "api-key", "x-goog-api-key"]
            .iter()
            .find_map(|name| headers.get(*name)?.to_str().ok().map(str::to_owned))
    }

    /// Token counts in one JSON document: a whole response body or one stream event.
    fn usage_in(&self, json: &serde_json::Value) -> Usage;

    /// An error the proxy itself produces, in this provider's real error shape so that the
    /// provider's SDK raises its own typed exception.
    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse;

    /// A simulated failure with `status`, exactly as the provider would send it (body, error
    /// type, rate-limit headers), so SDK retry logic treats it as the real thing.
    fn injected_error(&self, status: StatusCode, retry_after_seconds: u64) -> HttpResponse;

    /// A simulated failure in the middle of a stream: the error event the provider sends there
    /// (OpenAI's `error` data event by default), which the SDKs raise as they do in production.
    fn stream_error_event(&self) -> Bytes {
        let error = serde_json::json!({"error": {
            "message": STREAM_ERROR_MESSAGE,
            "type": "server_error",
            "param": null,
            "code": null,
        }});
        Bytes::from(format!("data: {error}\n\n"))
    }

    /// Whether a stream event opens a kind of stream that says when it is over, or says so
    /// (OpenAI's `[DONE]` and `response.completed` by default). A stream opened so and never
    /// closed was cut, even when its connection ended cleanly between chunks.
    fn stream_mark(&self, event: &StreamEvent<'_>) -> StreamMark {
        openai_stream_mark(event)
    }
}

/// One event of a streamed answer: its name (SSE `event:`, event-stream `:event-type`), its
/// data and the data as JSON (a Bedrock chunk's JSON is the decoded `bytes`).
pub struct StreamEvent<'a> {
    pub name: Option<&'a str>,
    pub data: &'a str,
    pub json: Option<&'a serde_json::Value>,
}

impl StreamEvent<'_> {
    fn json_str(&self, key: &str) -> Option<&str> {
        self.json?.get(key)?.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMark {
    /// Says nothing about where the stream ends.
    Neither,
    /// The stream is of a kind that ends with a closing event.
    Opens,
    /// The stream's closing event.
    Closes,
}

/// Chat Completions chunks end with `data: [DONE]`; a Responses stream opens with
/// `response.created` and ends with `response.completed`, `.incomplete` or `.failed`.
pub(crate) fn openai_stream_mark(event: &StreamEvent<'_>) -> StreamMark {
    if event.data.trim() == "[DONE]" {
        return StreamMark::Closes;
    }
    match (event.json_str("object"), event.json_str("type")) {
        (Some("chat.completion.chunk" | "text_completion"), _) | (_, Some("response.created")) => {
            StreamMark::Opens
        }
        (_, Some("response.completed" | "response.incomplete" | "response.failed")) => {
            StreamMark::Closes
        }
        _ => StreamMark::Neither,
    }
}

/// Anthropic's Messages stream, from `message_start` to `message_stop`.
pub(crate) fn anthropic_stream_mark(event: &StreamEvent<'_>) -> StreamMark {
    match event.json_str("type") {
        Some("message_start") => StreamMark::Opens,
        Some("message_stop") => StreamMark::Closes,
        _ => StreamMark::Neither,
    }
}

/// What an injected mid-stream error event says.
pub(crate) const STREAM_ERROR_MESSAGE: &str =
    "The server had an error while processing your request (injected mid-stream by Rubberduck).";

/// The text providers use for a status, with a note that Rubberduck injected it.
pub(crate) fn injected_message(status: StatusCode) -> String {
    let what = match status.as_u16() {
        400 => "Invalid request",
        401 => "Invalid API key",
        403 => "Permission denied",
        404 => "Not found",
        408 => "Request timed out",
        429 => "Rate limit reached; please retry later",
        529 => "Overloaded",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => "The server had an error while processing your request",
    };
    format!("{what} (failure injected by Rubberduck)")
}

/// The rate-limit counters a provider sends beside `Retry-After` when a limit is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateLimitCounters {
    /// Only `Retry-After` (Bedrock and Google send no counters).
    None,
    /// `x-ratelimit-{limit,remaining,reset}-requests`, the reset as a duration (`6m0s`).
    OpenAi,
    /// OpenAI's counters plus `retry-after-ms`, which the openai SDK reads before
    /// `retry-after`.
    Azure,
    /// `anthropic-ratelimit-requests-{limit,remaining,reset}`, the reset as an RFC 3339 time.
    Anthropic,
}

/// The limit the counters of an injected 429 report; the remaining count is always 0.
const REPORTED_REQUEST_LIMIT: &str = "60";

/// Retry hints of an injected failure: `Retry-After` on 429, 503 and 529 (what SDK retry logic
/// honours), and on a 429 the provider's counters showing the limit used up.
pub(crate) fn rate_limit_headers(
    response: &mut actix_web::HttpResponseBuilder,
    status: StatusCode,
    retry_after_seconds: u64,
    counters: RateLimitCounters,
) {
    if matches!(status.as_u16(), 429 | 503 | 529) {
        response.insert_header(("retry-after", retry_after_seconds.to_string()));
        if counters == RateLimitCounters::Azure {
            response.insert_header((
                "retry-after-ms",
                retry_after_seconds.saturating_mul(1000).to_string(),
            ));
        }
    }
    if status != StatusCode::TOO_MANY_REQUESTS {
        return;
    }
    match counters {
        RateLimitCounters::None => {}
        RateLimitCounters::OpenAi | RateLimitCounters::Azure => {
            response
                .insert_header(("x-ratelimit-limit-requests", REPORTED_REQUEST_LIMIT))
                .insert_header(("x-ratelimit-remaining-requests", "0"))
                .insert_header((
                    "x-ratelimit-reset-requests",
                    go_duration(retry_after_seconds),
                ));
        }
        RateLimitCounters::Anthropic => {
            let reset = chrono::Utc::now()
                + chrono::Duration::seconds(i64::try_from(retry_after_seconds).unwrap_or(i64::MAX));
            response
                .insert_header(("anthropic-ratelimit-requests-limit", REPORTED_REQUEST_LIMIT))
                .insert_header(("anthropic-ratelimit-requests-remaining", "0"))
                .insert_header((
                    "anthropic-ratelimit-requests-reset",
                    reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ));
        }
    }
}

/// OpenAI writes its reset times as Go durations: `1s`, `6m0s`, `1h2m3s`.
fn go_duration(seconds: u64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut random = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut random);
    hex::encode(random)
}

/// A random UUID-shaped id, as AWS and Azure send request ids.
pub(crate) fn random_uuid() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An error answer with a JSON body, extra headers (request ids, error types) and, for injected
/// failures (`retry_after_seconds` set), the provider's retry hints.
pub(crate) fn json_error(
    status: StatusCode,
    retry_after_seconds: Option<u64>,
    counters: RateLimitCounters,
    headers: &[(&'static str, String)],
    body: &serde_json::Value,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if let Some(seconds) = retry_after_seconds {
        rate_limit_headers(&mut response, status, seconds, counters);
    }
    for (name, value) in headers {
        response.insert_header((*name, value.as_str()));
    }
    response.json(body)
}

/// The OpenAI error object, shared by every OpenAI-compatible provider:
/// `{"error":{"message","type","param","code"}}`.
pub(crate) fn openai_style_body(
    message: &str,
    error_type: &str,
    code: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "error": {"message": message, "type": error_type, "param": null, "code": code}
    })
}

/// `error.type` and `error.code` of the OpenAI-shaped errors the proxy makes itself.
pub(crate) fn openai_style_proxy_error(kind: ProxyErrorKind) -> (&'static str, &'static str) {
    match kind {
        ProxyErrorKind::BadRequest => ("invalid_request_error", "invalid_request"),
        ProxyErrorKind::Unauthorized => ("invalid_request_error", "invalid_api_key"),
        ProxyErrorKind::BadGateway => ("server_error", "bad_gateway"),
        ProxyErrorKind::GatewayTimeout => ("server_error", "timeout"),
        ProxyErrorKind::PayloadTooLarge => ("invalid_request_error", "request_too_large"),
        ProxyErrorKind::RequestTimeout => ("invalid_request_error", "request_timeout"),
        ProxyErrorKind::Overloaded => ("server_error", "overloaded"),
        ProxyErrorKind::NotCached => ("invalid_request_error", "not_cached"),
        // What OpenAI answers when an account's quota is used up.
        ProxyErrorKind::SpendCapReached => ("insufficient_quota", "insufficient_quota"),
    }
}

/// Whether `url` is an HTTPS URL of the provider's own domain (`suffix` like `.amazonaws.com`),
/// where the server's own credentials may go.
pub(crate) fn is_provider_host(url: &str, suffix: &str) -> bool {
    url.parse::<actix_web::http::Uri>().is_ok_and(|uri| {
        uri.scheme_str() == Some("https")
            && uri
                .host()
                .is_some_and(|host| host.to_ascii_lowercase().ends_with(suffix))
    })
}

/// `base` + `path` (+ `?query`), with exactly one slash between base and path.
pub(crate) fn join_url(base: &str, path: &str, query: Option<&str>) -> String {
    let mut url = String::with_capacity(base.len() + path.len() + query.map_or(0, str::len) + 2);
    url.push_str(base.trim_end_matches('/'));
    if !path.starts_with('/') {
        url.push('/');
    }
    url.push_str(path);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The path segment after `marker` (`/models/`), up to the next `/`, `:` or `?`.
pub(crate) fn path_segment_after<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
    path.split(marker)
        .nth(1)
        .and_then(|rest| rest.split(['/', ':', '?']).next())
        .filter(|s| !s.is_empty())
}

/// OpenAI-compatible bases include the API version (`https://api.openai.com/v1`), and SDKs send
/// paths with or without `/v1`: both land on `{base}/chat/completions`.
pub(crate) fn openai_style_url(base: &str, path: &str, query: Option<&str>) -> String {
    let unversioned = match path.strip_prefix("/v1") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    };
    join_url(base, unversioned, query)
}

/// A Chat Completions body asking `prompt`, as the OpenAI SDKs send it (`model` first, `stream`
/// last; Azure names the model by its deployment in the path instead).
pub(crate) fn openai_style_chat_body(
    model: Option<&str>,
    stream: bool,
    prompt: &str,
) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    if let Some(model) = model {
        body.insert("model".into(), model.into());
    }
    body.insert(
        "messages".into(),
        serde_json::json!([{"role": "user", "content": prompt}]),
    );
    if stream {
        body.insert("stream".into(), true.into());
    }
    serde_json::Value::Object(body)
}

/// `/v1/chat/completions` and `/chat/completions` are the same request to an OpenAI-style API.
pub(crate) fn openai_style_cache_path(path: &str) -> Cow<'_, str> {
    match path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => Cow::Borrowed(rest),
        _ => Cow::Borrowed(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_one_slash() {
        assert_eq!(
            join_url("http://h/v1/", "/x", Some("a=1")),
            "http://h/v1/x?a=1"
        );
        assert_eq!(join_url("http://h", "/x", Some("")), "http://h/x");
    }

    #[test]
    fn ids_round_trip() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.id().parse::<ProviderKind>().ok(), Some(kind));
            assert_eq!(kind.provider().kind(), kind);
        }
        assert!("openai ".parse::<ProviderKind>().is_err());
    }
}
