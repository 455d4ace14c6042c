//! Assembles the product: database, registry, admin server; and takes it down in order.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, middleware, web};
use tokio::sync::watch;

use crate::auth::oidc::{Oidc, OidcConfig};
use crate::auth::{Accounts, AuthError, FirstAdmin};
use crate::cache::ResponseCache;
use crate::config::file::{ConfigError, ConfigFile};
use crate::config::{OidcArgs, ServeArgs};
use crate::db::writer::DbWriter;
use crate::db::{self, DbError, DbPool};
use crate::gateway::{BodyBudget, BodyLimits, UpstreamSettings};
use crate::registry::{ProxyRegistry, RegistryError, RegistrySettings};
use crate::settings::{Settings, SystemSettings};
use crate::telemetry::{Metrics, Telemetry};
use crate::web::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A wrong config file: every problem, each with the file, line and field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot set up accounts: {0}")]
    Accounts(#[from] AuthError),
    #[error("cannot start the database writer: {0}")]
    Writer(std::io::Error),
    #[error("cannot listen on {addr} for the dashboard: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started Rubberduck: the admin server is accepting, restored proxies are running.
pub struct Running {
    pub admin_addr: SocketAddr,
    pub registry: Arc<ProxyRegistry>,
    telemetry: Arc<Telemetry>,
    admin: ServerHandle,
    writer: Arc<DbWriter>,
    flush_task: actix_web::rt::task::JoinHandle<()>,
    housekeeping_task: actix_web::rt::task::JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
    shutdown_sender: watch::Sender<bool>,
    admin_task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

/// The request line as the access log shows it: the values of query parameters that carry
/// secrets (single sign-on's `code` and `state`, tokens) are left out.
fn request_line(req: &actix_web::dev::ServiceRequest) -> String {
    const SECRET: [&str; 5] = ["code", "state", "token", "access_token", "id_token"];
    let query: Vec<String> = req
        .query_string()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET.contains(&name) => format!("{name}=…"),
            _ => pair.to_owned(),
        })
        .collect();
    let target = match query.is_empty() {
        true => req.path().to_owned(),
        false => format!("{}?{}", req.path(), query.join("&")),
    };
    format!("{} {target} {:?}", req.method(), req.version())
}

/// Each connection to a proxy port is an open file; under the usual soft limit of 1024 a few
/// hundred slow clients of one proxy left none for the dashboard or the other proxies. Raises
/// the soft limit to the hard one where the OS allows, and returns the limit in force.
fn raise_open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && current < maximum
        {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => return Some(maximum),
                Err(e) => log::warn!("cannot raise the open-file limit from {current}: {e}"),
            }
        }
        limit.current
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Connections one proxy port serves at once: as configured, else a quarter of the open files
/// (so that a single port can never take them all).
fn connections_per_proxy(configured: usize, open_files: Option<u64>) -> usize {
    if configured > 0 {
        return configured;
    }
    usize::try_from(open_files.unwrap_or(1024) / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 10_000)
}

