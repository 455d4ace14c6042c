//! A proxy's recorded answers as fixtures: loaded from its directory, exported, imported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::{ManagedProxy, ProxyRegistry, RegistryError};
use crate::auth::Access;
use crate::cache::{CacheKey, KeyParts, Nearest, RecordedRequest};
use crate::db::DbError;
use crate::fixtures::{self, Archive, ArchiveFormat, Fixture, FixtureError, Rejected};
use crate::ids::ProxyId;
use crate::spec::ProxySpec;
use crate::telemetry;
use crate::validation::FieldError;

/// What loading a fixtures directory did.
#[derive(Debug, Clone, Serialize)]
pub struct FixturesLoad {
    pub dir: String,
    /// JSON files found.
    pub files: usize,
    /// Entries now in the cache.
    pub loaded: usize,
    pub rejected: Vec<Rejected>,
    pub millis: u64,
}

/// A request to explain, as `POST /api/proxies/{id}/cache/explain` takes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    pub method: Option<String>,
    pub path: String,
    pub query: Option<String>,
    /// The body as JSON (a string is sent as text).
    pub body: serde_json::Value,
    pub cassette: Option<String>,
}

/// Whether a request is cached, and the entries nearest to it.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub key: String,
    pub cached: bool,
    pub nearest: Vec<Nearest>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub added: usize,
    pub replaced: usize,
    pub rejected: Vec<Rejected>,
}

fn invalid(field: &'static str, error: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid(vec![FieldError::new(field, error.to_string())])
}

/// Runs blocking file or archive work off the request path.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FixtureError> + Send + 'static,
) -> Result<Result<T, FixtureError>, RegistryError> {
    actix_web::web::block(work)
        .await
        .map_err(|e| RegistryError::Database(DbError::Corrupt(format!("a task failed: {e}"))))
}

