//! The admin JSON API (contract in shared/design.md).

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::proxy_host::{ProxyHost, proxy_snippets};
use crate::auth::Caller;
use crate::db;
use crate::emulator::EmulatorSettings;
use crate::faults::{ActiveScenario, FailureConfig};
use crate::gateway::Traffic;
use crate::ids::ProxyId;
use crate::providers::ProviderKind;
use crate::registry::input::ProxyInput;
use crate::registry::{ProxySnapshot, ProxyStatus};
use crate::spec::ProxySpec;
use crate::validation::FieldError;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Debug, Serialize)]
pub struct CacheJson {
    pub enabled: bool,
    pub mode: &'static str,
    pub ttl_seconds: Option<u64>,
    pub partition_by_credential: bool,
    pub fixtures_dir: Option<String>,
    pub ignore_fields: Vec<String>,
    /// `instant`, `recorded`, or the speed factor as text.
    pub stream_replay: String,
}

/// A proxy in the admin API's contract shape.
#[derive(Debug, Serialize)]
pub struct ProxyJson {
    pub id: i32,
    pub name: String,
    pub provider: ProviderKind,
    pub port: u16,
    pub description: String,
    pub tags: Vec<String>,
    pub upstream_url: Option<String>,
    pub status: ProxyStatus,
    pub last_error: Option<String>,
    pub url: String,
    pub created_at: String,
    pub cache: CacheJson,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    /// The emulator's latency; used while `upstream_url` is `emulator`.
    pub emulator: EmulatorSettings,
    /// Whether requests go to the request log (metrics count them either way).
    pub log_requests: bool,
    /// The config file that declares this proxy (its entries win at the next start).
    pub declared_in: Option<String>,
    pub daily_spend_cap_usd: Option<f64>,
    /// What answers from the upstream or the emulator cost today (UTC): what the cap counts.
    pub spent_today_usd: f64,
    /// Today's spend has reached the cap: misses are refused until the UTC day ends.
    pub spend_cap_reached: bool,
    /// Whether a request's `X-Rubberduck-Fault` header picks its own failure.
    pub allow_request_faults: bool,
    /// The tests (`X-Rubberduck-Scenario`) with failure state of their own right now.
    pub scenarios: Vec<ActiveScenario>,
    pub listening_port: Option<u16>,
    pub in_flight: usize,
    /// Requests and tokens since Rubberduck started.
    pub traffic: Traffic,
    /// Set on creation when the port is busy in the OS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl ProxyJson {
    pub fn new(snapshot: &ProxySnapshot, host: &ProxyHost) -> Self {
        let spec: &ProxySpec = &snapshot.spec;
        ProxyJson {
            id: spec.id.0,
            name: spec.name.clone(),
            provider: spec.provider,
            port: spec.port,
            description: spec.description.clone(),
            tags: spec.tags.clone(),
            upstream_url: spec.upstream_url.clone(),
            status: snapshot.status,
            last_error: snapshot.last_error.clone(),
            url: host.proxy_url(snapshot),
            created_at: spec
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cache: CacheJson {
                enabled: spec.cache.enabled,
                mode: spec.cache.mode.as_str(),
                ttl_seconds: spec.cache.ttl_seconds,
                partition_by_credential: spec.cache.partition_by_credential,
                fixtures_dir: spec
                    .cache
                    .fixtures_dir
                    .as_ref()
                    .map(|dir| dir.to_string_lossy().into_owned()),
                ignore_fields: spec.cache.ignore_fields.clone(),
                stream_replay: spec.cache.stream_replay.as_text(),
            },
            vertex_service_account_file: spec.vertex_service_account_file.clone(),
            aws_region: spec.aws_region.clone(),
            emulator: spec.emulator,
            log_requests: spec.log_requests,
            daily_spend_cap_usd: spec.daily_spend_cap_usd,
            spent_today_usd: snapshot.spent_today_usd,
            spend_cap_reached: snapshot.spend_cap_reached().is_some(),
            declared_in: spec
                .declared_in
                .as_ref()
                .map(|file| file.to_string_lossy().into_owned()),
            allow_request_faults: spec.failure_config.allow_request_faults,
            scenarios: snapshot.scenarios.clone(),
            listening_port: snapshot.listening_port,
            in_flight: snapshot.in_flight,
            traffic: snapshot.traffic,
            warning: None,
        }
    }
}

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| {
            let message = match &err {
                JsonPayloadError::ContentType => {
                    "send the body as JSON with Content-Type: application/json".to_owned()
                }
                JsonPayloadError::Deserialize(e) => format!("invalid request body: {e}"),
                other => format!("invalid request body: {other}"),
            };
            ApiError::BadRequest(message).into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::BadRequest(format!("invalid query string: {err}")).into()
    })
}

