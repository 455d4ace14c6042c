//! Queries on the `proxies` table.

use std::path::PathBuf;

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use super::DbError;
use super::models::{DeletedProxyRow, NewProxyRow, ProxyRow, ProxySettingsChange};
use super::schema::deleted_proxies;
use super::schema::proxies::dsl;
use crate::emulator::EmulatorSettings;
use crate::faults::FailureConfig;
use crate::ids::{ProxyId, UserId};
use crate::providers::UnknownProvider;
use crate::spec::{CacheSettings, DeletedProxy, ProxySpec, ValidProxy};

pub fn all(conn: &mut SqliteConnection) -> Result<Vec<ProxyRow>, DbError> {
    Ok(dsl::proxies
        .select(ProxyRow::as_select())
        .order(dsl::id.asc())
        .load(conn)?)
}

pub fn insert(conn: &mut SqliteConnection, row: &NewProxyRow) -> Result<ProxyRow, DbError> {
    Ok(diesel::insert_into(dsl::proxies)
        .values(row)
        .returning(ProxyRow::as_returning())
        .get_result(conn)?)
}

pub fn update_settings(
    conn: &mut SqliteConnection,
    id: i32,
    change: &ProxySettingsChange,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set(change)
        .execute(conn)?;
    Ok(())
}

