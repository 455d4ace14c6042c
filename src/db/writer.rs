//! The one background writer: the request path hands it work through a bounded channel and
//! never waits on SQLite. It applies what is queued in batches, one transaction each.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SendError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::{Connection, SqliteConnection};

use super::models::{CacheEntryRow, NewLogRow, RollupRow};
use super::{DbError, DbPool, cache_entries, request_logs};

const MAX_BATCH: usize = 5_000;
const GATHER: Duration = Duration::from_millis(50);

pub enum WriteOp {
    StoreCacheEntry(CacheEntryRow),
    CacheHit {
        proxy_id: i32,
        /// The raw SHA-256; hits are frequent, so the hex form is made here, once per batch.
        key: [u8; 32],
        at: NaiveDateTime,
    },
    DeleteCacheEntry {
        proxy_id: i32,
        key: String,
    },
    InsertLog(Box<NewLogRow>),
    UpsertRollup(Box<RollupRow>),
    /// Puts rows into a proxy's cache (after removing all it held, for a clear or a reload
    /// from fixtures), in order with the writes queued before: a store still waiting when a
    /// clear is asked for is cleared too.
    ReplaceCache(Box<CacheReplacement>),
    /// Wakes the writer for hits added up in memory (see [`DbWriter::submit`]).
    FlushHits,
    /// Ends the writer once everything queued before it is written.
    Stop,
}

impl WriteOp {
    fn kind(&self) -> Option<WriteKind> {
        match self {
            WriteOp::StoreCacheEntry(_) => Some(WriteKind::CacheEntry),
            WriteOp::CacheHit { .. } => Some(WriteKind::CacheHit),
            WriteOp::DeleteCacheEntry { .. } => Some(WriteKind::CacheDelete),
            WriteOp::InsertLog(_) => Some(WriteKind::Log),
            WriteOp::UpsertRollup(_) => Some(WriteKind::Rollup),
            WriteOp::ReplaceCache(_) | WriteOp::FlushHits | WriteOp::Stop => None,
        }
    }
}

/// What a lost write was, as `/metrics` labels it (`what`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Log,
    CacheEntry,
    CacheHit,
    CacheDelete,
    Rollup,
}

impl WriteKind {
    pub const ALL: [WriteKind; 5] = [
        WriteKind::Log,
        WriteKind::CacheEntry,
        WriteKind::CacheHit,
        WriteKind::CacheDelete,
        WriteKind::Rollup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Log => "log",
            WriteKind::CacheEntry => "cache_entry",
            WriteKind::CacheHit => "cache_hit",
            WriteKind::CacheDelete => "cache_delete",
            WriteKind::Rollup => "rollup",
        }
    }
}

/// Why a write was lost, as `/metrics` labels it (`why`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full when it was submitted: the writer fell behind.
    QueueFull,
    /// SQLite refused this row (say a cache entry of a proxy deleted meanwhile); the rest of its
    /// batch was written.
    Rejected,
    /// Nothing could be written: no connection, or the writer had stopped.
    Unavailable,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Unavailable => "unavailable",
        }
    }
}

/// Every write that never reached the database, by kind and reason. Shared by the submitting
/// side (a full queue) and the writer thread (refused rows), so no loss goes uncounted whoever
/// submitted it.
#[derive(Debug, Default)]
pub struct Drops {
    counts: [[AtomicU64; DropReason::ALL.len()]; WriteKind::ALL.len()],
}

impl Drops {
    fn add(&self, kind: WriteKind, reason: DropReason, count: u64) {
        self.counts[kind as usize][reason as usize].fetch_add(count, Ordering::Relaxed);
    }

    pub fn get(&self, kind: WriteKind, reason: DropReason) -> u64 {
        self.counts[kind as usize][reason as usize].load(Ordering::Relaxed)
    }

    /// Every kind and reason with its count, zeros included (Prometheus wants series to exist
    /// before they first count).
    pub fn all(&self) -> Vec<(WriteKind, DropReason, u64)> {
        WriteKind::ALL
            .iter()
            .flat_map(|kind| {
                DropReason::ALL
                    .iter()
                    .map(move |reason| (*kind, *reason, self.get(*kind, *reason)))
            })
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.all().iter().map(|(_, _, n)| n).sum()
    }
}

