//! A proxy's cache entries one by one: a page of them (searchable), one in full as its fixture,
//! deleting one. Each asks first whether the caller may see the proxy.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ProxyRegistry, RegistryError};
use crate::auth::Access;
use crate::cache::{CacheKey, StoredEntry};
use crate::db::DbError;
use crate::fixtures::{self, Fixture};
use crate::ids::ProxyId;

/// The most entries one page lists.
pub const MAX_ENTRIES_PER_PAGE: u64 = 500;

/// One entry as a list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryListing {
    pub key: String,
    /// What the request does (`chat`, `messages`, `converse-stream`, …), named as its fixture
    /// file is; `None` when the request was not recorded.
    pub kind: Option<String>,
    pub model: Option<String>,
    /// The start of the prompt.
    pub prompt: Option<String>,
    pub size_bytes: u64,
    pub hits: u64,
    pub recorded_at: DateTime<Utc>,
    pub last_hit_at: Option<DateTime<Utc>>,
    pub stream: bool,
    /// Whether the request is known: entries stored before fixtures existed have none.
    #[serde(skip)]
    pub recorded: bool,
}

impl EntryListing {
    fn of(entry: StoredEntry) -> Self {
        let recording = entry.recording;
        EntryListing {
            kind: recording
                .as_ref()
                .filter(|r| !r.request.path.is_empty())
                .map(|r| fixtures::kind_of(&r.request.path)),
            model: recording.as_ref().and_then(|r| r.model.clone()),
            prompt: recording.as_ref().and_then(|r| r.request.prompt()),
            recorded: recording.is_some(),
            key: entry.key,
            size_bytes: entry.size_bytes,
            hits: entry.hits,
            recorded_at: entry.recorded_at,
            last_hit_at: entry.last_hit_at,
            stream: entry.stream,
        }
    }
}

/// A page of entries and how many match in all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EntriesPage {
    pub entries: Vec<EntryListing>,
    pub total: u64,
}

/// Which entries to list: those whose recorded request contains `search` (a model, words of a
/// prompt), newest first, `limit` of them after the first `offset`.
#[derive(Debug, Clone, Default)]
pub struct EntriesQuery {
    pub search: Option<String>,
    pub limit: u64,
    pub offset: u64,
}

fn entry_key(key: &str) -> Result<CacheKey, RegistryError> {
    CacheKey::from_hex(key).ok_or_else(|| RegistryError::EntryNotFound(key.to_owned()))
}

impl ProxyRegistry {
    /// A page of the entries of a proxy `access` may see.
    pub async fn cache_entries(
        &self,
        id: ProxyId,
        access: Access,
        query: EntriesQuery,
    ) -> Result<EntriesPage, RegistryError> {
        self.entry_for(id, access)?;
        let search = query.search.filter(|s| !s.trim().is_empty());
        let limit = query.limit.min(MAX_ENTRIES_PER_PAGE);
        let page = self.cache.page(id, search, limit, query.offset).await?;
        Ok(EntriesPage {
            entries: page.entries.into_iter().map(EntryListing::of).collect(),
            total: page.total,
        })
    }

    /// One entry of a proxy `access` may see, whole, as its fixture file holds it.
    pub async fn cache_entry(
        &self,
        id: ProxyId,
        access: Access,
        key: &str,
    ) -> Result<Fixture, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let parsed = entry_key(key)?;
        let row = self
            .cache
            .entry(id, parsed)
            .await?
            .ok_or_else(|| RegistryError::EntryNotFound(key.to_owned()))?;
        let provider = proxy.live.spec.load().provider;
        Fixture::of_row(provider, &row)
            .map_err(|e| RegistryError::Database(DbError::Corrupt(e.to_string())))
    }

    /// Deletes one entry of a proxy `access` may change; the same request misses from then on.
    pub async fn delete_cache_entry(
        &self,
        id: ProxyId,
        access: Access,
        key: &str,
    ) -> Result<(), RegistryError> {
        self.entry_for(id, access)?;
        if self.cache.delete(id, entry_key(key)?).await? {
            Ok(())
        } else {
            Err(RegistryError::EntryNotFound(key.to_owned()))
        }
    }
}