pub async fn start(args: &ServeArgs) -> Result<Running, StartError> {
    let started_at = Instant::now();
    // Both rustls backends can end up compiled in; choose one before any TLS client exists.
    // An error only means a provider is already installed (a second start in one process).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Before anything else: a wrong file starts nothing and leaves the data directory alone.
    let config_file = match &args.config {
        Some(path) => Some(ConfigFile::load(path, &args.proxy_ports)?),
        None => None,
    };
    let pool: DbPool = db::open(&args.data_dir)?;
    let system =
        Arc::new(Settings::load(pool.clone(), SystemSettings::defaults(args.proxy_host)).await?);
    let accounts = Arc::new(Accounts::new(pool.clone(), Arc::clone(&system)));
    accounts
        .bootstrap(FirstAdmin {
            email: args.admin_email.clone(),
            password: args.admin_password.clone().map(|secret| secret.0),
            bootstrap_token: args.bootstrap_token.clone().map(|secret| secret.0),
        })
        .await?;
    let open_files = raise_open_file_limit();
    let max_connections = connections_per_proxy(args.max_connections_per_proxy, open_files);
    log::info!(
        "open-file limit {}; each proxy port serves up to {max_connections} connections at once",
        open_files.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
    );
    let settings = RegistrySettings {
        port_range: args.proxy_ports.clone(),
        reserved_ports: vec![args.bind.port()],
        workers_per_proxy: usize::from(args.proxy_workers),
        graceful_stop_timeout: args.stop_timeout(),
        upstream: UpstreamSettings {
            response_timeout: Duration::from_secs(args.upstream_timeout),
            connect_timeout: Duration::from_secs(10),
            bodies: BodyLimits {
                max_bytes: args.max_request_mb.saturating_mul(1 << 20),
                timeout: Duration::from_secs(args.request_body_timeout),
                budget: Arc::new(BodyBudget::new(args.request_bodies_mb)),
            },
            max_connections,
            tls: UpstreamSettings::tls_config(),
        },
    };
    // The writer tells the cache after each batch which proxies' entries changed; the cache
    // needs the writer, so it reaches the cache through this slot.
    let cache_slot: Arc<OnceLock<Weak<ResponseCache>>> = Arc::new(OnceLock::new());
    let listener_slot = Arc::clone(&cache_slot);
    let (writer, writer_thread) = DbWriter::start(
        pool.clone(),
        usize::try_from(args.write_queue).unwrap_or(usize::MAX),
        Box::new(move |report| {
            if let Some(cache) = listener_slot.get().and_then(Weak::upgrade) {
                cache.batch_written(report);
            }
        }),
    )
    .map_err(StartError::Writer)?;
    let writer = Arc::new(writer);
    let cache = Arc::new(ResponseCache::new(
        pool.clone(),
        Arc::clone(&writer),
        args.cache_memory_mb.saturating_mul(1 << 20),
    ));
    let _ = cache_slot.set(Arc::downgrade(&cache));
    // Before the totals are first read, so that nothing over budget is kept from the last run.
    cache.set_budget(system.get().cache_budget());
    let loaded_cache = Arc::clone(&cache);
    web::block(move || loaded_cache.refresh_totals(&BTreeSet::new()))
        .await
        .map_err(|e| StartError::Writer(std::io::Error::other(e.to_string())))?;

    let recent_from = Metrics::memory_window_start(chrono::Utc::now());
    let history = db::run(&pool, move |conn| {
        db::metric_rollups::since(conn, recent_from)
    })
    .await?;
    let telemetry = Arc::new(Telemetry::new(Arc::clone(&writer), &history));
    let flushing = Arc::clone(&telemetry);
    let flush_task = actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            flushing.flush();
        }
    });
    let registry = ProxyRegistry::load(
        pool.clone(),
        Arc::clone(&system),
        settings,
        Arc::clone(&cache),
        Arc::clone(&telemetry),
    )
    .await?;
    if let Some(file) = &config_file {
        apply_config_file(&registry, file).await?;
    }
    let housekeeping_task = actix_web::rt::spawn(housekeeping(
        pool.clone(),
        Arc::clone(&system),
        Arc::clone(&accounts),
    ));
    let restored = registry.restore().await;

    let oidc = single_sign_on(&args.oidc);
    let (shutdown_sender, shutting_down) = watch::channel(false);
    let state = web::Data::new(AppState {
        db: pool,
        accounts,
        oidc: oidc.clone(),
        settings: system,
        data_dir: args.data_dir.clone(),
        registry: Arc::clone(&registry),
        cache,
        telemetry: Arc::clone(&telemetry),
        started_at,
        shutting_down,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(crate::web::authenticate))
            .wrap(crate::web::security_headers())
            .wrap(
                middleware::Logger::new("%a \"%{request}xi\" %s %Dms")
                    .custom_request_replace("request", request_line)
                    .log_target("rubberduck::admin"),
            )
            .configure(crate::web::routes)
    })
    .workers(2)
    .disable_signals()
    .bind(args.bind)
    .map_err(|source| StartError::Bind {
        addr: args.bind,
        source,
    })?;
    let admin_addr = server.addrs().first().copied().unwrap_or(args.bind);
    if let Some(oidc) = oidc {
        oidc.dashboard_at(admin_addr);
        // In the background: an unreachable provider must not hold up the dashboard; the log
        // says what went wrong and the first click on the button tries again.
        actix_web::rt::spawn(async move {
            let _ = oidc.discover().await;
        });
    }
    let server = server.run();
    let admin = server.handle();
    let admin_task = actix_web::rt::spawn(server);

    log::info!(
        "Rubberduck {} — dashboard on http://{admin_addr} ({} proxies running, ready in {} ms)",
        env!("CARGO_PKG_VERSION"),
        restored,
        started_at.elapsed().as_millis()
    );
    Ok(Running {
        admin_addr,
        registry,
        telemetry,
        admin,
        writer,
        flush_task,
        housekeeping_task,
        writer_thread,
        shutdown_sender,
        admin_task,
    })
}

