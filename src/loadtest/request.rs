//! What a load test sends: the path, headers and body an official SDK of each provider would.

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::body::Bytes;
use serde_json::Value;

use crate::providers::{ChatCall, ProviderKind};

/// The model a provider's request names when `--model` is not given.
pub fn default_model(provider: ProviderKind) -> &'static str {
    provider.provider().sample_model()
}

/// Where a request goes and what it carries, apart from the prompt.
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub provider: ProviderKind,
    pub model: String,
    pub stream: bool,
    /// Vertex AI names a project and a location in the path.
    pub vertex_project: String,
    pub vertex_location: String,
}

impl RequestShape {
    fn call(&self) -> ChatCall<'_> {
        ChatCall {
            model: &self.model,
            stream: self.stream,
            project: &self.vertex_project,
            location: &self.vertex_location,
        }
    }

    /// Path and query, as the provider's SDK sends them to a proxy.
    pub fn path(&self) -> String {
        self.provider.provider().chat_path(&self.call())
    }

    /// Headers the provider requires beyond `content-type` (credentials come from `--header`).
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        for (name, value) in self.provider.provider().chat_headers() {
            headers.push((
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            ));
        }
        headers
    }

    /// The JSON body asking `prompt` of the model.
    pub fn body(&self, prompt: &str) -> Value {
        self.provider.provider().chat_body(&self.call(), prompt)
    }
}

/// The bodies of a run: prompts taken round-robin, each made unique on request.
#[derive(Debug, Clone)]
pub struct Bodies {
    shape: RequestShape,
    prompts: Vec<String>,
    /// `Some(run id)` makes every body distinct, so that every request misses the cache.
    unique: Option<String>,
    /// Built once when bodies repeat, so the generator spends no time serializing.
    prebuilt: Vec<Bytes>,
}

impl Bodies {
    /// `prompts` must not be empty; `unique` carries the run's id.
    pub fn new(shape: RequestShape, prompts: Vec<String>, unique: Option<String>) -> Self {
        let prebuilt = if unique.is_none() {
            prompts
                .iter()
                .map(|prompt| Bytes::from(shape.body(prompt).to_string()))
                .collect()
        } else {
            Vec::new()
        };
        Bodies {
            shape,
            prompts,
            unique,
            prebuilt,
        }
    }

    pub fn shape(&self) -> &RequestShape {
        &self.shape
    }

    /// The body of the `index`th request of the run (0-based).
    pub fn body(&self, index: u64) -> Bytes {
        let count = self.prompts.len().max(1) as u64;
        // The remainder is below the number of prompts, which fits in usize.
        let slot = usize::try_from(index % count).unwrap_or(0);
        match &self.unique {
            None => self.prebuilt.get(slot).cloned().unwrap_or_default(),
            Some(run) => {
                let prompt = self.prompts.get(slot).map_or("", String::as_str);
                let prompt = format!("{prompt} [rubberduck loadtest {run} #{index}]");
                Bytes::from(self.shape.body(&prompt).to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(provider: ProviderKind, stream: bool) -> RequestShape {
        RequestShape {
            provider,
            model: default_model(provider).to_owned(),
            stream,
            vertex_project: "p".to_owned(),
            vertex_location: "l".to_owned(),
        }
    }

    #[test]
    fn every_provider_has_its_sdk_path() {
        let cases = [
            (ProviderKind::Openai, false, "/v1/chat/completions"),
            (ProviderKind::Openai, true, "/v1/chat/completions"),
            (ProviderKind::Deepseek, false, "/chat/completions"),
            (ProviderKind::Anthropic, true, "/v1/messages"),
            (
                ProviderKind::AzureOpenai,
                false,
                "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
            ),
            (
                ProviderKind::Bedrock,
                false,
                "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
            ),
            (
                ProviderKind::Bedrock,
                true,
                "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
            ),
            (
                ProviderKind::VertexAi,
                false,
                "/v1beta1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent",
            ),
            (
                ProviderKind::VertexAi,
                true,
                "/v1beta1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            ),
        ];
        for (provider, stream, path) in cases {
            assert_eq!(shape(provider, stream).path(), path, "{provider} {stream}");
        }
        let mut odd = shape(ProviderKind::VertexAi, false);
        odd.model = "my model/v2".to_owned();
        assert!(
            odd.path()
                .ends_with("/models/my%20model%2Fv2:generateContent")
        );
    }

    #[test]
    fn bodies_follow_each_api() {
        let openai = shape(ProviderKind::Openai, true).body("hi");
        assert_eq!(openai["model"], "gpt-4o-mini");
        assert_eq!(openai["messages"][0]["content"], "hi");
        assert_eq!(openai["stream"], true);
        assert!(
            shape(ProviderKind::Openai, false)
                .body("hi")
                .get("stream")
                .is_none()
        );

        let anthropic = shape(ProviderKind::Anthropic, false).body("hi");
        assert_eq!(anthropic["max_tokens"], 256);
        let azure = shape(ProviderKind::AzureOpenai, false).body("hi");
        assert!(azure.get("model").is_none(), "{azure}");

        let bedrock = shape(ProviderKind::Bedrock, true).body("hi");
        assert_eq!(bedrock["messages"][0]["content"][0]["text"], "hi");
        assert!(bedrock.get("stream").is_none(), "the path says stream");
        let vertex = shape(ProviderKind::VertexAi, true).body("hi");
        assert_eq!(vertex["contents"][0]["parts"][0]["text"], "hi");
        assert!(vertex.get("stream").is_none(), "the path says stream");
    }

    #[test]
    fn anthropic_sends_its_version_header() {
        let names = |provider| -> Vec<String> {
            shape(provider, false)
                .headers()
                .into_iter()
                .map(|(name, _)| name.to_string())
                .collect()
        };
        assert!(names(ProviderKind::Anthropic).contains(&"anthropic-version".to_owned()));
        assert_eq!(names(ProviderKind::Openai), ["content-type"]);
    }

    #[test]
    fn prompts_rotate_and_unique_bodies_differ() {
        let prompts = vec!["one".to_owned(), "two".to_owned()];
        let same = Bodies::new(shape(ProviderKind::Openai, false), prompts.clone(), None);
        assert_eq!(same.body(0), same.body(2));
        assert_ne!(same.body(0), same.body(1));

        let unique = Bodies::new(
            shape(ProviderKind::Openai, false),
            prompts,
            Some("run1".to_owned()),
        );
        assert_ne!(unique.body(0), unique.body(2));
        let body: Value = serde_json::from_slice(&unique.body(3)).expect("JSON");
        assert_eq!(
            body["messages"][0]["content"],
            "two [rubberduck loadtest run1 #3]"
        );
    }
}
