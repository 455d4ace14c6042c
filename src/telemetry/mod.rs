//! Request logs: a draft is filled in along the pipeline and finished when the response is
//! (for streams: when the last byte has gone out); finished entries go to the database writer
//! and to live subscribers, never blocking the request.

mod metrics;
mod prices;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpRequest;
use chrono::Utc;
use compact_str::{CompactString, ToCompactString};
use tokio::sync::broadcast;

use crate::db::models::{NewLogRow, RollupRow};
use crate::db::writer::{DbWriter, Drops, WriteOp};
use crate::providers::{Provider, Usage};
use crate::spec::ProxySpec;
pub use metrics::{Metrics, RecentTraffic, Rollup, minute_of, start_of_day};
pub use prices::{PriceTable, usd, usd_as_set};

/// Why a request failed, as logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Injected(&'static str),
    UpstreamError,
    ProxyError,
    /// A miss refused because the proxy's daily spend cap is reached.
    SpendCap,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Injected(kind) => kind,
            FailureKind::UpstreamError => "upstream_error",
            FailureKind::ProxyError => "proxy_error",
            FailureKind::SpendCap => "spend_cap",
        }
    }
}

/// What is known about a request while it is under way.
pub struct LogDraft {
    started: Instant,
    row: NewLogRow,
    /// False when the proxy's request logging is off: the entry then only feeds the metrics.
    keep: bool,
    pub usage: Usage,
    pub upstream_started: Option<Instant>,
    pub upstream_answered: Option<Instant>,
}

impl LogDraft {
    pub fn start(req: &HttpRequest, spec: &ProxySpec) -> Self {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| CompactString::from(at_most_chars(v, 300)))
        };
        LogDraft {
            started: Instant::now(),
            keep: spec.log_requests,
            row: NewLogRow {
                timestamp: Utc::now().naive_utc(),
                proxy_id: spec.id.0,
                proxy_name: spec.name.as_str().into(),
                provider: CompactString::const_new(spec.provider.id()),
                method: req.method().as_str().into(),
                path: at_most_chars(req.path(), 2000).into(),
                model: None,
                client_ip: req
                    .peer_addr()
                    .map(|a| a.ip().to_compact_string())
                    .unwrap_or_default(),
                status: 0,
                latency_ms: 0.0,
                upstream_latency_ms: None,
                cache: CompactString::const_new("bypass"),
                failure: None,
                stream: false,
                request_bytes: 0,
                response_bytes: 0,
                input_tokens: None,
                output_tokens: None,
                cost_usd: None,
                prompt_hash: None,
                user_agent: header("user-agent"),
                error_message: None,
                scenario: None,
            },
            usage: Usage::default(),
            upstream_started: None,
            upstream_answered: None,
        }
    }

    pub fn request(&mut self, body: &[u8], model: Option<String>) {
        self.row.request_bytes = i64::try_from(body.len()).unwrap_or(i64::MAX);
        self.row.model = model.map(CompactString::from);
    }

    pub fn client_ip(&mut self, ip: IpAddr) {
        self.row.client_ip = ip.to_compact_string();
    }

    pub fn cache(&mut self, state: &'static str, key: Option<String>) {
        self.row.cache = CompactString::const_new(state);
        self.row.prompt_hash = key.map(CompactString::from);
    }

    pub fn failure(&mut self, kind: FailureKind, message: Option<String>) {
        self.row.failure = Some(CompactString::const_new(kind.as_str()));
        self.row.error_message = message.map(CompactString::from);
    }

    /// The test whose scenario the request belongs to.
    pub fn scenario(&mut self, scenario: Option<String>) {
        if let Some(id) = scenario {
            self.row.scenario = Some(CompactString::from(id));
        }
    }

    pub fn stream(&mut self, stream: bool) {
        self.row.stream = stream;
    }
}

pub struct Telemetry {
    writer: Arc<DbWriter>,
    prices: PriceTable,
    live: broadcast::Sender<Arc<NewLogRow>>,
    pub metrics: Metrics,
}

impl Telemetry {
    /// `history`: the stored roll-ups of the last minutes, so charts continue after a restart.
    pub fn new(writer: Arc<DbWriter>, history: &[RollupRow]) -> Self {
        Telemetry {
            writer,
            prices: PriceTable::bundled(),
            live: broadcast::channel(1024).0,
            metrics: Metrics::with_history(history),
        }
    }

