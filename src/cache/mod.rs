//! The response cache: an in-memory LRU tier (bounded in bytes) in front of SQLite, which keeps
//! entries across restarts. Lookups never wait on a write; writes go through the DB writer.
//!
//! What SQLite keeps is bounded by a [`CacheBudget`]: after each batch of writes (on the writer's
//! thread, never a request's) the least recently stored or hit entries of a proxy over its
//! budget, then of the whole cache over the total, are deleted from both tiers.

mod control;
mod explain;
mod key;
mod live;
mod recording;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use control::{CACHE_HEADER, CASSETTE_HEADER, Directive, Handling, RequestControl};
pub use explain::{Nearest, differing_paths};
pub use key::{CacheKey, KeyParts};
pub use live::{Follower, Leader};
use live::{Leaders, MemoryKey};
pub use recording::{Payload, RecordedChunk, RecordedRequest, Recording};

use crate::db::models::CacheEntryRow;
use crate::db::writer::{BatchReport, CacheReplacement, DbWriter, Replaced, WriteOp};
use crate::db::{self, DbError, DbPool};
use crate::ids::ProxyId;
use crate::providers::Usage;

/// Answers larger than this are passed through but not cached.
pub const MAX_ENTRY_BYTES: usize = 32 << 20;

/// How many eviction candidates are read at a time.
const EVICTION_ROUND: i64 = 256;

/// How many bytes of stored answers (bodies) SQLite may hold; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheBudget {
    /// All proxies together.
    pub total_bytes: u64,
    /// Each proxy.
    pub per_proxy_bytes: u64,
}

impl CacheBudget {
    /// Whether an answer of this size can be kept at all.
    pub fn fits(&self, bytes: u64) -> bool {
        [self.total_bytes, self.per_proxy_bytes]
            .iter()
            .all(|&limit| limit == 0 || bytes <= limit)
    }
}

/// What a hit replays: the status, the content headers and the body, chunk by chunk for a
/// stream.
#[derive(Debug)]
pub struct CachedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Lengths of the chunks a stream arrived in; `None` for a plain body.
    pub chunks: Option<Vec<usize>>,
    /// Milliseconds each chunk arrived after the one before (the first: after the head), where
    /// they were recorded.
    pub gaps_ms: Vec<u64>,
    pub created_at: DateTime<Utc>,
    /// The tokens the stored answer reports, read once and reused by every hit.
    pub usage: OnceLock<Usage>,
}

impl CachedResponse {
    fn weight(&self) -> u32 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let lists = (self.gaps_ms.len() + self.chunks.as_ref().map_or(0, Vec::len)) * 8;
        u32::try_from(self.body.len() + headers + lists + 128).unwrap_or(u32::MAX)
    }

    fn is_fresh(&self, ttl_seconds: Option<u64>, now: DateTime<Utc>) -> bool {
        ttl_seconds.is_none_or(|ttl| {
            let age = now.signed_duration_since(self.created_at).num_seconds();
            u64::try_from(age).unwrap_or(0) < ttl
        })
    }

    /// The stored answer as a response; a stream goes out again chunk by chunk.
    pub fn replay(&self) -> actix_web::HttpResponseBuilder {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut builder = HttpResponse::build(status);
        for (name, value) in &self.headers {
            builder.append_header((name.as_str(), value.as_str()));
        }
        builder
    }

    pub fn body_chunks(&self) -> Vec<Bytes> {
        match &self.chunks {
            None => vec![self.body.clone()],
            Some(lengths) => {
                let mut offset = 0;
                lengths
                    .iter()
                    .map(|length| {
                        let end = (offset + length).min(self.body.len());
                        let chunk = self.body.slice(offset..end);
                        offset = end;
                        chunk
                    })
                    .collect()
            }
        }
    }

    pub fn from_row(row: CacheEntryRow) -> Option<Self> {
        Some(CachedResponse {
            status: u16::try_from(row.status).ok()?,
            headers: serde_json::from_str(&row.headers).ok()?,
            chunks: match row.chunks {
                Some(chunks) => Some(serde_json::from_str(&chunks).ok()?),
                None => None,
            },
            body: Bytes::from(row.body),
            created_at: row.created_at.and_utc(),
            usage: OnceLock::new(),
            gaps_ms: row
                .recording
                .as_deref()
                .and_then(|json| serde_json::from_str::<RecordedGaps>(json).ok())
                .map(|gaps| gaps.chunk_gaps_ms)
                .unwrap_or_default(),
        })
    }

    pub fn to_row(
        &self,
        proxy: ProxyId,
        key: &CacheKey,
        recording: Option<&Recording>,
    ) -> CacheEntryRow {
        CacheEntryRow {
            recording: recording.and_then(|r| serde_json::to_string(r).ok()),
            proxy_id: proxy.0,
            cache_key: key.to_string(),
            status: i32::from(self.status),
            headers: serde_json::to_string(&self.headers).unwrap_or_else(|_| "[]".into()),
            body: self.body.to_vec(),
            chunks: self
                .chunks
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
            size_bytes: i64::try_from(self.body.len()).unwrap_or(i64::MAX),
            created_at: self.created_at.naive_utc(),
            last_used_at: self.created_at.naive_utc(),
        }
    }
}

