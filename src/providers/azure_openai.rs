use actix_web::HttpResponse;

use super::{
    Provider, ProviderKind, ProxyErrorKind, SdkHint, Usage, openai_style_error,
    openai_style_injected, openai_usage,
};

/// Azure OpenAI: the upstream is the user's own resource endpoint, so there is no default.
pub struct AzureOpenAi;

/// What a user pastes to call a proxy of this provider. The SDKs read `AZURE_OPENAI_API_KEY`; the
/// model names the deployment, which the SDKs put in the path.
const PYTHON_SNIPPET: &str = r#"from openai import AzureOpenAI

client = AzureOpenAI(azure_endpoint="{base_url}", api_version="2024-10-21")
response = client.chat.completions.create(
    model="gpt-4o-mini",  # your deployment's name
    messages=[{"role": "user", "content": "Say hello"}],
)
print(response.choices[0].message.content)"#;

const TYPESCRIPT_SNIPPET: &str = r#"import { AzureOpenAI } from "openai";

const client = new AzureOpenAI({ endpoint: "{base_url}", apiVersion: "2024-10-21" });
const response = await client.chat.completions.create({
  model: "gpt-4o-mini", // your deployment's name
  messages: [{ role: "user", content: "Say hello" }],
});
console.log(response.choices[0].message.content);"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21" \
  -H "api-key: $AZURE_OPENAI_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"messages": [{"role": "user", "content": "Say hello"}]}'"#;

impl Provider for AzureOpenAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::AzureOpenai
    }

    fn display_name(&self) -> &'static str {
        "Azure OpenAI"
    }

    fn default_upstream(&self) -> Option<&'static str> {
        None
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "azure_endpoint",
            path: "",
        }
    }

    fn snippets(&self, base_url: &str) -> super::Snippets {
        super::Snippets::fill(PYTHON_SNIPPET, TYPESCRIPT_SNIPPET, CURL_SNIPPET, base_url)
    }

    fn cache_query_params(&self) -> &'static [&'static str] {
        &["api-version"]
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        openai_usage(json)
    }

    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        openai_style_injected(status, retry_after_seconds)
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        openai_style_error(kind, message)
    }
}
