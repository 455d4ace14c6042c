//! SQLite through Diesel: connection setup, embedded migrations and the table-level queries.

pub mod accounts;
pub mod cache_entries;
pub mod metric_rollups;
pub mod models;
pub mod proxies;
pub mod request_logs;
pub mod schema;
pub mod settings;
pub mod writer;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
pub const DATABASE_FILE: &str = "rubberduck.sqlite3";

pub type DbPool = Pool<ConnectionManager<SqliteConnection>>;
pub type DbConn = PooledConnection<ConnectionManager<SqliteConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("cannot apply database migrations: {0}")]
    Migrate(String),
    #[error("database connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("database task was cancelled: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

/// Per-connection settings. `busy_timeout` comes first so that nothing else can hit "database is
/// locked" while another connection holds the write lock.
const CONNECTION_PRAGMAS: &str =
    "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

#[derive(Debug)]
struct ConnectionPragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ConnectionPragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(CONNECTION_PRAGMAS)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Puts SQLite in multi-thread mode: a connection is only ever used by one thread at a time (r2d2
/// lends it out, and `SqliteConnection` is not `Sync`), so the serialized mode's lock around every
/// call is pure cost — about 7% of the log writer's work, which binds thousands of values per
/// batch.
fn use_multi_thread_mode() {
    static CONFIGURE: Once = Once::new();
    CONFIGURE.call_once(|| {
        // SAFETY: `sqlite3_config` must not run alongside other SQLite calls. Rubberduck reaches
        // SQLite only through `open`, whose callers all wait here until this has returned. Once
        // SQLite is initialised the call is refused (SQLITE_MISUSE) and changes nothing.
        let code =
            unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD) };
        if code != libsqlite3_sys::SQLITE_OK {
            log::warn!("SQLite stays in serialized mode (sqlite3_config returned {code})");
        }
    });
}

/// Creates the data directory, migrates the database on a single connection (WAL is set there
/// once; it persists in the file), then builds the pool.
/// The data holds hashes of passwords and tokens, logs and cached answers: only the user
/// Rubberduck runs as may read it.
fn keep_private(path: &Path, mode: u32) -> Result<(), DbError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
            |source| DbError::DataDir {
                path: path.display().to_string(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

pub fn open(data_dir: &Path) -> Result<DbPool, DbError> {
    use_multi_thread_mode();
    std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    keep_private(data_dir, 0o700)?;
    let url = data_dir.join(DATABASE_FILE).display().to_string();

    let mut conn = SqliteConnection::establish(&url)?;
    // Before WAL mode: SQLite gives its -wal and -shm files the main file's permissions.
    keep_private(&data_dir.join(DATABASE_FILE), 0o600)?;
    conn.batch_execute(CONNECTION_PRAGMAS)?;
    conn.batch_execute("PRAGMA journal_mode = WAL;")?;
    migrate(&mut conn)?;
    drop(conn);

    // One connection idles; more open when the dashboard needs them (r2d2 would otherwise open
    // all eight at start, each with its own page cache).
    Ok(Pool::builder()
        .max_size(8)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(ConnectionPragmas))
        .build(ConnectionManager::<SqliteConnection>::new(url))?)
}

/// Applies pending migrations with foreign keys off, as SQLite's way of changing a table (build
/// the new one, copy, drop the old, rename) needs: with them on, dropping the old table would
/// delete every row that refers to it. The keys are checked once all migrations ran.
fn migrate(conn: &mut SqliteConnection) -> Result<(), DbError> {
    conn.batch_execute("PRAGMA foreign_keys = OFF;")?;
    let migrated = conn
        .run_pending_migrations(MIGRATIONS)
        .map(drop)
        .map_err(|e| DbError::Migrate(e.to_string()));
    conn.batch_execute("PRAGMA foreign_keys = ON;")?;
    migrated?;
    #[derive(QueryableByName)]
    struct Violation {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table: String,
    }
    let violations: Vec<Violation> = diesel::sql_query("PRAGMA foreign_key_check").load(conn)?;
    if let Some(first) = violations.first() {
        return Err(DbError::Migrate(format!(
            "after migrating, {} rows refer to rows that do not exist (first in table {})",
            violations.len(),
            first.table
        )));
    }
    Ok(())
}

/// Runs blocking Diesel work on actix's blocking pool so async handlers never wait on SQLite.
pub async fn run<T, F>(pool: &DbPool, work: F) -> Result<T, DbError>
where
    F: FnOnce(&mut SqliteConnection) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get()?;
        work(&mut conn)
    })
    .await?
}

pub fn ping(conn: &mut SqliteConnection) -> Result<(), DbError> {
    conn.batch_execute("SELECT 1;")?;
    Ok(())
}

/// Databases as older versions of Rubberduck left them, for tests of migrations that move data.
#[cfg(test)]
pub(crate) mod old_schema {
    use diesel::migration::{MigrationConnection, MigrationSource};
    use diesel::prelude::*;
    use diesel::sqlite::Sqlite;
    use diesel_migrations::MigrationHarness;

    use super::MIGRATIONS;

    /// A database in `dir` with the migrations that sort before `first_new` applied.
    pub fn migrated_before(dir: &tempfile::TempDir, first_new: &str) -> SqliteConnection {
        let path = dir.path().join("old.sqlite3");
        let mut conn =
            SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("database");
        conn.setup().expect("migrations table");
        let migrations = MigrationSource::<Sqlite>::migrations(&MIGRATIONS).expect("migrations");
        for migration in migrations
            .iter()
            .take_while(|m| m.name().to_string().as_str() < first_new)
        {
            conn.run_migration(migration).expect("older migration");
        }
        conn
    }

    /// Reverts the newest migrations until the one whose name starts with `first_undone`.
    pub fn revert_through(conn: &mut SqliteConnection, first_undone: &str) {
        let version: String = first_undone.chars().filter(char::is_ascii_digit).collect();
        loop {
            let reverted = conn
                .revert_last_migration(MIGRATIONS)
                .expect("the change can be undone");
            if reverted.to_string() <= version {
                break;
            }
        }
    }
}
