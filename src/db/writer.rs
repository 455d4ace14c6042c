//! The one background writer: the request path hands it work through a bounded channel and
//! never waits on SQLite. It applies what is queued in batches, one transaction each.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::{Connection, RunQueryDsl};

use super::models::{CacheEntryRow, NewLogRow, RollupRow};
use super::{DbError, DbPool, cache_entries};

const QUEUE_CAPACITY: usize = 10_000;
const MAX_BATCH: usize = 5_000;
const LOG_ROWS_PER_INSERT: usize = 1_000;
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
    /// Ends the writer once everything queued before it is written.
    Stop,
}

/// Told, after each batch, which proxies' cache entries changed.
pub type BatchListener = Box<dyn Fn(&BTreeSet<i32>) + Send>;

pub struct DbWriter {
    sender: SyncSender<WriteOp>,
}

impl DbWriter {
    pub fn start(pool: DbPool, on_batch: BatchListener) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("rubberduck-db-writer".into())
            .spawn(move || run(&pool, &receiver, &on_batch))?;
        Ok((DbWriter { sender }, thread))
    }

    /// Queues a write; when the queue is full the write is dropped and counted, so a slow disk
    /// never slows a request. Returns whether it was queued.
    pub fn submit(&self, op: WriteOp) -> bool {
        match self.sender.try_send(op) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                log::warn!("database writer has stopped; a write was lost");
                false
            }
        }
    }

    /// Asks the writer to finish; blocks only until the stop request is queued.
    pub fn stop(&self) {
        if self.sender.send(WriteOp::Stop).is_err() {
            log::debug!("database writer already stopped");
        }
    }
}

fn run(pool: &DbPool, receiver: &Receiver<WriteOp>, on_batch: &BatchListener) {
    while let Ok(first) = receiver.recv() {
        // Let a batch gather: a writer that woke for every write would cost each request a
        // wake-up of this thread.
        std::thread::sleep(GATHER);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let stop = batch.iter().any(|op| matches!(op, WriteOp::Stop));
        match apply(pool, &batch) {
            Ok(changed) if !changed.is_empty() => on_batch(&changed),
            Ok(_) => {}
            Err(e) => log::error!(
                "database writer: a batch of {} writes failed: {e}",
                batch.len()
            ),
        }
        if stop {
            break;
        }
    }
}

/// Returns the proxies whose cache entries were added or removed.
fn apply(pool: &DbPool, batch: &[WriteOp]) -> Result<BTreeSet<i32>, DbError> {
    let mut conn = pool.get()?;
    // A hot entry is hit thousands of times a second: one update per entry per batch.
    let mut hits: HashMap<(i32, [u8; 32]), (i64, NaiveDateTime)> = HashMap::new();
    for op in batch {
        if let WriteOp::CacheHit { proxy_id, key, at } = op {
            let entry = hits.entry((*proxy_id, *key)).or_insert((0, *at));
            entry.0 += 1;
            entry.1 = entry.1.max(*at);
        }
    }
    let logs: Vec<&NewLogRow> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::InsertLog(row) => Some(row.as_ref()),
            _ => None,
        })
        .collect();
    conn.transaction(|conn| {
        // One statement per chunk, kept under SQLite's limit of 32766 bound values.
        for chunk in logs.chunks(LOG_ROWS_PER_INSERT) {
            diesel::insert_into(super::schema::request_logs::table)
                .values(chunk.iter().map(|row| (*row).clone()).collect::<Vec<_>>())
                .execute(conn)?;
        }
        let mut changed = BTreeSet::new();
        for op in batch {
            match op {
                WriteOp::StoreCacheEntry(row) => {
                    cache_entries::upsert(conn, row)?;
                    changed.insert(row.proxy_id);
                }
                WriteOp::UpsertRollup(row) => super::metric_rollups::upsert(conn, row)?,
                WriteOp::CacheHit { .. } | WriteOp::InsertLog(_) => {}
                WriteOp::DeleteCacheEntry { proxy_id, key } => {
                    cache_entries::delete_one(conn, *proxy_id, key)?;
                    changed.insert(*proxy_id);
                }
                WriteOp::Stop => {}
            }
        }
        for ((proxy_id, key), (count, at)) in &hits {
            cache_entries::record_hits(conn, *proxy_id, &hex::encode(key), *count, *at)?;
        }
        Ok(changed)
    })
}