pub fn set_runtime_state(
    conn: &mut SqliteConnection,
    id: i32,
    desired_state: &str,
    last_error: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set((
            dsl::desired_state.eq(desired_state),
            dsl::last_error.eq(last_error),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes the proxy and remembers it as `deleted`, in one transaction.
pub fn delete(conn: &mut SqliteConnection, deleted: &DeletedProxyRow) -> Result<(), DbError> {
    conn.immediate_transaction(|conn| {
        diesel::insert_into(deleted_proxies::table)
            .values(deleted)
            .execute(conn)?;
        diesel::delete(dsl::proxies.find(deleted.id)).execute(conn)?;
        Ok(())
    })
}

pub fn all_deleted(conn: &mut SqliteConnection) -> Result<Vec<DeletedProxyRow>, DbError> {
    Ok(deleted_proxies::table
        .select(DeletedProxyRow::as_select())
        .order(deleted_proxies::id.asc())
        .load(conn)?)
}

/// Marks a proxy as declared in a config file, or (`None`) as no longer declared.
pub fn set_declared_in(
    conn: &mut SqliteConnection,
    id: i32,
    file: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set(dsl::declared_in.eq(file))
        .execute(conn)?;
    Ok(())
}

pub fn set_failure_config(
    conn: &mut SqliteConnection,
    id: i32,
    failure_config: &str,
) -> Result<(), DbError> {
    diesel::update(dsl::proxies.find(id))
        .set(dsl::failure_config.eq(failure_config))
        .execute(conn)?;
    Ok(())
}

impl TryFrom<ProxyRow> for ProxySpec {
    type Error = DbError;

    fn try_from(row: ProxyRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| DbError::Corrupt(format!("proxy {}: {what}", row.id));
        Ok(ProxySpec {
            id: ProxyId(row.id),
            provider: row
                .provider
                .parse()
                .map_err(|e: UnknownProvider| corrupt(&e.to_string()))?,
            port: u16::try_from(row.port).map_err(|_| corrupt("port out of range"))?,
            tags: serde_json::from_str(&row.tags).map_err(|_| corrupt("tags are not a list"))?,
            cache: CacheSettings {
                enabled: row.cache_enabled,
                mode: row.cache_mode.parse().map_err(|e: String| corrupt(&e))?,
                ttl_seconds: row
                    .cache_ttl_seconds
                    .map(|ttl| u64::try_from(ttl).map_err(|_| corrupt("negative cache TTL")))
                    .transpose()?,
                partition_by_credential: row.cache_partition_by_credential,
                fixtures_dir: row.cache_fixtures_dir.map(PathBuf::from),
                ignore_fields: serde_json::from_str(&row.cache_ignore_fields)
                    .map_err(|_| corrupt("ignored cache fields are not a list"))?,
                stream_replay: row
                    .cache_stream_replay
                    .parse()
                    .map_err(|e: String| corrupt(&e))?,
            },
            failure_config: serde_json::from_str::<serde_json::Value>(&row.failure_config)
                .ok()
                .and_then(|json| FailureConfig::from_json(json).ok())
                .filter(|config| config.validate().is_ok())
                .ok_or_else(|| corrupt("failure config is not valid"))?,
            owner: UserId(row.owner_id.ok_or_else(|| corrupt("no owner"))?),
            emulator: EmulatorSettings {
                ttft_ms: u32::try_from(row.emulator_ttft_ms)
                    .map_err(|_| corrupt("negative emulator time to first token"))?,
                tokens_per_second: u32::try_from(row.emulator_tokens_per_second)
                    .ok()
                    .filter(|tps| *tps > 0)
                    .ok_or_else(|| corrupt("emulator tokens per second not positive"))?,
            },
            log_requests: row.log_requests,
            name: row.name,
            description: row.description,
            upstream_url: row.upstream_url,
            vertex_service_account_file: row.vertex_service_account_file,
            aws_region: row.aws_region,
            created_at: row.created_at.and_utc(),
            declared_in: row.declared_in.map(PathBuf::from),
            daily_spend_cap_usd: row.daily_spend_cap_usd,
        })
    }
}

impl From<DeletedProxyRow> for DeletedProxy {
    fn from(row: DeletedProxyRow) -> Self {
        DeletedProxy {
            id: ProxyId(row.id),
            owner: UserId(row.owner_id),
            name: row.name,
        }
    }
}

impl DeletedProxyRow {
    pub fn of(proxy: &DeletedProxy, deleted_at: NaiveDateTime) -> Self {
        DeletedProxyRow {
            id: proxy.id.0,
            owner_id: proxy.owner.0,
            name: proxy.name.clone(),
            deleted_at,
        }
    }
}

impl NewProxyRow {
    /// A new proxy of `owner` on `port`, stopped, with no failures configured.
    pub fn of(valid: &ValidProxy, port: u16, owner: UserId) -> Self {
        let now = Utc::now().naive_utc();
        NewProxyRow {
            name: valid.name.clone(),
            provider: valid.provider.id().to_owned(),
            port: port.into(),
            description: valid.description.clone(),
            tags: tags_json(&valid.tags),
            upstream_url: valid.upstream_url.clone(),
            desired_state: "stopped".to_owned(),
            failure_config: "{}".to_owned(),
            cache_enabled: valid.cache.enabled,
            cache_mode: valid.cache.mode.as_str().to_owned(),
            cache_ttl_seconds: ttl_column(valid),
            vertex_service_account_file: valid.vertex_service_account_file.clone(),
            aws_region: valid.aws_region.clone(),
            created_at: now,
            updated_at: now,
            cache_partition_by_credential: valid.cache.partition_by_credential,
            owner_id: Some(owner.0),
            emulator_ttft_ms: emulator_column(valid.emulator.ttft_ms),
            emulator_tokens_per_second: emulator_column(valid.emulator.tokens_per_second),
            log_requests: valid.log_requests,
            cache_fixtures_dir: fixtures_dir_column(valid),
            declared_in: None,
            cache_ignore_fields: tags_json(&valid.cache.ignore_fields),
            cache_stream_replay: valid.cache.stream_replay.as_text(),
            daily_spend_cap_usd: valid.daily_spend_cap_usd,
        }
    }
}

impl ProxySettingsChange {
    /// An edit of everything a user may change, the port included.
    pub fn of(valid: &ValidProxy, port: u16) -> Self {
        ProxySettingsChange {
            name: valid.name.clone(),
            port: port.into(),
            description: valid.description.clone(),
            tags: tags_json(&valid.tags),
            upstream_url: valid.upstream_url.clone(),
            cache_enabled: valid.cache.enabled,
            cache_mode: valid.cache.mode.as_str().to_owned(),
            cache_ttl_seconds: ttl_column(valid),
            vertex_service_account_file: valid.vertex_service_account_file.clone(),
            aws_region: valid.aws_region.clone(),
            updated_at: Utc::now().naive_utc(),
            cache_partition_by_credential: valid.cache.partition_by_credential,
            emulator_ttft_ms: emulator_column(valid.emulator.ttft_ms),
            emulator_tokens_per_second: emulator_column(valid.emulator.tokens_per_second),
            log_requests: valid.log_requests,
            cache_fixtures_dir: fixtures_dir_column(valid),
            cache_ignore_fields: tags_json(&valid.cache.ignore_fields),
            cache_stream_replay: valid.cache.stream_replay.as_text(),
            daily_spend_cap_usd: valid.daily_spend_cap_usd,
        }
    }
}

fn fixtures_dir_column(valid: &ValidProxy) -> Option<String> {
    valid
        .cache
        .fixtures_dir
        .as_ref()
        .map(|dir| dir.to_string_lossy().into_owned())
}

/// Validation bounds the emulator settings far below `i32::MAX`.
fn emulator_column(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A list of strings as JSON (tags, ignored fields).
fn tags_json(tags: &[String]) -> String {
    serde_json::Value::from(tags.to_vec()).to_string()
}

fn ttl_column(valid: &ValidProxy) -> Option<i64> {
    valid
        .cache
        .ttl_seconds
        .map(|ttl| i64::try_from(ttl).unwrap_or(i64::MAX))
}