/// Only the timing of a recording, read without keeping the rest.
#[derive(serde::Deserialize)]
struct RecordedGaps {
    #[serde(default)]
    chunk_gaps_ms: Vec<u64>,
}

/// Response headers worth replaying: what describes the content. Request ids, rate-limit
/// counters and dates belong to the original exchange.
pub fn is_content_header(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "content-encoding" | "content-language"
    ) || name.starts_with("x-amzn-bedrock-")
}

#[derive(Debug, Default)]
struct ProxyStats {
    hits: AtomicU64,
    misses: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    evictions: AtomicU64,
    /// Counts clears and replacements: an entry read from SQLite before one goes into memory
    /// only if none happened meanwhile (held for reading while it goes in).
    generation: RwLock<u64>,
}

impl ProxyStats {
    fn generation(&self) -> u64 {
        *self.generation.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// What [`ResponseCache::lookup`] found.
pub enum Lookup {
    Hit(Arc<CachedResponse>),
    /// An identical request is streaming this answer from upstream right now: this one gets
    /// its chunks as they arrive.
    Follow(Follower),
    /// No answer; with a [`Leader`] when this request is the one to fetch and record it.
    Miss(Option<Leader>),
}

/// A request body as explanations compare it: its JSON, else its text as one string.
fn comparable_body(payload: &Payload) -> serde_json::Value {
    match (&payload.body, &payload.body_text, &payload.body_base64) {
        (Some(json), _, _) => json.clone(),
        (None, Some(text), _) => serde_json::Value::String(text.clone()),
        (None, None, Some(base64)) => serde_json::Value::String(base64.clone()),
        (None, None, None) => serde_json::Value::Null,
    }
}

/// A body as the key sees it: without the fields the proxy leaves out of its keys.
fn keyed_body(payload: &Payload, ignore_fields: &[String]) -> serde_json::Value {
    let mut body = comparable_body(payload);
    for path in ignore_fields {
        key::remove_path(&mut body, path);
    }
    body
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per-proxy numbers for pages and the API.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct CacheCounts {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    /// Entries deleted since the start to keep within the budgets.
    pub evictions: u64,
}

impl CacheCounts {
    /// Hits over lookups since start, as a whole percentage.
    pub fn hit_rate_percent(&self) -> Option<u64> {
        let lookups = self.hits + self.misses;
        (lookups > 0).then(|| (self.hits * 100 + lookups / 2) / lookups)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheInfo {
    #[serde(flatten)]
    pub counts: CacheCounts,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

/// One stored entry as a list shows it; its answer is not read.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub key: String,
    /// The answer's size (its body).
    pub size_bytes: u64,
    pub hits: u64,
    pub recorded_at: DateTime<Utc>,
    pub last_hit_at: Option<DateTime<Utc>>,
    /// Replayed chunk by chunk.
    pub stream: bool,
    /// The request it answers; `None` for an entry stored before requests were recorded.
    pub recording: Option<Recording>,
}

impl StoredEntry {
    fn of(row: db::cache_entries::EntrySummary) -> Self {
        let recording = row.recording.as_deref().and_then(|json| {
            serde_json::from_str(json)
                .map_err(|e| log::warn!("entry {}: recording unreadable: {e}", row.cache_key))
                .ok()
        });
        StoredEntry {
            key: row.cache_key,
            size_bytes: row.size_bytes.unsigned_abs(),
            hits: row.hit_count.unsigned_abs(),
            recorded_at: row.created_at.and_utc(),
            last_hit_at: row.last_hit_at.map(|t| t.and_utc()),
            stream: row.stream,
            recording,
        }
    }
}

/// A page of a proxy's entries and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct EntryPage {
    pub entries: Vec<StoredEntry>,
    pub total: u64,
}

/// The whole cache, for the Settings page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub entries: u64,
    pub bytes: u64,
    pub evictions: u64,
}

pub struct ResponseCache {
    memory: moka::sync::Cache<MemoryKey, Arc<CachedResponse>>,
    db: DbPool,
    writer: Arc<DbWriter>,
    stats: RwLock<HashMap<ProxyId, Arc<ProxyStats>>>,
    total_budget: AtomicU64,
    proxy_budget: AtomicU64,
    /// Held while totals are read and entries evicted, so two passes never race.
    enforcing: Mutex<()>,
    /// Keys being fetched by a request that identical ones wait for.
    leaders: Arc<Leaders>,
    /// Entries handed to the writer and not yet taken by it, with their sizes and times:
    /// counted by [`ResponseCache::info`] before they are in SQLite.
    unflushed: Mutex<HashMap<MemoryKey, (u64, DateTime<Utc>)>>,
}

impl ResponseCache {
    pub fn new(db: DbPool, writer: Arc<DbWriter>, memory_budget_bytes: u64) -> Self {
        ResponseCache {
            memory: moka::sync::Cache::builder()
                .max_capacity(memory_budget_bytes)
                .weigher(|_, response: &Arc<CachedResponse>| response.weight())
                .support_invalidation_closures()
                .build(),
            db,
            writer,
            stats: RwLock::new(HashMap::new()),
            total_budget: AtomicU64::new(0),
            proxy_budget: AtomicU64::new(0),
            enforcing: Mutex::new(()),
            leaders: Arc::default(),
            unflushed: Mutex::default(),
        }
    }

    pub fn budget(&self) -> CacheBudget {
        CacheBudget {
            total_bytes: self.total_budget.load(Ordering::Relaxed),
            per_proxy_bytes: self.proxy_budget.load(Ordering::Relaxed),
        }
    }

    /// Sets the budgets the next batch of writes is held to (see [`ResponseCache::apply_budget`]
    /// to evict at once).
    pub fn set_budget(&self, budget: CacheBudget) {
        self.total_budget
            .store(budget.total_bytes, Ordering::Relaxed);
        self.proxy_budget
            .store(budget.per_proxy_bytes, Ordering::Relaxed);
    }

    /// Sets the budgets and evicts what no longer fits, on the blocking pool.
    pub async fn apply_budget(self: &Arc<Self>, budget: CacheBudget) -> Result<(), DbError> {
        self.set_budget(budget);
        let cache = Arc::clone(self);
        db::run(&self.db, move |conn| {
            let _one_pass = cache.enforcing.lock().unwrap_or_else(|p| p.into_inner());
            cache.enforce_budget(conn, &BTreeSet::new())
        })
        .await
    }

    fn stats(&self, proxy: ProxyId) -> Arc<ProxyStats> {
        if let Some(stats) = self
            .stats
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&proxy)
        {
            return Arc::clone(stats);
        }
        let mut all = self.stats.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(all.entry(proxy).or_default())
    }

    /// Looks an answer up and counts the lookup as a hit or a miss. With `lead`, a miss is
    /// handed a [`Leader`] unless an identical request is already fetching the answer: then this
    /// one waits for it and looks again, so an answer is fetched (and paid for) once, and a
    /// request right after an answer ends never misses it.
    pub async fn lookup(
        &self,
        proxy: ProxyId,
        key: &CacheKey,
        ttl_seconds: Option<u64>,
        lead: bool,
    ) -> Lookup {
        let memory_key = (proxy, *key);
        let stats = self.stats(proxy);
        loop {
            if let Some(found) = self.find(proxy, key, ttl_seconds, &stats).await {
                return self.hit(proxy, key, found, &stats);
            }
            if !lead {
                stats.misses.fetch_add(1, Ordering::Relaxed);
                return Lookup::Miss(None);
            }
            let flight = {
                let mut leaders = lock(&self.leaders);
                match leaders.get(&memory_key) {
                    Some(flight) => flight.clone(),
                    None => {
                        let leader = Leader::start(&self.leaders, &mut leaders, memory_key);
                        // The previous leader may have stored it between the look and now.
                        if let Some(found) = self.fresh_in_memory(&memory_key, ttl_seconds) {
                            drop(leaders);
                            drop(leader);
                            return self.hit(proxy, key, found, &stats);
                        }
                        stats.misses.fetch_add(1, Ordering::Relaxed);
                        return Lookup::Miss(Some(leader));
                    }
                }
            };
            // Until the leader's stream begins, or the leader is done: stored, or given up.
            if let Some(follower) = flight.follow_or_wait().await {
                stats.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Follow(follower);
            }
        }
    }

    fn hit(
        &self,
        proxy: ProxyId,
        key: &CacheKey,
        found: Arc<CachedResponse>,
        stats: &ProxyStats,
    ) -> Lookup {
        stats.hits.fetch_add(1, Ordering::Relaxed);
        self.writer.submit(WriteOp::CacheHit {
            proxy_id: proxy.0,
            key: key.bytes(),
            at: Utc::now().naive_utc(),
        });
        Lookup::Hit(found)
    }

    fn fresh_in_memory(
        &self,
        memory_key: &MemoryKey,
        ttl_seconds: Option<u64>,
    ) -> Option<Arc<CachedResponse>> {
        self.memory
            .get(memory_key)
            .filter(|found| found.is_fresh(ttl_seconds, Utc::now()))
    }

    /// A fresh stored answer, from memory or else from SQLite (through the blocking pool). An
    /// expired one is deleted.
    async fn find(
        &self,
        proxy: ProxyId,
        key: &CacheKey,
        ttl_seconds: Option<u64>,
        stats: &ProxyStats,
    ) -> Option<Arc<CachedResponse>> {
        let memory_key = (proxy, *key);
        let found = match self.memory.get(&memory_key) {
            Some(found) => Some(found),
            None => {
                let generation = stats.generation();
                let text_key = key.to_string();
                let stored = db::run(&self.db, move |conn| {
                    db::cache_entries::find(conn, proxy.0, &text_key)
                })
                .await
                .unwrap_or_else(|e| {
                    log::warn!("cache lookup failed, treating as a miss: {e}");
                    None
                });
                let found = stored.and_then(CachedResponse::from_row).map(Arc::new);
                if let Some(found) = &found {
                    let current = stats.generation.read().unwrap_or_else(|p| p.into_inner());
                    // Read before a clear that has ended since: the entry is gone.
                    if *current != generation {
                        return None;
                    }
                    self.memory.insert(memory_key, Arc::clone(found));
                }
                found
            }
        };
        match found {
            Some(found) if found.is_fresh(ttl_seconds, Utc::now()) => Some(found),
            Some(_) => {
                self.memory.invalidate(&memory_key);
                self.writer.submit(WriteOp::DeleteCacheEntry {
                    proxy_id: proxy.0,
                    key: key.to_string(),
                });
                None
            }
            None => None,
        }
    }

    /// Keeps an answer: in memory at once, in SQLite through the writer. An answer larger
    /// than a budget is not kept at all. In memory first: a clear that starts meanwhile then
    /// finds it there, or (queued after the clear) it stays in both.
    pub fn store(
        &self,
        proxy: ProxyId,
        key: CacheKey,
        response: CachedResponse,
        recording: Option<&Recording>,
    ) {
        let size = u64::try_from(response.body.len()).unwrap_or(u64::MAX);
        if !self.budget().fits(size) {
            log::debug!("not caching an answer of {size} bytes: it exceeds the cache budget");
            return;
        }
        let row = response.to_row(proxy, &key, recording);
        let created_at = response.created_at;
        self.memory.insert((proxy, key), Arc::new(response));
        let mut unflushed = lock(&self.unflushed);
        unflushed.insert((proxy, key), (size, created_at));
        if !self.writer.submit(WriteOp::StoreCacheEntry(row)) {
            unflushed.remove(&(proxy, key));
        }
    }

    /// What the writer did with a batch: entries it took are no longer waiting; totals of the
    /// proxies that changed are read again. Blocking: call it from the writer thread.
    pub fn batch_written(&self, report: &BatchReport) {
        if !report.taken.is_empty() {
            let mut unflushed = lock(&self.unflushed);
            for (proxy, key) in &report.taken {
                if let Some(key) = CacheKey::from_hex(key) {
                    unflushed.remove(&(ProxyId(*proxy), key));
                }
            }
        }
        if !report.changed.is_empty() {
            self.refresh_totals(&report.changed);
        }
    }

    pub fn counts(&self, proxy: ProxyId) -> CacheCounts {
        let stats = self.stats(proxy);
        CacheCounts {
            entries: stats.entries.load(Ordering::Relaxed),
            bytes: stats.bytes.load(Ordering::Relaxed),
            hits: stats.hits.load(Ordering::Relaxed),
            misses: stats.misses.load(Ordering::Relaxed),
            evictions: stats.evictions.load(Ordering::Relaxed),
        }
    }

    /// Entries and bytes stored by all proxies (as of the last batch of writes), and the
    /// evictions since the start.
    pub fn usage(&self) -> CacheUsage {
        let all = self.stats.read().unwrap_or_else(|p| p.into_inner());
        all.values()
            .fold(CacheUsage::default(), |usage, stats| CacheUsage {
                entries: usage.entries + stats.entries.load(Ordering::Relaxed),
                bytes: usage.bytes + stats.bytes.load(Ordering::Relaxed),
                evictions: usage.evictions + stats.evictions.load(Ordering::Relaxed),
            })
    }

    /// The proxy's entries as stored, and those still on their way to SQLite.
    pub async fn info(&self, proxy: ProxyId) -> Result<CacheInfo, DbError> {
        let waiting: Vec<(String, (u64, DateTime<Utc>))> = lock(&self.unflushed)
            .iter()
            .filter(|((owner, _), _)| *owner == proxy)
            .map(|((_, key), entry)| (key.to_string(), *entry))
            .collect();
        let (stored, not_yet) = db::run(&self.db, move |conn| {
            let keys: Vec<String> = waiting.iter().map(|(key, _)| key.clone()).collect();
            let stored = db::cache_entries::stats(conn, proxy.0)?;
            let already = db::cache_entries::stored_keys(conn, proxy.0, &keys)?;
            let already: BTreeSet<String> = already.into_iter().collect();
            let not_yet: Vec<(u64, DateTime<Utc>)> = waiting
                .into_iter()
                .filter(|(key, _)| !already.contains(key))
                .map(|(_, entry)| entry)
                .collect();
            Ok((stored, not_yet))
        })
        .await?;
        let mut counts = self.counts(proxy);
        counts.entries = stored.entries + not_yet.len() as u64;
        counts.bytes = stored.bytes + not_yet.iter().map(|(size, _)| size).sum::<u64>();
        let times = not_yet.iter().map(|(_, at)| *at);
        Ok(CacheInfo {
            counts,
            oldest: stored
                .oldest
                .map(|t| t.and_utc())
                .into_iter()
                .chain(times.clone())
                .min(),
            newest: stored
                .newest
                .map(|t| t.and_utc())
                .into_iter()
                .chain(times)
                .max(),
        })
    }

    /// Removes every entry of a proxy, those still queued for SQLite too; returns how many
    /// there were.
    pub async fn clear(&self, proxy: ProxyId) -> Result<usize, DbError> {
        Ok(self.replace(proxy, true, Vec::new()).await?.removed)
    }

    /// Writes entries into a proxy's cache, after removing all it had when `clear`; in order
    /// with the writes queued before, and in memory only once SQLite has them.
    pub async fn replace(
        &self,
        proxy: ProxyId,
        clear: bool,
        rows: Vec<CacheEntryRow>,
    ) -> Result<Replaced, DbError> {
        let keys: Vec<CacheKey> = rows
            .iter()
            .filter_map(|row| CacheKey::from_hex(&row.cache_key))
            .collect();
        let (replacement, done) = CacheReplacement::new(proxy.0, clear, rows);
        let outcome = self.through_writer(replacement, done).await?;
        let stats = self.stats(proxy);
        let mut generation = stats.generation.write().unwrap_or_else(|p| p.into_inner());
        if clear {
            self.memory
                .invalidate_entries_if(move |(owner, _), _| *owner == proxy)
                .map_err(|e| DbError::Corrupt(format!("cannot clear the memory cache: {e}")))?;
            lock(&self.unflushed).retain(|(owner, _), _| *owner != proxy);
        } else {
            for key in keys {
                self.memory.invalidate(&(proxy, key));
            }
        }
        *generation += 1;
        Ok(outcome)
    }

    /// Whether an entry is stored (in memory, queued, or in SQLite), without counting a lookup.
    pub async fn holds(&self, proxy: ProxyId, key: &CacheKey) -> Result<bool, DbError> {
        if self.memory.contains_key(&(proxy, *key))
            || lock(&self.unflushed).contains_key(&(proxy, *key))
        {
            return Ok(true);
        }
        let text_key = key.to_string();
        db::run(&self.db, move |conn| {
            db::cache_entries::exists(conn, proxy.0, &text_key)
        })
        .await
    }

    /// The recorded entries nearest to a request that missed (same method, path, model and
    /// cassette), with the JSON paths in which the bodies differ, less the proxy's
    /// `ignore_fields` (they are not in the key, so they never make a miss); on the blocking
    /// pool.
    pub async fn explain(
        &self,
        proxy: ProxyId,
        request: RecordedRequest,
        model: Option<String>,
        cassette: Option<String>,
        ignore_fields: Vec<String>,
        count: usize,
    ) -> Result<Vec<Nearest>, DbError> {
        // Entries still queued for SQLite are looked at too.
        let queued = lock(&self.unflushed)
            .keys()
            .any(|(owner, _)| *owner == proxy);
        if queued {
            self.written(proxy).await?;
        }
        db::run(&self.db, move |conn| {
            let entries = db::cache_entries::recordings_like(
                conn,
                proxy.0,
                &request.method,
                &request.path,
                model.as_deref(),
                cassette.as_deref(),
            )?;
            let asked = keyed_body(&request.payload, &ignore_fields);
            let recorded: Vec<(String, serde_json::Value, String)> = entries
                .into_iter()
                .filter_map(|entry| {
                    let recording: Recording = serde_json::from_str(&entry.recording).ok()?;
                    let at = entry
                        .created_at
                        .and_utc()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    Some((
                        entry.cache_key,
                        keyed_body(&recording.request.payload, &ignore_fields),
                        at,
                    ))
                })
                .collect();
            Ok(explain::nearest(
                &asked,
                recorded
                    .iter()
                    .map(|(key, body, at)| (key.as_str(), body, at.as_str())),
                count,
            ))
        })
        .await
    }

    /// Hands a replacement to the writer (never dropped) and waits until it is written.
    async fn through_writer(
        &self,
        replacement: CacheReplacement,
        done: tokio::sync::oneshot::Receiver<Result<Replaced, String>>,
    ) -> Result<Replaced, DbError> {
        if !self
            .writer
            .submit_always(WriteOp::ReplaceCache(Box::new(replacement)))
        {
            return Err(DbError::Corrupt("the database writer has stopped".into()));
        }
        done.await
            .map_err(|_| DbError::Corrupt("the database writer has stopped".into()))?
            .map_err(DbError::Corrupt)
    }

    /// Waits until the writes queued before (stores, hits) are in SQLite.
    async fn written(&self, proxy: ProxyId) -> Result<(), DbError> {
        let (nothing, done) = CacheReplacement::new(proxy.0, false, Vec::new());
        self.through_writer(nothing, done).await.map(drop)
    }

    /// A page of a proxy's entries, newest first, with how many match in all: those whose
    /// recorded request contains `search` when given (a model, words of a prompt). Bodies are
    /// not read. Entries still queued for SQLite are written first, so the list shows them.
    pub async fn page(
        &self,
        proxy: ProxyId,
        search: Option<String>,
        limit: u64,
        offset: u64,
    ) -> Result<EntryPage, DbError> {
        self.written(proxy).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (rows, total) = db::run(&self.db, move |conn| {
            db::cache_entries::page_for_proxy(conn, proxy.0, search.as_deref(), limit, offset)
        })
        .await?;
        Ok(EntryPage {
            entries: rows.into_iter().map(StoredEntry::of).collect(),
            total,
        })
    }

    /// One stored entry of a proxy, whole, after the writes queued before are written.
    pub async fn entry(
        &self,
        proxy: ProxyId,
        key: CacheKey,
    ) -> Result<Option<CacheEntryRow>, DbError> {
        self.written(proxy).await?;
        let key = key.to_string();
        db::run(&self.db, move |conn| {
            db::cache_entries::find(conn, proxy.0, &key)
        })
        .await
    }

    /// Removes one entry of a proxy, from SQLite (in order with the writes queued before: a
    /// store of it still waiting is removed too) and then from memory. Returns whether there
    /// was one.
    pub async fn delete(&self, proxy: ProxyId, key: CacheKey) -> Result<bool, DbError> {
        let (removal, done) = CacheReplacement::removal(proxy.0, vec![key.to_string()]);
        let outcome = self.through_writer(removal, done).await?;
        let memory_key = (proxy, key);
        let stats = self.stats(proxy);
        // Held while memory is cleaned: a lookup that read the entry from SQLite before it was
        // deleted does not put it back (see `find`).
        let mut generation = stats.generation.write().unwrap_or_else(|p| p.into_inner());
        let in_memory = self.memory.contains_key(&memory_key);
        self.memory.invalidate(&memory_key);
        let waiting = lock(&self.unflushed).remove(&memory_key).is_some();
        *generation += 1;
        Ok(outcome.removed > 0 || in_memory || waiting)
    }

    /// Every stored entry of a proxy (for export), after what was queued before is written.
    pub async fn entries(&self, proxy: ProxyId) -> Result<Vec<CacheEntryRow>, DbError> {
        self.written(proxy).await?;
        db::run(&self.db, move |conn| {
            db::cache_entries::all_for_proxy(conn, proxy.0)
        })
        .await
    }

    /// Forgets a deleted proxy (its rows went with it, by foreign key).
    pub fn forget(&self, proxy: ProxyId) {
        if let Err(e) = self
            .memory
            .invalidate_entries_if(move |(owner, _), _| *owner == proxy)
        {
            log::warn!("cannot drop the memory cache of proxy {proxy}: {e}");
        }
        lock(&self.unflushed).retain(|(owner, _), _| *owner != proxy);
        self.stats
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&proxy);
    }

    /// Re-reads entry counts and sizes from SQLite for the given proxies (all when empty), then
    /// evicts what is over budget. Blocking: call it from the writer thread or at startup.
    pub fn refresh_totals(&self, proxies: &BTreeSet<i32>) {
        let _one_pass = self.enforcing.lock().unwrap_or_else(|p| p.into_inner());
        let result = match self.db.get() {
            Ok(mut conn) => self
                .read_totals(&mut conn, proxies)
                .and_then(|()| self.enforce_budget(&mut conn, proxies)),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            log::warn!("cannot read cache totals or keep the cache budget: {e}");
        }
    }

    fn read_totals(
        &self,
        conn: &mut diesel::SqliteConnection,
        proxies: &BTreeSet<i32>,
    ) -> Result<(), DbError> {
        let totals = if proxies.is_empty() {
            db::cache_entries::totals_by_proxy(conn)?
        } else {
            // Only the proxies that changed, each from the index of sizes.
            proxies
                .iter()
                .map(|proxy| {
                    let (entries, bytes) = db::cache_entries::usage(conn, *proxy)?;
                    Ok((*proxy, entries, bytes))
                })
                .collect::<Result<Vec<_>, DbError>>()?
        };
        for (proxy, entries, bytes) in totals {
            let stats = self.stats(ProxyId(proxy));
            stats.entries.store(entries, Ordering::Relaxed);
            stats.bytes.store(bytes, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Evicts until each of the given proxies (all when empty) is within the per-proxy budget
    /// and the whole cache within the total. Call with `enforcing` held and totals current.
    fn enforce_budget(
        &self,
        conn: &mut diesel::SqliteConnection,
        proxies: &BTreeSet<i32>,
    ) -> Result<(), DbError> {
        let budget = self.budget();
        if budget.per_proxy_bytes > 0 {
            let over: Vec<(ProxyId, u64)> = self
                .stats
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(proxy, _)| proxies.is_empty() || proxies.contains(&proxy.0))
                .map(|(proxy, stats)| (*proxy, stats.bytes.load(Ordering::Relaxed)))
                .filter(|(_, bytes)| *bytes > budget.per_proxy_bytes)
                .collect();
            for (proxy, bytes) in over {
                self.evict(conn, Some(proxy), bytes - budget.per_proxy_bytes)?;
            }
        }
        let total = self.usage().bytes;
        if budget.total_bytes > 0 && total > budget.total_bytes {
            self.evict(conn, None, total - budget.total_bytes)?;
        }
        Ok(())
    }

    /// Deletes least recently used entries (of one proxy, or of any) until `excess` bytes are
    /// freed, from SQLite and from memory, and re-reads the totals of the proxies that lost some.
    fn evict(
        &self,
        conn: &mut diesel::SqliteConnection,
        scope: Option<ProxyId>,
        excess: u64,
    ) -> Result<(), DbError> {
        let mut freed = 0;
        let mut losers = BTreeSet::new();
        // Bounded: every round deletes at least one row or ends the loop.
        while freed < excess {
            let candidates =
                db::cache_entries::least_recently_used(conn, scope.map(|p| p.0), EVICTION_ROUND)?;
            let mut ids = Vec::new();
            for candidate in &candidates {
                if freed >= excess {
                    break;
                }
                ids.push(candidate.id);
                freed += candidate.size_bytes.unsigned_abs();
            }
            let deleted = db::cache_entries::delete_ids(conn, &ids)?;
            if deleted.is_empty() {
                break;
            }
            for (proxy, key) in deleted {
                let proxy = ProxyId(proxy);
                if let Some(key) = CacheKey::from_hex(&key) {
                    self.memory.invalidate(&(proxy, key));
                }
                self.stats(proxy).evictions.fetch_add(1, Ordering::Relaxed);
                losers.insert(proxy.0);
            }
        }
        if losers.is_empty() {
            return Ok(());
        }
        log::info!(
            "cache budget: evicted {freed} bytes of least recently used answers (proxies {losers:?})"
        );
        self.read_totals(conn, &losers)
    }
}