    /// Hands the minutes that changed to the writer; called every second.
    pub fn flush(&self) {
        for row in self.metrics.take_dirty(Utc::now()) {
            self.writer.submit(WriteOp::UpsertRollup(Box::new(row)));
        }
    }

    /// New log entries as they happen, for the live view.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NewLogRow>> {
        self.live.subscribe()
    }

    /// Logs a finished request; returns what it cost live (at the upstream or the emulator),
    /// which is nothing for a cache hit or a model without a price.
    pub fn finish(&self, mut draft: LogDraft, status: u16, response_bytes: u64) -> Option<f64> {
        let row = &mut draft.row;
        row.status = i32::from(status);
        row.latency_ms = draft.started.elapsed().as_secs_f64() * 1000.0;
        row.upstream_latency_ms = draft
            .upstream_started
            .zip(draft.upstream_answered)
            .map(|(sent, answered)| answered.duration_since(sent).as_secs_f64() * 1000.0);
        row.response_bytes = i64::try_from(response_bytes).unwrap_or(i64::MAX);
        row.input_tokens = draft.usage.input_tokens.and_then(|n| i64::try_from(n).ok());
        row.output_tokens = draft
            .usage
            .output_tokens
            .and_then(|n| i64::try_from(n).ok());
        // A hit's cost is the cost it avoided.
        row.cost_usd = self.prices.cost(
            row.model.as_deref(),
            draft.usage.input_tokens,
            draft.usage.output_tokens,
        );
        if row.failure.is_none() && status >= 400 {
            row.failure = Some(CompactString::const_new(
                FailureKind::UpstreamError.as_str(),
            ));
        }
        let row = draft.row;
        let live_cost = row.cost_usd.filter(|_| row.cache != "hit");
        self.metrics.record(&row);
        if !draft.keep {
            return live_cost;
        }
        // Only the live log view listens; without it, nothing is copied.
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(Arc::new(row.clone()));
        }
        // A full queue drops the entry; the writer counts it (see `drops`).
        self.writer.submit(WriteOp::InsertLog(Box::new(row)));
        live_cost
    }

    /// Every write lost on the way to the database (log entries, cache entries and hits,
    /// roll-ups), counted by the writer whoever submitted it.
    pub fn drops(&self) -> &Drops {
        self.writer.drops()
    }
}

/// Just the `model` of a JSON body: the rest is skipped without being built.
#[derive(serde::Deserialize)]
struct ModelField<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// The model a request names: in its path where the provider's API puts it there (Vertex,
/// Bedrock, Azure deployments), else in its body.
pub fn model_of(provider: &dyn Provider, path: &str, body: &[u8]) -> Option<String> {
    if let Some(model) = provider.model_in_path(path) {
        return Some(model);
    }
    serde_json::from_slice::<ModelField<'_>>(body)
        .ok()?
        .model
        .map(|m| at_most_chars(&m, 200).to_owned())
}

/// The first `max` characters of `text`. Slices instead of collecting characters one by one:
/// this runs for every logged request, and almost every text is short enough to keep whole.
fn at_most_chars(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(at_most_chars("gpt-4o", 200), "gpt-4o");
        assert_eq!(at_most_chars("abcdef", 3), "abc");
        assert_eq!(at_most_chars("ééééé", 3), "ééé");
        assert_eq!(at_most_chars("ééé", 3), "ééé");
    }

    #[test]
    fn models_come_from_paths_or_bodies() {
        let none: &[u8] = b"";
        assert_eq!(model_of(ProviderKind::VertexAi.provider(), "/v1beta1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent", none).as_deref(), Some("gemini-2.0-flash"));
        assert_eq!(
            model_of(
                ProviderKind::Bedrock.provider(),
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
                none
            )
            .as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
        assert_eq!(
            model_of(
                ProviderKind::AzureOpenai.provider(),
                "/openai/deployments/gpt4o/chat/completions",
                none
            )
            .as_deref(),
            Some("gpt4o")
        );
        assert_eq!(
            model_of(
                ProviderKind::Openai.provider(),
                "/v1/chat/completions",
                br#"{"messages":[{"role":"user"}],"model":"gpt-4o-mini"}"#
            )
            .as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            model_of(ProviderKind::Openai.provider(), "/v1/models", none),
            None
        );
    }
}
