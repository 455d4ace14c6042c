//! AWS Bedrock: requests are re-signed with SigV4, so `boto3` pointed at the proxy with
//! `endpoint_url` works unchanged.

use std::time::SystemTime;

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use futures_util::future::LocalBoxFuture;

use super::{
    ChatCall, Provider, ProviderError, ProviderKind, ProviderState, ProxyErrorKind,
    RateLimitCounters, SAMPLE_MAX_TOKENS, SdkHint, UpstreamRequest, UpstreamTarget, Usage,
    anthropic_usage, count_at, injected_message, is_provider_host, join_url, json_error, path_name,
    random_uuid,
};
use crate::emulator;

const SIGNING_NAME: &str = "bedrock";
const ACCESS_KEY_HEADER: &str = "x-aws-access-key";
const SECRET_KEY_HEADER: &str = "x-aws-secret-key";
const SESSION_TOKEN_HEADER: &str = "x-aws-session-token";
const REGION_HEADER: &str = "x-aws-region";

/// Headers of the client's own signature, or carrying its secrets: never forwarded.
const CLIENT_SIGNING_HEADERS: [&str; 8] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    ACCESS_KEY_HEADER,
    SECRET_KEY_HEADER,
    SESSION_TOKEN_HEADER,
    REGION_HEADER,
];

pub struct Bedrock;

/// The proxy process's own AWS identity and region, read when the proxy starts.
#[derive(Default)]
pub struct AwsDefaults {
    credentials: Option<Credentials>,
    region: Option<String>,
}

impl AwsDefaults {
    /// Environment first (`AWS_ACCESS_KEY_ID`, …), else the shared credentials file's profile
    /// (`AWS_PROFILE`, default `default`).
    pub fn from_environment() -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
        let from_env = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Some(Credentials::new(
                key,
                secret,
                env("AWS_SESSION_TOKEN"),
                None,
                "environment",
            )),
            _ => None,
        };
        let credentials = from_env.or_else(|| {
            let file = env("AWS_SHARED_CREDENTIALS_FILE")
                .map(Into::into)
                .or_else(|| {
                    env("HOME").map(|home| std::path::Path::new(&home).join(".aws/credentials"))
                })?;
            let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
            let ini = ini::Ini::load_from_file(&file).ok()?;
            let section = ini.section(Some(profile))?;
            Some(Credentials::new(
                section.get("aws_access_key_id")?,
                section.get("aws_secret_access_key")?,
                section.get("aws_session_token").map(str::to_owned),
                None,
                "shared credentials file",
            ))
        });
        AwsDefaults {
            credentials,
            region,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The region of the client's own SigV4 credential scope:
/// `Credential=AKID/20260101/us-east-1/bedrock/aws4_request`.
fn region_from_client_signature(headers: &HeaderMap) -> Option<&str> {
    let authorization = header(headers, "authorization")?;
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split([',', ' ']).next()?.split('/').nth(2)
}

fn region(
    target: &UpstreamTarget<'_>,
    state: &ProviderState,
    headers: &HeaderMap,
) -> Result<String, ProviderError> {
    region_from_client_signature(headers)
        .or_else(|| header(headers, REGION_HEADER))
        .or(target.region)
        .or(state.aws.region.as_deref())
        .map(str::to_owned)
        .ok_or_else(|| {
            ProviderError::BadRequest(
                "no AWS region: sign the request (boto3 does), send X-AWS-Region, or set the proxy's AWS region".into(),
            )
        })
}

/// Whether the client sent credentials of its own for the proxy to sign with.
fn has_own_credentials(headers: &HeaderMap) -> bool {
    header(headers, ACCESS_KEY_HEADER).is_some() || header(headers, SECRET_KEY_HEADER).is_some()
}

fn credentials(headers: &HeaderMap, state: &ProviderState) -> Result<Credentials, ProviderError> {
    match (header(headers, ACCESS_KEY_HEADER), header(headers, SECRET_KEY_HEADER)) {
        (Some(key), Some(secret)) => Ok(Credentials::new(
            key,
            secret,
            header(headers, SESSION_TOKEN_HEADER).map(str::to_owned),
            None,
            "request headers",
        )),
        (Some(_), None) | (None, Some(_)) => Err(ProviderError::Credentials(
            "send both X-AWS-Access-Key and X-AWS-Secret-Key".into(),
        )),
        (None, None) => state.aws.credentials.clone().ok_or_else(|| {
            ProviderError::Credentials(
                "no AWS credentials: send X-AWS-Access-Key and X-AWS-Secret-Key, or give the Rubberduck process AWS credentials (environment or ~/.aws/credentials)".into(),
            )
        }),
    }
}

fn url_authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?']).next().unwrap_or(rest))
}