pub async fn not_found(req: HttpRequest) -> ApiResult {
    Err(ApiError::NotFound(format!(
        "no API endpoint {} {}",
        req.method(),
        req.path()
    )))
}

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let database = match db::run(&state.db, db::ping).await {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    let healthy = database == "ok";
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
        "running_proxies": state.registry.running_count(),
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn providers() -> HttpResponse {
    let list: Vec<_> = ProviderKind::ALL
        .iter()
        .map(|kind| serde_json::json!({"id": kind.id(), "name": kind.name()}))
        .collect();
    HttpResponse::Ok().json(list)
}

fn proxy_json(req: &HttpRequest, state: &AppState, snapshot: &ProxySnapshot) -> ProxyJson {
    ProxyJson::new(
        snapshot,
        &ProxyHost::for_request(req, state.registry.proxy_host()),
    )
}

pub async fn list_proxies(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> HttpResponse {
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    let proxies: Vec<ProxyJson> = state
        .registry
        .list_for(caller.access())
        .iter()
        .map(|snapshot| ProxyJson::new(snapshot, &host))
        .collect();
    HttpResponse::Ok().json(proxies)
}

pub async fn create_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    // Creating starts the proxy unless the body says `"start": false`.
    let mut body = body.into_inner();
    let start = match body.as_object_mut().map(|o| o.remove("start")) {
        Some(Some(serde_json::Value::Bool(start))) => start,
        Some(Some(_)) => {
            return Err(ApiError::Invalid(FieldError::new(
                "start",
                "start must be true or false.",
            )));
        }
        Some(None) | None => true,
    };
    let input: ProxyInput = parse_input(body)?;
    super::check_proxy_quota(&state, &caller).map_err(ApiError::Invalid)?;
    let created = state
        .registry
        .create(&input, start, caller.user.id, caller.access())
        .await?;
    let mut json = proxy_json(&req, &state, &created.snapshot);
    json.warning = created.warning;
    Ok(HttpResponse::Created().json(json))
}

fn parse_input(body: serde_json::Value) -> Result<ProxyInput, ApiError> {
    ProxyInput::from_json(body).map_err(ApiError::Invalid)
}

pub async fn get_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let snapshot = state.registry.get_for(ProxyId(*id), caller.access())?;
    Ok(HttpResponse::Ok().json(proxy_json(&req, &state, &snapshot)))
}

/// The programs the proxy's card shows, for the address this request reached the server by.
pub async fn snippets(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let snapshot = state.registry.get_for(ProxyId(*id), caller.access())?;
    let host = ProxyHost::for_request(&req, state.registry.proxy_host());
    Ok(HttpResponse::Ok().json(proxy_snippets(&snapshot, &host)))
}

pub async fn update_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    let edit = parse_input(body.into_inner())?;
    let snapshot = state
        .registry
        .update(ProxyId(*id), edit, caller.access())
        .await?;
    Ok(HttpResponse::Ok().json(proxy_json(&req, &state, &snapshot)))
}

pub async fn delete_proxy(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    state.registry.delete(ProxyId(*id), caller.access()).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn start_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let snapshot = state.registry.start(ProxyId(*id), caller.access()).await?;
    Ok(HttpResponse::Ok().json(proxy_json(&req, &state, &snapshot)))
}

#[derive(Deserialize)]
pub struct StopQuery {
    #[serde(default)]
    force: bool,
}

pub async fn stop_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    query: web::Query<StopQuery>,
) -> ApiResult {
    let snapshot = state
        .registry
        .stop(ProxyId(*id), !query.force, caller.access())
        .await?;
    Ok(HttpResponse::Ok().json(proxy_json(&req, &state, &snapshot)))
}

pub async fn restart_proxy(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let snapshot = state
        .registry
        .restart(ProxyId(*id), caller.access())
        .await?;
    Ok(HttpResponse::Ok().json(proxy_json(&req, &state, &snapshot)))
}

pub async fn cache_info(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let id = ProxyId(*id);
    let access = caller.access();
    let info = state.registry.cache_info(id, access).await?;
    let mut json = serde_json::to_value(info)
        .map_err(|e| ApiError::Internal(format!("cannot encode the cache info: {e}")))?;
    if let Some(load) = state.registry.fixtures_load(id, access) {
        json["fixtures"] = serde_json::json!(load);
    }
    Ok(HttpResponse::Ok().json(json))
}

pub async fn clear_cache(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let id = ProxyId(*id);
    let removed = state.registry.clear_cache(id, caller.access()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "entries_removed": removed })))
}

pub async fn failure_config(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
) -> ApiResult {
    let snapshot = state.registry.get_for(ProxyId(*id), caller.access())?;
    Ok(HttpResponse::Ok().json(&snapshot.spec.failure_config))
}

/// `POST /api/proxies/{id}/scenarios/{test id}/reset`: the test's next request starts its
/// script, seeded dice and rate window afresh. `existed` is false for a scenario the proxy did
/// not know (never used, or expired after being idle): a test's teardown may reset either way.
pub async fn reset_scenario(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(i32, String)>,
) -> ApiResult {
    let (id, scenario) = path.into_inner();
    let existed = state
        .registry
        .reset_scenario(ProxyId(id), caller.access(), &scenario)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"scenario": scenario, "existed": existed})))
}

pub async fn replace_failure_config(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i32>,
    body: web::Json<serde_json::Value>,
) -> ApiResult {
    // Someone else's proxy is "not found" before its body is looked at.
    state.registry.get_for(ProxyId(*id), caller.access())?;
    let config = FailureConfig::from_json(body.into_inner()).map_err(ApiError::Invalid)?;
    let snapshot = state
        .registry
        .set_failure_config(ProxyId(*id), config, caller.access())
        .await?;
    Ok(HttpResponse::Ok().json(&snapshot.spec.failure_config))
}