/// A clear, reload or import of one proxy's cache, or the deletion of some of its entries;
/// whoever asked waits for `done`.
pub struct CacheReplacement {
    pub proxy_id: i32,
    /// Remove every entry of the proxy first.
    pub clear: bool,
    /// Keys of entries to remove (before `rows` are written).
    pub remove: Vec<String>,
    pub rows: Vec<CacheEntryRow>,
    pub done: Mutex<Option<tokio::sync::oneshot::Sender<Result<Replaced, String>>>>,
    outcome: Mutex<Replaced>,
}

impl CacheReplacement {
    pub fn new(
        proxy_id: i32,
        clear: bool,
        rows: Vec<CacheEntryRow>,
    ) -> (
        Self,
        tokio::sync::oneshot::Receiver<Result<Replaced, String>>,
    ) {
        let (done, receiver) = tokio::sync::oneshot::channel();
        let replacement = CacheReplacement {
            proxy_id,
            clear,
            remove: Vec::new(),
            rows,
            done: Mutex::new(Some(done)),
            outcome: Mutex::default(),
        };
        (replacement, receiver)
    }

    /// Removes these entries of the proxy, in order with the writes queued before (so a store
    /// still waiting is removed too); `Replaced::removed` says how many there were.
    pub fn removal(
        proxy_id: i32,
        keys: Vec<String>,
    ) -> (
        Self,
        tokio::sync::oneshot::Receiver<Result<Replaced, String>>,
    ) {
        let (mut replacement, receiver) = Self::new(proxy_id, false, Vec::new());
        replacement.remove = keys;
        (replacement, receiver)
    }

    fn apply(&self, conn: &mut SqliteConnection) -> Result<(), DbError> {
        let mut removed = if self.clear {
            cache_entries::delete_for_proxy(conn, self.proxy_id)?
        } else {
            0
        };
        for key in &self.remove {
            if cache_entries::delete_one(conn, self.proxy_id, key)? {
                removed += 1;
            }
        }
        let (mut added, mut replaced) = (0, 0);
        for row in &self.rows {
            if !self.clear && cache_entries::exists(conn, row.proxy_id, &row.cache_key)? {
                replaced += 1;
            } else {
                added += 1;
            }
            cache_entries::upsert(conn, row)?;
        }
        *lock(&self.outcome) = Replaced {
            removed,
            added,
            replaced,
        };
        Ok(())
    }

    fn answer(&self, written: bool) {
        let outcome = if written {
            Ok(*lock(&self.outcome))
        } else {
            Err("the database did not take the change; see the server's log".to_owned())
        };
        if let Some(done) = lock(&self.done).take() {
            // Whoever asked may have given up waiting.
            let _ = done.send(outcome);
        }
    }
}

/// What a [`CacheReplacement`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    pub removed: usize,
    pub added: usize,
    pub replaced: usize,
}

/// What a batch changed, for the cache's numbers.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Proxies whose cache entries were added or removed.
    pub changed: BTreeSet<i32>,
    /// Every entry the batch took to store (written or lost): no longer waiting.
    pub taken: Vec<(i32, String)>,
}

/// Told what each batch changed.
pub type BatchListener = Box<dyn Fn(&BatchReport) + Send>;

/// The queue is an unbounded channel with its length counted beside it rather than std's
/// bounded channel: that one allocates and touches every slot up front, so a queue deep enough
/// for a burst would cost idle memory all the time.
pub struct DbWriter {
    sender: Sender<WriteOp>,
    /// Writes submitted and not yet taken by the writer thread.
    queued: Arc<AtomicUsize>,
    /// Writes that may wait; past this they are dropped.
    capacity: usize,
    drops: Arc<Drops>,
    /// Cache hits added up per entry until the writer takes them: a hot entry hit thousands of
    /// times a second costs one queue slot a batch, not one a hit.
    pending_hits: Arc<Mutex<Hits>>,
}