impl Running {
    /// Graceful shutdown: proxies first (their desired state is kept for the next start), then
    /// the dashboard.
    pub async fn shutdown(self) {
        // Ends live streams first, so they do not hold up the dashboard's graceful stop.
        let _ = self.shutdown_sender.send(true);
        self.registry.shutdown().await;
        self.admin.stop(true).await;
        if let Err(e) = self.admin_task.await {
            log::warn!("admin server task ended badly: {e}");
        }
        // Everything queued (cache entries, logs, the last minutes) is written before the
        // process ends.
        self.flush_task.abort();
        self.housekeeping_task.abort();
        self.telemetry.flush();
        self.writer.stop();
        let writer_thread = self.writer_thread;
        if web::block(move || writer_thread.join()).await.is_err() {
            log::warn!("the database writer did not finish cleanly");
        }
    }
}

/// Declares the file's proxies in the registry (before the others are restored, so that they
/// start with the file's settings).
async fn apply_config_file(registry: &ProxyRegistry, file: &ConfigFile) -> Result<(), StartError> {
    let applied =
        registry
            .apply_declared(&file.declarations)
            .await
            .map_err(|failure| match failure.error {
                RegistryError::Database(e) => StartError::Database(e),
                error => file.applying_failed(failure.proxy, &error).into(),
            })?;
    log::info!(
        "{}: {} proxies declared ({} created, {} updated){}",
        file.shown,
        file.declarations.proxies.len(),
        applied.created.len(),
        applied.updated.len(),
        match applied.released.len() {
            0 => String::new(),
            n => format!("; {n} no longer declared there"),
        }
    );
    Ok(())
}

/// Single sign-on when both an issuer and a client id are set; half a configuration is
/// reported and ignored rather than failing the start.
fn single_sign_on(args: &OidcArgs) -> Option<Arc<Oidc>> {
    let issuer = args.issuer.clone().filter(|v| !v.trim().is_empty());
    let client_id = args.client_id.clone().filter(|v| !v.trim().is_empty());
    match (issuer, client_id) {
        (Some(issuer), Some(client_id)) => Some(Arc::new(Oidc::new(OidcConfig {
            issuer,
            client_id,
            client_secret: args.client_secret.clone().map(|secret| secret.0),
            redirect_url: args.redirect_url.clone(),
            name: args.name.clone(),
            scopes: args.scopes.clone(),
            allowed_domains: args.allowed_domains.clone(),
            auto_create: args.auto_create,
        }))),
        (None, None) => None,
        (Some(_), None) => {
            log::warn!(
                "Single sign-on is off: RUBBERDUCK_OIDC_ISSUER is set but RUBBERDUCK_OIDC_CLIENT_ID is not"
            );
            None
        }
        (None, Some(_)) => {
            log::warn!(
                "Single sign-on is off: RUBBERDUCK_OIDC_CLIENT_ID is set but RUBBERDUCK_OIDC_ISSUER is not"
            );
            None
        }
    }
}

/// Daily chores, first a minute after start: logs (and, later, roll-ups) past the retention period
/// and idle sessions are deleted.
async fn housekeeping(db: DbPool, settings: Arc<Settings>, accounts: Arc<Accounts>) {
    const EVERY: Duration = Duration::from_secs(24 * 3600);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let retention_days = settings.get().log_retention_days;
        let now = chrono::Utc::now();
        match db::run(&db, move |conn| {
            Ok((
                db::request_logs::purge_expired(conn, retention_days, now)?,
                db::metric_rollups::purge_expired(conn, retention_days, now)?,
            ))
        })
        .await
        {
            Ok((0, _)) => {}
            Ok((deleted, _)) => {
                log::info!("deleted {deleted} request logs older than {retention_days} days")
            }
            Err(e) => log::warn!("cannot purge old request logs and roll-ups: {e}"),
        }
        if let Err(e) = accounts.forget_idle_sessions().await {
            log::warn!("cannot delete idle sessions: {e}");
        }
    }
}
