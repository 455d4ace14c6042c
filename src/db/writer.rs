//! The one background writer: the request path hands it work through a bounded channel and
//! never waits on SQLite. It applies what is queued in batches, one transaction each.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::Connection;

use super::models::{CacheEntryRow, NewLogRow, RollupRow};
use super::{DbError, DbPool, cache_entries, request_logs};

const QUEUE_CAPACITY: usize = 10_000;
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
    // Kept from batch to batch: busy proxies fill it at the same rate every time, and a fresh one
    // would cost the writer new pages from the OS twenty times a second.
    let mut batch = Vec::new();
    while let Ok(first) = receiver.recv() {
        // Let a batch gather: a writer that woke for every write would cost each request a
        // wake-up of this thread.
        std::thread::sleep(GATHER);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let stop = batch.iter().any(|op| matches!(op, WriteOp::Stop));
        let size = batch.len();
        let result = apply(pool, &batch);
        batch.clear();
        match result {
            Ok(changed) if !changed.is_empty() => on_batch(&changed),
            Ok(_) => {}
            Err(e) => log::error!("database writer: a batch of {size} writes failed: {e}"),
        }
        if stop {
            break;
        }
    }
}

/// Returns the proxies whose cache entries were added or removed.
fn apply(pool: &DbPool, batch: &[WriteOp]) -> Result<BTreeSet<i32>, DbError> {
    let mut conn = pool.get()?;
    // Log rows go in first and stay in their boxes (copying them out would double the memory
    // this thread touches); the other writes keep their order.
    let logs: Vec<&NewLogRow> = batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::InsertLog(row) => Some(row.as_ref()),
            _ => None,
        })
        .collect();
    // A hot entry is hit thousands of times a second: one update per entry per batch.
    let mut hits: HashMap<(i32, [u8; 32]), (i64, NaiveDateTime)> = HashMap::new();
    for op in batch.iter() {
        if let WriteOp::CacheHit { proxy_id, key, at } = op {
            let entry = hits.entry((*proxy_id, *key)).or_insert((0, *at));
            entry.0 += 1;
            entry.1 = entry.1.max(*at);
        }
    }
    conn.transaction(|conn| {
        request_logs::insert(conn, &logs)?;
        let mut changed = BTreeSet::new();
        for op in batch.iter() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;

    #[test]
    fn log_rows_arrive_whole_in_fixed_chunks_and_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = super::super::open(dir.path()).expect("database");
        let (writer, thread) = DbWriter::start(pool.clone(), Box::new(|_| {})).expect("writer");
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