impl ProxyRegistry {
    /// Replaces a proxy's cache with the contents of its fixtures directory (made first if it
    /// does not exist and the proxy records).
    pub async fn reload_fixtures(
        &self,
        id: ProxyId,
        access: Access,
    ) -> Result<FixturesLoad, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        self.load_fixtures(&proxy).await
    }

    pub(super) async fn load_fixtures(
        &self,
        proxy: &Arc<ManagedProxy>,
    ) -> Result<FixturesLoad, RegistryError> {
        let spec = proxy.live.spec.load_full();
        let Some(dir) = spec.cache.fixtures_dir.clone() else {
            return Err(invalid(
                "cache.fixtures_dir",
                "This proxy is not bound to a fixtures directory.",
            ));
        };
        let started = Instant::now();
        let records = spec.cache.mode.records();
        let reading = Arc::clone(&spec);
        let read_dir = dir.clone();
        let loaded = blocking(move || {
            if !read_dir.exists() && records {
                std::fs::create_dir_all(&read_dir).map_err(|source| FixtureError::Io {
                    path: read_dir.display().to_string(),
                    source,
                })?;
            }
            fixtures::load_dir(&read_dir, &reading)
        })
        .await?
        .map_err(|e| {
            invalid(
                "cache.fixtures_dir",
                format!("Cannot read the fixtures: {e}"),
            )
        })?;
        for rejected in &loaded.rejected {
            log::warn!(
                "proxy {}: fixture {} in {}: {}",
                spec.name,
                rejected.file,
                dir.display(),
                rejected.reason
            );
        }
        let count = loaded.rows.len();
        self.cache.replace(spec.id, true, loaded.rows).await?;
        let report = FixturesLoad {
            dir: dir.display().to_string(),
            files: loaded.files,
            loaded: count,
            rejected: loaded.rejected,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        log::info!(
            "proxy {}: {} fixtures loaded from {} in {} ms ({} rejected)",
            spec.name,
            report.loaded,
            report.dir,
            report.millis,
            report.rejected.len()
        );
        *super::lock(&proxy.fixtures) = Some(report.clone());
        Ok(report)
    }

    /// The last load of the proxy's fixtures directory, if it is bound to one.
    pub fn fixtures_load(&self, id: ProxyId, access: Access) -> Option<FixturesLoad> {
        let proxy = self.entry_for(id, access).ok()?;
        let report = super::lock(&proxy.fixtures).clone();
        report.filter(|_| proxy.live.spec.load().cache.fixtures_dir.is_some())
    }

    /// Whether a request would be answered from the proxy's cache, and the recorded entries
    /// nearest to it with the JSON paths in which they differ.
    pub async fn explain_request(
        &self,
        id: ProxyId,
        access: Access,
        asked: ExplainRequest,
    ) -> Result<Explanation, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let spec = proxy.live.spec.load_full();
        let method = asked
            .method
            .as_deref()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        let parsed = actix_web::http::Method::from_bytes(method.as_bytes())
            .map_err(|_| invalid("method", format!("“{method}” is not an HTTP method.")))?;
        if !asked.path.starts_with('/') {
            return Err(invalid("path", "The path must start with /."));
        }
        let body = match &asked.body {
            serde_json::Value::String(text) => text.clone().into_bytes(),
            json => serde_json::to_vec(json).map_err(|e| invalid("body", e))?,
        };
        let provider = spec.provider.provider();
        let key = CacheKey::of(
            provider,
            &KeyParts {
                method: &parsed,
                path: &asked.path,
                query: asked.query.as_deref(),
                headers: &actix_web::http::header::HeaderMap::new(),
                body: &body,
                partition_by_credential: false,
                emulated: spec.emulated(),
                cassette: asked.cassette.as_deref(),
                ignore_fields: &spec.cache.ignore_fields,
            },
        );
        let cached = self.cache.holds(id, &key).await?;
        let request = RecordedRequest::of(
            provider,
            &method,
            &asked.path,
            asked.query.as_deref(),
            &body,
        );
        let model = telemetry::model_of(provider, &asked.path, &body);
        let nearest = self
            .cache
            .explain(
                id,
                request,
                model,
                asked.cassette.clone(),
                spec.cache.ignore_fields.clone(),
                5,
            )
            .await?;
        Ok(Explanation {
            key: key.to_string(),
            cached,
            nearest,
        })
    }

    /// Every entry of the proxy's cache as fixture files, packed.
    pub async fn export_cache(
        &self,
        id: ProxyId,
        access: Access,
        format: ArchiveFormat,
    ) -> Result<(String, Vec<u8>), RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let spec = proxy.live.spec.load_full();
        let rows = self.cache.entries(id).await?;
        let provider = spec.provider;
        let packed = blocking(move || {
            let fixtures = fixtures::of_rows(id, provider, &rows);
            Archive::pack(&fixtures, format)
        })
        .await?
        .map_err(|e| invalid("format", e))?;
        let name = format!("{}-fixtures.{}", file_safe(&spec.name), format.extension());
        Ok((name, packed))
    }

    /// Merges fixtures (a `.tar.gz` or JSONL) into the proxy's cache, and into its fixtures
    /// directory when it is bound to one and records.
    pub async fn import_cache(
        &self,
        id: ProxyId,
        access: Access,
        upload: Vec<u8>,
    ) -> Result<ImportReport, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let spec = proxy.live.spec.load_full();
        let read = blocking(move || fixtures::read_archive(&upload, fixtures::MAX_UNPACKED_BYTES))
            .await?
            .map_err(|e| invalid("file", e))?;
        let mut rejected = Vec::new();
        let mut accepted: Vec<Fixture> = Vec::new();
        let mut rows = Vec::new();
        let mut keys = std::collections::HashMap::new();
        for item in read {
            let (place, fixture) = match item {
                Ok(found) => found,
                Err(refused) => {
                    rejected.push(refused);
                    continue;
                }
            };
            match fixture.clone().into_row(&spec) {
                Ok((key, row)) => {
                    let mut fixture = fixture;
                    fixture.key = key.to_string();
                    if let Some(&earlier) = keys.get(&key) {
                        rows[earlier] = row;
                        accepted[earlier] = fixture;
                    } else {
                        keys.insert(key, rows.len());
                        rows.push(row);
                        accepted.push(fixture);
                    }
                }
                Err(e) => rejected.push(Rejected {
                    file: place,
                    reason: e.to_string(),
                }),
            }
        }
        let outcome = self.cache.replace(id, false, rows).await?;
        if let Some(dir) = spec
            .cache
            .fixtures_dir
            .clone()
            .filter(|_| spec.cache.mode.records())
        {
            write_all(dir, accepted).await?;
        }
        Ok(ImportReport {
            added: outcome.added,
            replaced: outcome.replaced,
            rejected,
        })
    }

    /// Loads the fixtures of a proxy about to start; `Err` is why it cannot start.
    pub(super) async fn load_fixtures_before_start(
        &self,
        proxy: &Arc<ManagedProxy>,
        spec: &ProxySpec,
    ) -> Result<(), String> {
        if spec.cache.fixtures_dir.is_none() || !spec.cache.enabled {
            return Ok(());
        }
        self.load_fixtures(proxy)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

async fn write_all(dir: PathBuf, accepted: Vec<Fixture>) -> Result<(), RegistryError> {
    blocking(move || {
        for fixture in &accepted {
            fixtures::write_now(&dir, fixture)?;
        }
        Ok(())
    })
    .await?
    .map_err(|e| {
        invalid(
            "cache.fixtures_dir",
            format!("Cannot write the fixtures: {e}"),
        )
    })
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