impl DbWriter {
    /// `capacity`: writes that may wait for the writer (a burst it cannot take as it comes, a
    /// checkpoint, a busy disk); past it they are dropped and counted.
    pub fn start(
        pool: DbPool,
        capacity: usize,
        on_batch: BatchListener,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (writer, receiver) = Self::queue(capacity);
        let (taken, counted) = (Arc::clone(&writer.queued), Arc::clone(&writer.drops));
        let hits = Arc::clone(&writer.pending_hits);
        let thread = std::thread::Builder::new()
            .name("rubberduck-db-writer".into())
            .spawn(move || run(&pool, &receiver, &taken, &on_batch, &counted, &hits))?;
        Ok((writer, thread))
    }

    fn queue(capacity: usize) -> (Self, Receiver<WriteOp>) {
        let (sender, receiver) = mpsc::channel();
        let writer = DbWriter {
            sender,
            queued: Arc::new(AtomicUsize::new(0)),
            capacity,
            drops: Arc::new(Drops::default()),
            pending_hits: Arc::default(),
        };
        (writer, receiver)
    }

    /// Adds a hit to the ones waiting for the writer; only an entry not waiting yet, when as
    /// many entries as the queue's capacity already wait, is dropped.
    fn add_hit(&self, proxy_id: i32, key: [u8; 32], at: NaiveDateTime) -> bool {
        let mut hits = lock(&self.pending_hits);
        let first = hits.is_empty();
        if hits.len() >= self.capacity && !hits.contains_key(&(proxy_id, key)) {
            self.drops
                .add(WriteKind::CacheHit, DropReason::QueueFull, 1);
            return false;
        }
        let entry = hits.entry((proxy_id, key)).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
        drop(hits);
        // One wake-up per gathering, past the capacity if need be: it carries no data.
        if first {
            self.queued.fetch_add(1, Ordering::Relaxed);
            if self.sender.send(WriteOp::FlushHits).is_err() {
                log::debug!("database writer already stopped");
            }
        }
        true
    }

    /// Queues a write; when the queue is full the write is dropped and counted, so a slow disk
    /// never slows a request. Returns whether it was queued.
    pub fn submit(&self, op: WriteOp) -> bool {
        if let WriteOp::CacheHit { proxy_id, key, at } = op {
            return self.add_hit(proxy_id, key, at);
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if let Some(kind) = op.kind() {
                self.drops.add(kind, DropReason::QueueFull, 1);
            }
            return false;
        }
        match self.sender.send(op) {
            Ok(()) => true,
            Err(SendError(op)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                log::warn!("database writer has stopped; a write was lost");
                if let Some(kind) = op.kind() {
                    self.drops.add(kind, DropReason::Unavailable, 1);
                }
                false
            }
        }
    }

    /// The writes lost so far.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Queues a write that must not be dropped (past the capacity if need be): one somebody
    /// waits for.
    pub fn submit_always(&self, op: WriteOp) -> bool {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(op).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            log::warn!("database writer has stopped; a write was lost");
            return false;
        }
        true
    }

    /// Asks the writer to finish; blocks only until the stop request is queued.
    pub fn stop(&self) {
        // Past the capacity if need be: the stop must not be dropped.
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(WriteOp::Stop).is_err() {
            log::debug!("database writer already stopped");
        }
    }
}

