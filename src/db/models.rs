//! Row structs: one for reading, separate ones for inserting and updating (Lemmy's habit).

use chrono::{DateTime, NaiveDateTime};
use compact_str::CompactString;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;

use super::schema::proxies;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = proxies)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct ProxyRow {
    pub id: i32,
    pub name: String,
    pub provider: String,
    pub port: i32,
    pub description: String,
    pub tags: String,
    pub upstream_url: Option<String>,
    pub desired_state: String,
    pub last_error: Option<String>,
    pub failure_config: String,
    pub cache_enabled: bool,
    pub cache_mode: String,
    pub cache_ttl_seconds: Option<i64>,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub cache_partition_by_credential: bool,
    pub owner_id: Option<i32>,
    pub log_requests: bool,
    pub emulator_ttft_ms: i32,
    pub emulator_tokens_per_second: i32,
    pub cache_fixtures_dir: Option<String>,
    pub declared_in: Option<String>,
    pub cache_ignore_fields: String,
    pub cache_stream_replay: String,
    pub daily_spend_cap_usd: Option<f64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = proxies)]
pub struct NewProxyRow {
    pub name: String,
    pub provider: String,
    pub port: i32,
    pub description: String,
    pub tags: String,
    pub upstream_url: Option<String>,
    pub desired_state: String,
    pub failure_config: String,
    pub cache_enabled: bool,
    pub cache_mode: String,
    pub cache_ttl_seconds: Option<i64>,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub cache_partition_by_credential: bool,
    pub owner_id: Option<i32>,
    pub log_requests: bool,
    pub emulator_ttft_ms: i32,
    pub emulator_tokens_per_second: i32,
    pub cache_fixtures_dir: Option<String>,
    pub declared_in: Option<String>,
    pub cache_ignore_fields: String,
    pub cache_stream_replay: String,
    pub daily_spend_cap_usd: Option<f64>,
}

/// The user-editable settings of a proxy; every field is written (the registry holds the whole
/// validated configuration, so it always has every value at hand).
#[derive(Debug, AsChangeset)]
#[diesel(table_name = proxies)]
#[diesel(treat_none_as_null = true)]
pub struct ProxySettingsChange {
    pub name: String,
    pub port: i32,
    pub description: String,
    pub tags: String,
    pub upstream_url: Option<String>,
    pub cache_enabled: bool,
    pub cache_mode: String,
    pub cache_ttl_seconds: Option<i64>,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    pub updated_at: NaiveDateTime,
    pub cache_partition_by_credential: bool,
    pub emulator_ttft_ms: i32,
    pub emulator_tokens_per_second: i32,
    pub log_requests: bool,
    pub cache_fixtures_dir: Option<String>,
    pub cache_ignore_fields: String,
    pub cache_stream_replay: String,
    pub daily_spend_cap_usd: Option<f64>,
}

/// A deleted proxy, remembered so its owner can still read its logs and numbers.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::deleted_proxies)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct DeletedProxyRow {
    pub id: i32,
    pub owner_id: i32,
    pub name: String,
    pub deleted_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::cache_entries)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct CacheEntryRow {
    pub proxy_id: i32,
    pub cache_key: String,
    pub status: i32,
    pub headers: String,
    pub body: Vec<u8>,
    pub chunks: Option<String>,
    pub size_bytes: i64,
    pub created_at: NaiveDateTime,
    /// When it was stored or last hit: the least recently used go first when over budget.
    pub last_used_at: NaiveDateTime,
    /// The request and what a fixture file says beside the answer (`cache::Recording`, as
    /// JSON).
    pub recording: Option<String>,
}

/// A UTC time as microseconds since the Unix epoch: how request logs store their time, because
/// the writer binds an integer far more cheaply than it formats a date as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = BigInt)]
pub struct UnixMicros(i64);

impl From<NaiveDateTime> for UnixMicros {
    fn from(time: NaiveDateTime) -> Self {
        UnixMicros(time.and_utc().timestamp_micros())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a stored time of {0} microseconds is out of range")]
pub struct TimeOutOfRange(i64);

impl TryFrom<UnixMicros> for NaiveDateTime {
    type Error = TimeOutOfRange;

    fn try_from(UnixMicros(micros): UnixMicros) -> Result<Self, Self::Error> {
        DateTime::from_timestamp_micros(micros)
            .map(|time| time.naive_utc())
            .ok_or(TimeOutOfRange(micros))
    }
}

impl ToSql<BigInt, Sqlite> for UnixMicros {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0);
        Ok(IsNull::No)
    }
}

impl FromSql<BigInt, Sqlite> for UnixMicros {
    fn from_sql(value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        i64::from_sql(value).map(UnixMicros)
    }
}

/// A request log entry as [`super::request_logs::insert`] writes it; `LogRow` adds the id. Its texts
/// are mostly short and kept inline: the row is built on a worker and freed by the writer, and every
/// heap block freed on another thread costs the worker a cache miss when it reuses the block.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NewLogRow {
    pub timestamp: NaiveDateTime,
    pub proxy_id: i32,
    pub proxy_name: CompactString,
    pub provider: CompactString,
    pub method: CompactString,
    pub path: CompactString,
    pub model: Option<CompactString>,
    pub client_ip: CompactString,
    pub status: i32,
    pub latency_ms: f64,
    pub upstream_latency_ms: Option<f64>,
    pub cache: CompactString,
    pub failure: Option<CompactString>,
    pub stream: bool,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub prompt_hash: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    pub error_message: Option<CompactString>,
    /// The test id of a request scoped with `X-Rubberduck-Scenario`.
    pub scenario: Option<CompactString>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::request_logs)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct LogRow {
    pub id: i32,
    #[diesel(deserialize_as = UnixMicros)]
    pub timestamp: NaiveDateTime,
    pub proxy_id: i32,
    pub proxy_name: String,
    pub provider: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub client_ip: String,
    pub status: i32,
    pub latency_ms: f64,
    pub upstream_latency_ms: Option<f64>,
    pub cache: String,
    pub failure: Option<String>,
    pub stream: bool,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub prompt_hash: Option<String>,
    pub user_agent: Option<String>,
    pub error_message: Option<String>,
    pub scenario: Option<String>,
}

#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = super::schema::metric_rollups)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct RollupRow {
    pub proxy_id: i32,
    pub minute: NaiveDateTime,
    pub requests: i64,
    pub errors: i64,
    pub cache_hits: i64,
    pub injected_failures: i64,
    pub upstream_failures: i64,
    pub latency_sum_ms: f64,
    pub latency_histogram: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub saved_usd: f64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::users)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct UserRow {
    pub id: i32,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub disabled_at: Option<NaiveDateTime>,
    pub deleted_at: Option<NaiveDateTime>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = super::schema::users)]
pub struct NewUserRow<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = super::schema::sessions)]
pub struct NewSessionRow<'a> {
    pub token_hash: &'a str,
    pub user_id: i32,
    pub csrf_token: &'a str,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::sessions)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct SessionRow {
    pub id: i32,
    pub user_id: i32,
    pub csrf_token: String,
    pub last_seen_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::api_tokens)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct ApiTokenRow {
    pub id: i32,
    pub user_id: i32,
    pub name: String,
    pub prefix: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = super::schema::api_tokens)]
pub struct NewApiTokenRow<'a> {
    pub user_id: i32,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub prefix: &'a str,
    pub created_at: NaiveDateTime,
}