fn sign_request(
    request: &mut UpstreamRequest,
    credentials: &Credentials,
    region: &str,
) -> Result<(), ProviderError> {
    let signing_error = |e: &dyn std::fmt::Display| {
        ProviderError::BadRequest(format!("cannot sign the request for AWS: {e}"))
    };
    let host = url_authority(&request.url)
        .ok_or_else(|| signing_error(&"the upstream URL has no host"))?
        .to_owned();
    request.headers.insert(
        HeaderName::from_static("host"),
        HeaderValue::from_str(&host).map_err(|e| signing_error(&e))?,
    );
    // Sign what identifies the request; headers such as User-Agent may be rewritten by
    // intermediaries and stay unsigned, as the AWS SDKs do.
    let signed: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "host" || name == "content-type" || name.starts_with("x-amz-")
        })
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let identity = credentials.clone().into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing_error(&e))?
        .into();
    let signable = SignableRequest::new(
        request.method.as_str(),
        request.url.as_str(),
        signed.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .map_err(|e| signing_error(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing_error(&e))?
        .into_parts();
    for (name, value) in instructions.headers() {
        request.headers.insert(
            HeaderName::try_from(name).map_err(|e| signing_error(&e))?,
            HeaderValue::from_str(value).map_err(|e| signing_error(&e))?,
        );
    }
    Ok(())
}

/// What a user pastes to call a proxy of this provider. The SDKs take credentials and region from
/// their default chains (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`; the region from
/// `AWS_REGION` in JavaScript, from `AWS_DEFAULT_REGION` or the profile in boto3); curl signs with
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`. The proxy re-signs either way.
const PYTHON_SNIPPET: &str = r#"import boto3

client = boto3.client("bedrock-runtime", endpoint_url="{base_url}")
response = client.converse(
    modelId="anthropic.claude-3-haiku-20240307-v1:0",
    messages=[{"role": "user", "content": [{"text": "Say hello"}]}],
)
print(response["output"]["message"]["content"][0]["text"])"#;

const TYPESCRIPT_SNIPPET: &str = r#"import { BedrockRuntimeClient, ConverseCommand } from "@aws-sdk/client-bedrock-runtime";

const client = new BedrockRuntimeClient({ endpoint: "{base_url}" });
const response = await client.send(
  new ConverseCommand({
    modelId: "anthropic.claude-3-haiku-20240307-v1:0",
    messages: [{ role: "user", content: [{ text: "Say hello" }] }],
  }),
);
console.log(response.output?.message?.content?.[0]?.text);"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/model/anthropic.claude-3-haiku-20240307-v1:0/converse" \
  --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  --aws-sigv4 "aws:amz:$AWS_REGION:bedrock" \
  -H "Content-Type: application/json" \
  -d '{"messages": [{"role": "user", "content": [{"text": "Say hello"}]}]}'"#;

impl Provider for Bedrock {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Bedrock
    }

    fn display_name(&self) -> &'static str {
        "AWS Bedrock"
    }

    /// The region is only known per request (SigV4 scope, header or proxy config).
    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://bedrock-runtime.{region}.amazonaws.com")
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "endpoint_url",
            path: "",
        }
    }

    fn snippets(&self, base_url: &str) -> super::Snippets {
        super::Snippets::fill(PYTHON_SNIPPET, TYPESCRIPT_SNIPPET, CURL_SNIPPET, base_url)
    }

    fn upstream_url(
        &self,
        target: &UpstreamTarget<'_>,
        state: &ProviderState,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<String, ProviderError> {
        if let Some(base) = target.base_url {
            return Ok(join_url(base, path, query));
        }
        let region = region(target, state, headers)?;
        Ok(join_url(
            &format!("https://bedrock-runtime.{region}.amazonaws.com"),
            path,
            query,
        ))
    }

    fn authorize<'a>(
        &'a self,
        target: &'a UpstreamTarget<'a>,
        state: &'a ProviderState,
        request: &'a mut UpstreamRequest,
    ) -> LocalBoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let region = region(target, state, &request.headers)?;
            let own = has_own_credentials(&request.headers);
            if !own && target.restricted && !is_provider_host(&request.url, ".amazonaws.com") {
                return Err(ProviderError::Credentials(
                    "Rubberduck's own AWS identity signs only for AWS endpoints, and this proxy's upstream is not one: send X-AWS-Access-Key and X-AWS-Secret-Key, or ask an admin".into(),
                ));
            }
            let credentials = credentials(&request.headers, state)?;
            for name in CLIENT_SIGNING_HEADERS {
                request.headers.remove(name);
            }
            sign_request(request, &credentials, &region)
        })
    }

    /// The access key id: the client's SigV4 `Authorization` changes with every request.
    fn credential_identity(&self, headers: &HeaderMap) -> Option<String> {
        header(headers, ACCESS_KEY_HEADER)
            .or_else(|| {
                header(headers, "authorization")?
                    .split("Credential=")
                    .nth(1)?
                    .split('/')
                    .next()
            })
            .map(str::to_owned)
    }

    /// Converse (`usage.inputTokens`, stream `metadata`), invoke's per-model bodies (Anthropic's
    /// shape, Llama's `prompt_token_count`, Titan's `inputTextTokenCount` and `results`), and
    /// the invocation metrics Bedrock appends to a stream's last chunk.
    /// `/model/{model id}/invoke`, the id percent-encoded (`…-v1%3A0`).
    fn model_in_path(&self, path: &str) -> Option<String> {
        let id = path.strip_prefix("/model/")?.split('/').next()?;
        Some(
            percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned(),
        )
    }

    /// `InvokeModelWithResponseStream` and `ConverseStream` answer in AWS event streams.
    fn stream_content_types(&self) -> &'static [&'static str] {
        &["text/event-stream", "application/vnd.amazon.eventstream"]
    }

    fn emulate(&self, request: &emulator::Request<'_>) -> emulator::Reply {
        emulator::bedrock(request)
    }

    fn sample_model(&self) -> &'static str {
        "anthropic.claude-3-5-haiku-20241022-v1:0"
    }

    /// Converse works for every Bedrock model, unlike invoke whose body is per model family.
    fn chat_path(&self, call: &ChatCall<'_>) -> String {
        let action = if call.stream {
            "converse-stream"
        } else {
            "converse"
        };
        format!("/model/{}/{action}", path_name(call.model))
    }

    /// The path says whether to stream.
    fn chat_body(&self, _call: &ChatCall<'_>, prompt: &str) -> serde_json::Value {
        serde_json::json!({
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": {"maxTokens": SAMPLE_MAX_TOKENS}
        })
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        let metrics = "amazon-bedrock-invocationMetrics";
        let mut usage = anthropic_usage(json);
        if json.get(metrics).is_none() {
            // Per-model counts; a stream's chunks carry running ones, its metrics the totals.
            usage.update(Usage {
                input_tokens: count_at(json, &[&["prompt_token_count"], &["inputTextTokenCount"]]),
                output_tokens: count_at(json, &[&["generation_token_count"]]).or_else(|| {
                    json.pointer("/results/0/tokenCount")
                        .and_then(serde_json::Value::as_u64)
                }),
            });
        }
        usage.update(Usage {
            input_tokens: count_at(
                json,
                &[
                    &["usage", "inputTokens"],
                    &["metadata", "usage", "inputTokens"],
                    &[metrics, "inputTokenCount"],
                ],
            ),
            output_tokens: count_at(
                json,
                &[
                    &["usage", "outputTokens"],
                    &["metadata", "usage", "outputTokens"],
                    &[metrics, "outputTokenCount"],
                ],
            ),
        });
        usage
    }

    /// The error shapes of the Bedrock Runtime API reference (its service model, as botocore
    /// ships it: AccessDeniedException 403, ResourceNotFoundException 404, ThrottlingException
    /// 429, ModelNotReadyException 429, ModelTimeoutException 408, ModelErrorException 424,
    /// InternalServerException 500, ServiceUnavailableException 503, ValidationException and
    /// ServiceQuotaExceededException 400) and the Bedrock "Troubleshooting API error codes" page.
    /// boto3 and the AWS SDK for JavaScript take the error code from `x-amzn-ErrorType` (the
    /// part before any `:`), whatever the status, and raise the modelled exception of that name:
    ///
    /// | status | `x-amzn-ErrorType` |
    /// |---|---|
    /// | 400 | `ValidationException` |
    /// | 401 | `UnrecognizedClientException` (Bedrock sends no 401; this is its answer to an unknown key) |
    /// | 403 | `AccessDeniedException` |
    /// | 404 | `ResourceNotFoundException` |
    /// | 408 | `ModelTimeoutException` |
    /// | 429 | `ThrottlingException` |
    /// | 500, 502 | `InternalServerException` |
    /// | 503, 529 | `ServiceUnavailableException` |
    /// | 504 | `ModelTimeoutException` (Bedrock's timeout; it sends no 504) |
    ///
    /// The body is `{"message"}`; every answer has an `x-amzn-RequestId`, which botocore reports
    /// as `ResponseMetadata.RequestId`. `Retry-After` comes with 429, 503 and 529.
    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let error_type = match status.as_u16() {
            400 => "ValidationException",
            401 => "UnrecognizedClientException",
            403 => "AccessDeniedException",
            404 => "ResourceNotFoundException",
            408 | 504 => "ModelTimeoutException",
            429 => "ThrottlingException",
            503 | 529 => "ServiceUnavailableException",
            _ => "InternalServerException",
        };
        error(
            status,
            Some(retry_after_seconds),
            error_type,
            &injected_message(status),
        )
    }

    /// A `throttlingException` frame, as Bedrock ends a stream it throttles; boto3 raises it as
    /// an `EventStreamError` with that code.
    /// ConverseStream runs from `messageStart` to `messageStop`; an Anthropic model's
    /// invoke-with-response-stream chunks carry Anthropic's own events.
    fn stream_mark(&self, event: &super::StreamEvent<'_>) -> super::StreamMark {
        match event.name {
            Some("messageStart") => super::StreamMark::Opens,
            Some("messageStop") => super::StreamMark::Closes,
            _ => super::anthropic_stream_mark(event),
        }
    }

    fn stream_error_event(&self) -> actix_web::web::Bytes {
        use aws_smithy_eventstream::frame::write_message_to;
        use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
        let payload = serde_json::json!({"message": super::STREAM_ERROR_MESSAGE});
        let message = Message::new(payload.to_string())
            .add_header(Header::new(
                ":exception-type",
                FrameValue::String("throttlingException".into()),
            ))
            .add_header(Header::new(
                ":content-type",
                FrameValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                FrameValue::String("exception".into()),
            ));
        let mut buffer = actix_web::web::BytesMut::new();
        match write_message_to(&message, &mut buffer) {
            Ok(()) => buffer.freeze(),
            // Only payloads over 16 MiB fail.
            Err(e) => {
                log::error!("cannot frame a Bedrock exception: {e}");
                actix_web::web::Bytes::new()
            }
        }
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let error_type = match kind {
            ProxyErrorKind::BadRequest => "ValidationException",
            ProxyErrorKind::Unauthorized => "UnrecognizedClientException",
            ProxyErrorKind::BadGateway => "InternalServerException",
            ProxyErrorKind::GatewayTimeout => "ModelTimeoutException",
            ProxyErrorKind::PayloadTooLarge => "ValidationException",
            ProxyErrorKind::RequestTimeout => "ModelTimeoutException",
            ProxyErrorKind::Overloaded => "ServiceUnavailableException",
            ProxyErrorKind::NotCached => "ValidationException",
            ProxyErrorKind::SpendCapReached => "ThrottlingException",
        };
        error(kind.status(), None, error_type, message)
    }
}

/// Bedrock's error answer; `retry_after_seconds` is set for injected failures.
fn error(
    status: actix_web::http::StatusCode,
    retry_after_seconds: Option<u64>,
    error_type: &'static str,
    message: &str,
) -> HttpResponse {
    json_error(
        status,
        retry_after_seconds,
        RateLimitCounters::None,
        &[
            ("x-amzn-ErrorType", error_type.to_owned()),
            ("x-amzn-RequestId", random_uuid()),
        ],
        &serde_json::json!({ "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_client_credential_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKID/20261124/eu-central-1/bedrock/aws4_request, SignedHeaders=host, Signature=abc"),
        );
        assert_eq!(region_from_client_signature(&headers), Some("eu-central-1"));
    }

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            url_authority("http://127.0.0.1:9/model/x/invoke"),
            Some("127.0.0.1:9")
        );
        assert_eq!(
            url_authority("https://bedrock-runtime.us-east-1.amazonaws.com"),
            Some("bedrock-runtime.us-east-1.amazonaws.com")
        );
    }
}
