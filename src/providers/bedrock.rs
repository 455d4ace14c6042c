use actix_web::HttpResponse;

use super::{Provider, ProviderKind, ProxyErrorKind, SdkHint};

pub struct Bedrock;

impl Provider for Bedrock {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Bedrock
    }

    fn display_name(&self) -> &'static str {
        "AWS Bedrock"
    }

    /// The region is only known per request (SigV4 scope, header or proxy config); the gateway
    /// fills it in.
    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://bedrock-runtime.{region}.amazonaws.com")
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "endpoint_url",
            path: "",
        }
    }

    /// botocore reads the error code from `x-amzn-ErrorType` and the text from `message`.
    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let error_type = match kind {
            ProxyErrorKind::NotImplemented => "UnknownOperationException",
            ProxyErrorKind::BadGateway => "InternalServerException",
            ProxyErrorKind::GatewayTimeout => "ModelTimeoutException",
            ProxyErrorKind::PayloadTooLarge => "ValidationException",
            ProxyErrorKind::ServiceUnavailable => "ServiceUnavailableException",
        };
        HttpResponse::build(kind.status())
            .insert_header(("x-amzn-ErrorType", error_type))
            .json(serde_json::json!({ "message": message }))
    }
}