fn run(
    pool: &DbPool,
    receiver: &Receiver<WriteOp>,
    queued: &AtomicUsize,
    on_batch: &BatchListener,
    drops: &Drops,
    pending_hits: &Mutex<Hits>,
) {
    // Kept from batch to batch: busy proxies fill it at the same rate every time, and a fresh one
    // would cost the writer new pages from the OS twenty times a second.
    let mut batch = Vec::new();
    let mut behind = false;
    while let Ok(first) = receiver.recv() {
        // Let a batch gather: a writer that woke for every write would cost each request a
        // wake-up of this thread. Not when the last batch was full, though: the queue is backed
        // up then, and a pause would only let it overflow.
        if !behind {
            std::thread::sleep(GATHER);
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Taken off the queue: room for as many new writes while these are written.
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let stop = batch.iter().any(|op| matches!(op, WriteOp::Stop));
        behind = batch.len() >= MAX_BATCH;
        let started = Instant::now();
        let changed = apply(pool, &batch, drops, pending_hits);
        log::debug!(
            "database writer: {} writes in {:.1} ms",
            batch.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        let mut report = BatchReport::default();
        for op in batch.drain(..) {
            match op {
                WriteOp::StoreCacheEntry(row) => report.taken.push((row.proxy_id, row.cache_key)),
                WriteOp::ReplaceCache(replacement) => {
                    replacement.answer(changed.contains(&replacement.proxy_id));
                }
                _ => {}
            }
        }
        report.changed = changed;
        if !report.changed.is_empty() || !report.taken.is_empty() {
            on_batch(&report);
        }
        if stop {
            break;
        }
    }
}

/// A hot entry is hit thousands of times a second: one update per entry per batch.
type Hits = HashMap<(i32, [u8; 32]), (i64, NaiveDateTime)>;

/// Writes a batch in one transaction; if SQLite refuses any of it, writes it again row by row so
/// that only the refused rows are lost (and counted). Returns the proxies whose cache entries
/// were added or removed.
fn apply(
    pool: &DbPool,
    batch: &[WriteOp],
    drops: &Drops,
    pending_hits: &Mutex<Hits>,
) -> BTreeSet<i32> {
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            log::error!(
                "database writer: no connection, {} writes lost: {e}",
                batch.len()
            );
            count_all(batch, DropReason::Unavailable, drops);
            return BTreeSet::new();
        }
    };
    // Log rows go in first and stay in their boxes (copying them out would double the memory
    // this thread touches); the other writes keep their order.
    let logs: Vec<&NewLogRow> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::InsertLog(row) => Some(row.as_ref()),
            _ => None,
        })
        .collect();
    let mut hits = std::mem::take(&mut *lock(pending_hits));
    for op in batch.iter() {
        if let WriteOp::CacheHit { proxy_id, key, at } = op {
            let entry = hits.entry((*proxy_id, *key)).or_insert((0, *at));
            entry.0 += 1;
            entry.1 = entry.1.max(*at);
        }
    }
    let whole = conn.transaction(|conn| {
        request_logs::insert(conn, &logs)?;
        let mut changed = BTreeSet::new();
        for op in batch.iter() {
            apply_one(conn, op, &mut changed)?;
        }
        for ((proxy_id, key), (count, at)) in &hits {
            cache_entries::record_hits(conn, *proxy_id, &hex::encode(key), *count, *at)?;
        }
        Ok::<_, DbError>(changed)
    });
    match whole {
        Ok(changed) => changed,
        // Another connection held the lock past the busy timeout: every row would wait as long
        // again, so the batch is lost as a whole rather than stalling the writer row by row.
        Err(e) if is_busy(&e) => {
            log::error!(
                "database writer: the database stayed locked, {} writes lost: {e}",
                batch.len()
            );
            count_all(batch, DropReason::Unavailable, drops);
            count_hits(&hits, DropReason::Unavailable, drops);
            BTreeSet::new()
        }
        Err(e) => {
            log::warn!(
                "database writer: a batch of {} writes failed ({e}); writing them one by one",
                batch.len()
            );
            apply_row_by_row(&mut conn, &logs, batch, &hits, drops)
        }
    }
}

/// SQLite's "database is locked" (SQLITE_BUSY), which Diesel reports without a kind of its own.
fn is_busy(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("database is locked")
    )
}

/// One write other than a log row or a hit (those are gathered, see [`apply`]).
fn apply_one(
    conn: &mut SqliteConnection,
    op: &WriteOp,
    changed: &mut BTreeSet<i32>,
) -> Result<(), DbError> {
    match op {
        WriteOp::StoreCacheEntry(row) => {
            cache_entries::upsert(conn, row)?;
            changed.insert(row.proxy_id);
        }
        WriteOp::UpsertRollup(row) => super::metric_rollups::upsert(conn, row)?,
        WriteOp::DeleteCacheEntry { proxy_id, key } => {
            cache_entries::delete_one(conn, *proxy_id, key)?;
            changed.insert(*proxy_id);
        }
        WriteOp::ReplaceCache(replacement) => {
            replacement.apply(conn)?;
            changed.insert(replacement.proxy_id);
        }
        WriteOp::CacheHit { .. } | WriteOp::InsertLog(_) | WriteOp::FlushHits | WriteOp::Stop => {}
    }
    Ok(())
}

