//! Row structs: one for reading, separate ones for inserting and updating (Lemmy's habit).

use chrono::NaiveDateTime;
use diesel::prelude::*;

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
}