/// The slow path after a failed batch: still one transaction (one commit), each row in a
/// savepoint of its own, so a refused row is rolled back alone. Refusals are counted only once
/// the transaction has committed; if even that fails, the whole batch is counted as lost.
fn apply_row_by_row(
    conn: &mut SqliteConnection,
    logs: &[&NewLogRow],
    batch: &[WriteOp],
    hits: &Hits,
    drops: &Drops,
) -> BTreeSet<i32> {
    let mut refused = [0u64; WriteKind::ALL.len()];
    let outcome = conn.transaction(|conn| {
        let mut changed = BTreeSet::new();
        let mut refuse = |kind: WriteKind, count: u64, e: DbError| {
            if is_busy(&e) {
                // Not this row's fault: give up on the batch (see `apply`).
                return Err(e);
            }
            if refused.iter().all(|n| *n == 0) {
                log::warn!(
                    "database writer: a {} write was refused: {e}",
                    kind.as_str()
                );
            }
            refused[kind as usize] += count;
            Ok(())
        };
        for row in logs {
            if let Err(e) = conn.transaction(|conn| request_logs::insert(conn, &[*row])) {
                refuse(WriteKind::Log, 1, e)?;
            }
        }
        for op in batch {
            let mut these = BTreeSet::new();
            match conn.transaction(|conn| apply_one(conn, op, &mut these)) {
                Ok(()) => changed.extend(these),
                Err(e) => {
                    if let Some(kind) = op.kind() {
                        refuse(kind, 1, e)?;
                    }
                }
            }
        }
        for ((proxy_id, key), (count, at)) in hits {
            let written = conn.transaction(|conn| {
                cache_entries::record_hits(conn, *proxy_id, &hex::encode(key), *count, *at)
            });
            if let Err(e) = written {
                refuse(WriteKind::CacheHit, count.unsigned_abs(), e)?;
            }
        }
        Ok::<_, DbError>(changed)
    });
    match outcome {
        Ok(changed) => {
            for kind in WriteKind::ALL {
                if refused[kind as usize] > 0 {
                    drops.add(kind, DropReason::Rejected, refused[kind as usize]);
                }
            }
            changed
        }
        Err(e) => {
            log::error!(
                "database writer: a batch of {} writes is lost: {e}",
                batch.len()
            );
            count_all(batch, DropReason::Unavailable, drops);
            count_hits(hits, DropReason::Unavailable, drops);
            BTreeSet::new()
        }
    }
}

/// Hits are counted one by one, as they were submitted.
fn count_hits(hits: &Hits, reason: DropReason, drops: &Drops) {
    let count: i64 = hits.values().map(|(count, _)| count).sum();
    if count > 0 {
        drops.add(WriteKind::CacheHit, reason, count.unsigned_abs());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn count_all(batch: &[WriteOp], reason: DropReason, drops: &Drops) {
    for op in batch {
        if let Some(kind) = op.kind() {
            drops.add(kind, reason, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;

    fn log_row(n: usize) -> WriteOp {
        WriteOp::InsertLog(Box::new(NewLogRow {
            path: compact_str::format_compact!("/v1/{n}"),
            cache: "miss".into(),
            ..NewLogRow::default()
        }))
    }

    fn entry(proxy_id: i32) -> WriteOp {
        WriteOp::StoreCacheEntry(CacheEntryRow {
            proxy_id,
            cache_key: "k".into(),
            status: 200,
            headers: "[]".into(),
            body: b"{}".to_vec(),
            chunks: None,
            size_bytes: 2,
            created_at: chrono::Utc::now().naive_utc(),
            last_used_at: chrono::Utc::now().naive_utc(),
            recording: None,
        })
    }

    #[test]
    fn writes_past_the_capacity_are_dropped_and_counted_by_kind() {
        // No writer thread takes from this queue: it stays full.
        let (writer, _receiver) = DbWriter::queue(3);
        for n in 0..3 {
            assert!(writer.submit(log_row(n)));
        }
        assert!(!writer.submit(log_row(3)));
        assert!(!writer.submit(entry(1)));
        // Hits do not wait in the queue: they are added up in memory, up to as many entries as
        // the queue holds writes, and only an entry past that is dropped.
        let at = chrono::Utc::now().naive_utc();
        let hit = |key: u8| WriteOp::CacheHit {
            proxy_id: 1,
            key: [key; 32],
            at,
        };
        for _ in 0..10 {
            assert!(writer.submit(hit(7)), "hits of one entry add up");
        }
        assert!(writer.submit(hit(8)));
        assert!(writer.submit(hit(9)));
        assert!(
            !writer.submit(hit(10)),
            "a fourth entry is past the capacity"
        );
        assert_eq!(
            lock(&writer.pending_hits)
                .get(&(1, [7; 32]))
                .map(|(n, _)| *n),
            Some(10)
        );
        assert!(!writer.submit(WriteOp::DeleteCacheEntry {
            proxy_id: 1,
            key: "k".into()
        }));
        let drops = writer.drops();
        assert_eq!(drops.get(WriteKind::Log, DropReason::QueueFull), 1);
        assert_eq!(drops.get(WriteKind::CacheHit, DropReason::QueueFull), 1);
        assert_eq!(drops.get(WriteKind::CacheDelete, DropReason::QueueFull), 1);
        assert_eq!(drops.get(WriteKind::CacheEntry, DropReason::QueueFull), 1);
        assert_eq!(drops.total(), 4, "{:?}", drops.all());
    }

    #[test]
    fn a_refused_row_is_dropped_alone_and_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = super::super::open(dir.path()).expect("database");
        let (writer, thread) =
            DbWriter::start(pool.clone(), 100_000, Box::new(|_| {})).expect("writer");
        // No proxy 4242: the foreign key refuses this entry, as it does one of a proxy deleted
        // while its entry was queued. Submitted first, so the log rows share its batch.
        assert!(writer.submit(entry(4242)));
        let count = 76;
        for n in 0..count {
            assert!(writer.submit(log_row(n)));
        }
        writer.stop();
        thread.join().expect("writer ends");
        let mut conn = pool.get().expect("connection");
        use super::super::schema::request_logs::dsl;
        let stored: i64 = dsl::request_logs
            .count()
            .get_result(&mut conn)
            .expect("count");
        assert_eq!(
            stored,
            i64::try_from(count).expect("small"),
            "every log row"
        );
        let drops = writer.drops();
        assert_eq!(drops.get(WriteKind::CacheEntry, DropReason::Rejected), 1);
        assert_eq!(drops.total(), 1, "{:?}", drops.all());
    }

    #[test]
    fn log_rows_arrive_whole_in_fixed_chunks_and_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = super::super::open(dir.path()).expect("database");
        let (writer, thread) =
            DbWriter::start(pool.clone(), 100_000, Box::new(|_| {})).expect("writer");
        // Two full chunks and a remainder.
        let count = request_logs::ROWS_PER_INSERT * 2 + 7;
        for n in 0..count {
            let row = NewLogRow {
                path: compact_str::format_compact!("/v1/{n}"),
                cache: "miss".into(),
                user_agent: (n % 2 == 0).then(|| "even".into()),
                ..NewLogRow::default()
            };
            assert!(writer.submit(WriteOp::InsertLog(Box::new(row))));
        }
        writer.stop();
        thread.join().expect("writer ends");
        let mut conn = pool.get().expect("connection");
        use super::super::schema::request_logs::dsl;
        let paths: Vec<String> = dsl::request_logs
            .select(dsl::path)
            .order(dsl::id.asc())
            .load(&mut conn)
            .expect("rows");
        let expected: Vec<String> = (0..count).map(|n| format!("/v1/{n}")).collect();
        assert_eq!(paths, expected, "every row, in order");
        let with_agent: i64 = dsl::request_logs
            .filter(dsl::user_agent.eq("even"))
            .count()
            .get_result(&mut conn)
            .expect("count");
        assert_eq!(with_agent, i64::try_from(count.div_ceil(2)).expect("small"));
    }
}
