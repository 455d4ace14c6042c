//! The proxy registry: every proxy's configuration in memory, and the lifecycle of the actix
//! server that serves each one on its own port.

pub mod declared;
mod entries;
mod fixtures;
pub mod input;
mod ports;
mod server;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::auth::Access;
use crate::cache::{CacheCounts, CacheInfo, ResponseCache};
use crate::db::models::{DeletedProxyRow, NewProxyRow, ProxySettingsChange};
use crate::db::{self, DbError, DbPool};
use crate::faults::{ActiveScenario, FailureConfig, Faults};
use crate::gateway::{LiveProxy, SpendCap, Traffic, UpstreamSettings};
use crate::ids::{ProxyId, UserId};
use crate::reach;
use crate::settings::Settings;
use crate::spec::{DeletedProxy, ProxySpec, ValidProxy};
use crate::telemetry::{RecentTraffic, Telemetry, start_of_day};
use crate::validation::FieldError;
pub use entries::{EntriesPage, EntriesQuery, EntryListing, MAX_ENTRIES_PER_PAGE};
pub use fixtures::{ExplainRequest, Explanation, FixturesLoad, ImportReport};
use input::{ProxyInput, validate};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no proxy with id {0}")]
    NotFound(ProxyId),
    #[error("this proxy's cache has no entry {0}")]
    EntryNotFound(String),
    #[error("{}", .0.first().map_or("invalid input", |e| e.message.as_str()))]
    Invalid(Vec<FieldError>),
    #[error("proxy “{0}” is running; stop it before deleting it")]
    Running(String),
    #[error("{0}")]
    Database(#[from] DbError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyStatus {
    Starting,
    Running,
    Stopped,
    Error,
}

impl ProxyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyStatus::Starting => "starting",
            ProxyStatus::Running => "running",
            ProxyStatus::Stopped => "stopped",
            ProxyStatus::Error => "error",
        }
    }

    /// Whether the proxy's server holds its port (or is about to).
    pub fn is_active(self) -> bool {
        matches!(self, ProxyStatus::Starting | ProxyStatus::Running)
    }
}

/// How the registry runs proxy servers.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub port_range: RangeInclusive<u16>,
    /// Ports auto-assignment never hands out (the dashboard's own port).
    pub reserved_ports: Vec<u16>,
    pub workers_per_proxy: usize,
    pub graceful_stop_timeout: Duration,
    pub upstream: UpstreamSettings,
}

/// A proxy as the pages and the API show it at one instant.
#[derive(Debug, Clone)]
pub struct ProxySnapshot {
    pub spec: Arc<ProxySpec>,
    pub status: ProxyStatus,
    pub last_error: Option<String>,
    /// The port the server really listens on; differs from `spec.port` until a restart applies
    /// an edited port.
    pub listening_port: Option<u16>,
    pub in_flight: usize,
    pub traffic: Traffic,
    /// What answers from the upstream or the emulator cost today (UTC), for the spend cap.
    pub spent_today_usd: f64,
    pub cache: CacheCounts,
    pub recent: RecentTraffic,
    /// The tests (`X-Rubberduck-Scenario`) with failure state of their own right now.
    pub scenarios: Vec<ActiveScenario>,
}

impl ProxySnapshot {
    /// The daily spend cap, once today's spend has reached it (misses are refused then).
    pub fn spend_cap_reached(&self) -> Option<SpendCap> {
        SpendCap::reached(self.spec.daily_spend_cap_usd?, self.spent_today_usd)
    }

    pub fn port_change_pending(&self) -> bool {
        self.listening_port.is_some_and(|p| p != self.spec.port)
    }

    pub fn has_failures_enabled(&self) -> bool {
        !self.spec.failure_config.active_kinds().is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub total: usize,
    pub running: usize,
    pub stopped: usize,
    pub errors: usize,
    pub with_failures: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryEvent {
    Added(ProxyId),
    Changed(ProxyId),
    Removed(ProxyId),
}

struct Runtime {
    status: ProxyStatus,
    last_error: Option<String>,
    desired_running: bool,
    listening_port: Option<u16>,
    server: Option<ServerHandle>,
    /// Tells a server that exits on its own apart from one the registry stopped.
    generation: u64,
}

struct ManagedProxy {
    live: Arc<LiveProxy>,
    runtime: Mutex<Runtime>,
    /// Serialises start/stop/restart/delete of one proxy; never held by readers.
    lifecycle: tokio::sync::Mutex<()>,
    /// The last load of its fixtures directory.
    fixtures: Mutex<Option<FixturesLoad>>,
}

impl ManagedProxy {
    /// `spent_today_usd`: its live spend so far today (UTC), as the roll-ups recorded it.
    fn new(spec: ProxySpec, runtime: Runtime, spent_today_usd: f64) -> Self {
        ManagedProxy {
            live: Arc::new(LiveProxy::new(spec, spent_today_usd)),
            runtime: Mutex::new(runtime),
            lifecycle: tokio::sync::Mutex::new(()),
            fixtures: Mutex::new(None),
        }
    }

    fn snapshot(&self) -> ProxySnapshot {
        let runtime = lock(&self.runtime);
        ProxySnapshot {
            spec: self.live.spec.load_full(),
            status: runtime.status,
            last_error: runtime.last_error.clone(),
            listening_port: runtime.listening_port,
            in_flight: self.live.in_flight(),
            traffic: self.live.traffic(),
            spent_today_usd: self.live.spent_today_usd(),
            cache: CacheCounts::default(),
            recent: RecentTraffic::default(),
            scenarios: self.live.faults.load().active_scenarios(),
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain status fields; the
/// data is still the best we have.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct ProxyRegistry {
    db: DbPool,
    /// The admin's settings; the proxy bind host is read from them at each start.
    system: Arc<Settings>,
    cache: Arc<ResponseCache>,
    telemetry: Arc<Telemetry>,
    settings: RegistrySettings,
    proxies: RwLock<BTreeMap<ProxyId, Arc<ManagedProxy>>>,
    /// Proxies deleted so far: their logs and numbers stay readable to their owners.
    deleted: RwLock<Vec<DeletedProxy>>,
    /// Serialises port choice and insertion so two creations never pick the same port.
    port_assignment: tokio::sync::Mutex<()>,
    events: broadcast::Sender<RegistryEvent>,
    me: Weak<ProxyRegistry>,
}

pub struct Created {
    pub snapshot: ProxySnapshot,
    pub warning: Option<String>,
}

impl ProxyRegistry {
    /// Loads every proxy from the database; call [`ProxyRegistry::restore`] to start the ones
    /// that were running.
    pub async fn load(
        db: DbPool,
        system: Arc<Settings>,
        settings: RegistrySettings,
        cache: Arc<ResponseCache>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Arc<Self>, DbError> {
        let rows = db::run(&db, db::proxies::all).await?;
        let deleted = db::run(&db, db::proxies::all_deleted).await?;
        // So that a restart does not reset the daily spend caps' count.
        let today = start_of_day(Utc::now());
        let spent_today: BTreeMap<i32, f64> = db::run(&db, move |conn| {
            db::metric_rollups::cost_by_proxy_since(conn, today)
        })
        .await?
        .into_iter()
        .collect();
        let mut proxies = BTreeMap::new();
        for row in rows {
            let desired_running = row.desired_state == "running";
            let last_error = row.last_error.clone();
            let spec = ProxySpec::try_from(row)?;
            let runtime = Runtime {
                status: if last_error.is_some() && desired_running {
                    ProxyStatus::Error
                } else {
                    ProxyStatus::Stopped
                },
                last_error,
                desired_running,
                listening_port: None,
                server: None,
                generation: 0,
            };
            let spent = spent_today.get(&spec.id.0).copied().unwrap_or(0.0);
            proxies.insert(spec.id, Arc::new(ManagedProxy::new(spec, runtime, spent)));
        }
        let (events, _) = broadcast::channel(256);
        Ok(Arc::new_cyclic(|me| ProxyRegistry {
            db,
            system,
            cache,
            telemetry,
            settings,
            proxies: RwLock::new(proxies),
            deleted: RwLock::new(deleted.into_iter().map(DeletedProxy::from).collect()),
            port_assignment: tokio::sync::Mutex::new(()),
            events,
            me: me.clone(),
        }))
    }

    /// Starts the proxies whose desired state is "running" (they were running at the last stop).
    /// Returns how many are running afterwards.
    pub async fn restore(&self) -> usize {
        for (id, proxy) in self.entries() {
            let wanted = lock(&proxy.runtime).desired_running;
            if wanted && let Err(e) = self.start(id, Access::All).await {
                log::error!("cannot restore proxy {id}: {e}");
            }
        }
        self.running_count()
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Where proxy ports listen (a changed setting applies to each proxy at its next start).
    pub fn proxy_host(&self) -> IpAddr {
        self.system.get().proxy_host
    }

    /// The cache of a proxy `access` may see.
    pub async fn cache_info(
        &self,
        id: ProxyId,
        access: Access,
    ) -> Result<CacheInfo, RegistryError> {
        self.entry_for(id, access)?;
        Ok(self.cache.info(id).await?)
    }

    /// Empties the cache of a proxy `access` may change; returns how many entries went.
    pub async fn clear_cache(&self, id: ProxyId, access: Access) -> Result<usize, RegistryError> {
        self.entry_for(id, access)?;
        Ok(self.cache.clear(id).await?)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: RegistryEvent) {
        // Nobody listening is fine: events only refresh open pages.
        let _ = self.events.send(event);
    }

    fn entries(&self) -> Vec<(ProxyId, Arc<ManagedProxy>)> {
        self.proxies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, proxy)| (*id, Arc::clone(proxy)))
            .collect()
    }

    fn entry(&self, id: ProxyId) -> Result<Arc<ManagedProxy>, RegistryError> {
        self.proxies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or(RegistryError::NotFound(id))
    }

    /// A proxy's state with its cache numbers.
    fn snapshot(&self, proxy: &ManagedProxy) -> ProxySnapshot {
        let mut snapshot = proxy.snapshot();
        snapshot.cache = self.cache.counts(snapshot.spec.id);
        snapshot.recent = self
            .telemetry
            .metrics
            .recent(snapshot.spec.id.0, chrono::Utc::now());
        snapshot
    }

    pub fn list(&self) -> Vec<ProxySnapshot> {
        self.entries()
            .iter()
            .map(|(_, proxy)| self.snapshot(proxy))
            .collect()
    }

    pub fn get(&self, id: ProxyId) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry(id)?;
        Ok(self.snapshot(&proxy))
    }

    /// Forgets one test's scenario: its next request starts its script, dice and rate window
    /// afresh. False when the proxy had no such scenario.
    pub fn reset_scenario(
        &self,
        id: ProxyId,
        access: Access,
        scenario: &str,
    ) -> Result<bool, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        Ok(proxy.live.faults.load().reset_scenario(scenario))
    }

    /// The proxies `access` may see.
    pub fn list_for(&self, access: Access) -> Vec<ProxySnapshot> {
        self.entries()
            .iter()
            .filter(|(_, proxy)| access.allows(proxy.live.spec.load().owner))
            .map(|(_, proxy)| self.snapshot(proxy))
            .collect()
    }

    /// A proxy `access` may see; another user's proxy is "not found", so ids reveal nothing.
    pub fn get_for(&self, id: ProxyId, access: Access) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        Ok(self.snapshot(&proxy))
    }

    fn entry_for(&self, id: ProxyId, access: Access) -> Result<Arc<ManagedProxy>, RegistryError> {
        let proxy = self.entry(id)?;
        if access.allows(proxy.live.spec.load().owner) {
            Ok(proxy)
        } else {
            Err(RegistryError::NotFound(id))
        }
    }

    /// Deleted proxies whose logs `access` may still read.
    pub fn deleted_for(&self, access: Access) -> Vec<DeletedProxy> {
        self.deleted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|proxy| access.allows(proxy.owner))
            .cloned()
            .collect()
    }

    /// How many proxies `owner` has (for the per-user limit).
    pub fn count_owned_by(&self, owner: UserId) -> usize {
        self.entries()
            .iter()
            .filter(|(_, proxy)| proxy.live.spec.load().owner == owner)
            .count()
    }

    pub fn totals(&self, access: Access) -> Totals {
        let mut totals = Totals::default();
        for proxy in self.list_for(access) {
            totals.total += 1;
            match proxy.status {
                ProxyStatus::Running | ProxyStatus::Starting => totals.running += 1,
                ProxyStatus::Stopped => totals.stopped += 1,
                ProxyStatus::Error => totals.errors += 1,
            }
            if proxy.has_failures_enabled() {
                totals.with_failures += 1;
            }
        }
        totals
    }

    /// Only admins set a service-account key file: the proxy mints the server's Google tokens
    /// with it. Members are refused before the path is looked at, so the answer never tells
    /// them whether a file exists.
    fn check_key_file(
        &self,
        wanted: Option<&str>,
        current: Option<&str>,
        access: Access,
    ) -> Result<(), RegistryError> {
        let wanted = wanted.map(str::trim).filter(|path| !path.is_empty());
        if access == Access::All || wanted.is_none() || wanted == current {
            return Ok(());
        }
        Err(RegistryError::Invalid(vec![FieldError::new(
            "vertex_service_account_file",
            "Only an admin can set a service-account key file; ask an admin to set it on this proxy.",
        )]))
    }

    /// A fixtures directory is read and written with the server's rights, so only an admin
    /// binds a proxy to one (or moves it).
    fn check_fixtures_dir(
        &self,
        input: &ProxyInput,
        current: Option<&Path>,
        access: Access,
    ) -> Result<(), RegistryError> {
        let wanted = input
            .cache
            .as_ref()
            .and_then(|cache| cache.fixtures_dir.as_ref())
            .map(|dir| dir.as_deref().map(str::trim).filter(|d| !d.is_empty()));
        let Some(wanted) = wanted else {
            return Ok(());
        };
        if access == Access::All || wanted.map(Path::new) == current {
            return Ok(());
        }
        Err(RegistryError::Invalid(vec![FieldError::new(
            "cache.fixtures_dir",
            "Only an admin can bind a proxy to a fixtures directory on the server; ask an admin, or use the cache's export and import.",
        )]))
    }

    /// Members' proxies reach public addresses and what an admin allowed; an address written in
    /// the URL is refused here already, names when they are resolved.
    fn check_member_upstream(
        &self,
        valid: &ValidProxy,
        access: Access,
    ) -> Result<(), RegistryError> {
        let Some(url) = valid
            .upstream_url
            .as_deref()
            .filter(|_| access != Access::All)
        else {
            return Ok(());
        };
        match reach::refusal(url, &self.system.member_upstreams().current()) {
            Some(reason) => Err(RegistryError::Invalid(vec![FieldError::new(
                "upstream_url",
                reason,
            )])),
            None => Ok(()),
        }
    }

    pub fn running_count(&self) -> usize {
        self.list().iter().filter(|p| p.status.is_active()).count()
    }
}

/// Lifecycle: create, edit, delete, start, stop.
impl ProxyRegistry {
    /// Creates a proxy and, unless `start` is false, starts it. A port busy in the OS is accepted
    /// with a warning (the user may be about to free it); the proxy then shows the bind error.
    pub async fn create(
        &self,
        input: &ProxyInput,
        start: bool,
        owner: UserId,
        access: Access,
    ) -> Result<Created, RegistryError> {
        self.check_key_file(input.vertex_service_account_file.as_deref(), None, access)?;
        self.check_fixtures_dir(input, None, access)?;
        if access != Access::All && !self.owner_active(owner).await? {
            return Err(RegistryError::Invalid(vec![FieldError::new(
                "owner",
                "This account is disabled.",
            )]));
        }
        let valid = validate(input, &self.settings.port_range).map_err(RegistryError::Invalid)?;
        self.check_member_upstream(&valid, access)?;
        let assignment = self.port_assignment.lock().await;
        let port = match valid.port {
            Some(port) => {
                self.check_port_unclaimed(port, None, access)?;
                port
            }
            None => self.free_port()?,
        };
        let warning = (!ports::is_free_in_os(self.proxy_host(), port)).then(|| {
            format!("Port {port} is in use by another program right now; the proxy cannot start until it is free.")
        });
        let row = NewProxyRow::of(&valid, port, owner);
        let row = db::run(&self.db, move |conn| db::proxies::insert(conn, &row)).await?;
        let spec = ProxySpec::try_from(row)?;
        let id = spec.id;
        let runtime = Runtime {
            status: ProxyStatus::Stopped,
            last_error: None,
            desired_running: false,
            listening_port: None,
            server: None,
            generation: 0,
        };
        self.proxies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(ManagedProxy::new(spec, runtime, 0.0)));
        drop(assignment);
        log::info!("created proxy {id} “{}” on port {port}", valid.name);
        self.emit(RegistryEvent::Added(id));
        let snapshot = if start {
            self.start(id, Access::All).await?
        } else {
            self.get(id)?
        };
        Ok(Created { snapshot, warning })
    }

    /// A copy of a proxy's settings under a new name and a free port, stopped.
    /// The copy belongs to the original's owner.
    pub async fn duplicate(&self, id: ProxyId, access: Access) -> Result<Created, RegistryError> {
        let original = self.get_for(id, access)?.spec;
        let mut input = ProxyInput::from_spec(&original);
        input.name = Some(copy_name(&original.name));
        input.port = None;
        self.create(&input, false, original.owner, access).await
    }

    /// Applies an edit. Everything but the port takes effect at once on a running proxy; a new
    /// port applies at the next start.
    pub async fn update(
        &self,
        id: ProxyId,
        edit: ProxyInput,
        access: Access,
    ) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let current = proxy.live.spec.load_full();
        if edit
            .provider
            .as_deref()
            .is_some_and(|p| p.trim() != current.provider.id())
        {
            return Err(RegistryError::Invalid(vec![FieldError::new(
                "provider",
                "The provider of an existing proxy cannot change; create a new proxy instead.",
            )]));
        }
        self.check_key_file(
            edit.vertex_service_account_file.as_deref(),
            current.vertex_service_account_file.as_deref(),
            access,
        )?;
        self.check_fixtures_dir(&edit, current.cache.fixtures_dir.as_deref(), access)?;
        let input = ProxyInput::from_spec(&current).overlay(edit);
        let valid = validate(&input, &self.settings.port_range).map_err(RegistryError::Invalid)?;
        self.check_member_upstream(&valid, access)?;
        let assignment = self.port_assignment.lock().await;
        let port = valid.port.unwrap_or(current.port);
        if port != current.port {
            self.check_port_unclaimed(port, Some(id), access)?;
        }
        let change = ProxySettingsChange::of(&valid, port);
        db::run(&self.db, move |conn| {
            db::proxies::update_settings(conn, id.0, &change)
        })
        .await?;
        proxy.live.spec.store(Arc::new(ProxySpec {
            name: valid.name,
            port,
            description: valid.description,
            tags: valid.tags,
            upstream_url: valid.upstream_url,
            cache: valid.cache,
            vertex_service_account_file: valid.vertex_service_account_file,
            aws_region: valid.aws_region,
            emulator: valid.emulator,
            log_requests: valid.log_requests,
            daily_spend_cap_usd: valid.daily_spend_cap_usd,
            ..(*current).clone()
        }));
        drop(assignment);
        self.emit(RegistryEvent::Changed(id));
        let updated = proxy.live.spec.load_full();
        let newly_bound = updated.cache.fixtures_dir.is_some()
            && updated.cache.enabled
            && (updated.cache.fixtures_dir != current.cache.fixtures_dir || !current.cache.enabled);
        if newly_bound && lock(&proxy.runtime).status == ProxyStatus::Running {
            self.load_fixtures(&proxy).await?;
        }
        Ok(self.snapshot(&proxy))
    }

    /// Replaces a proxy's failure config: validated, saved, and in force for the next request.
    /// Every save restarts a seeded sequence.
    pub async fn set_failure_config(
        &self,
        id: ProxyId,
        config: FailureConfig,
        access: Access,
    ) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        config
            .validate()
            .map_err(|e| RegistryError::Invalid(vec![e]))?;
        let json = serde_json::to_string(&config)
            .map_err(|e| DbError::Corrupt(format!("cannot encode the failure config: {e}")))?;
        db::run(&self.db, move |conn| {
            db::proxies::set_failure_config(conn, id.0, &json)
        })
        .await?;
        let current = proxy.live.spec.load_full();
        proxy
            .live
            .faults
            .store(Arc::new(Faults::new(config.clone())));
        proxy.live.spec.store(Arc::new(ProxySpec {
            failure_config: config,
            ..(*current).clone()
        }));
        self.emit(RegistryEvent::Changed(id));
        Ok(self.snapshot(&proxy))
    }

    pub async fn delete(&self, id: ProxyId, access: Access) -> Result<(), RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let _lifecycle = proxy.lifecycle.lock().await;
        if lock(&proxy.runtime).status.is_active() {
            return Err(RegistryError::Running(proxy.live.spec.load().name.clone()));
        }
        let spec = proxy.live.spec.load_full();
        let deleted = DeletedProxy {
            id,
            owner: spec.owner,
            name: spec.name.clone(),
        };
        let row = DeletedProxyRow::of(&deleted, Utc::now().naive_utc());
        db::run(&self.db, move |conn| db::proxies::delete(conn, &row)).await?;
        self.proxies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.deleted
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(deleted);
        self.cache.forget(id);
        log::info!("deleted proxy {id}");
        self.emit(RegistryEvent::Removed(id));
        Ok(())
    }

    /// Starts the proxy's server. A port that cannot be bound is not an API error: the proxy
    /// goes to status `error` with a message naming the port.
    pub async fn start(&self, id: ProxyId, access: Access) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let _lifecycle = proxy.lifecycle.lock().await;
        // A request that was under way when its account was disabled must not start the
        // proxies the disabling just stopped; admins still may.
        let owner = proxy.live.spec.load().owner;
        if access != Access::All && !self.owner_active(owner).await? {
            return Err(RegistryError::NotFound(id));
        }
        self.start_locked(id, &proxy).await
    }

    pub async fn stop(
        &self,
        id: ProxyId,
        graceful: bool,
        access: Access,
    ) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let _lifecycle = proxy.lifecycle.lock().await;
        self.stop_server(id, &proxy, graceful).await;
        self.persist_desired(id, &proxy, false).await?;
        Ok(self.snapshot(&proxy))
    }

    pub async fn restart(
        &self,
        id: ProxyId,
        access: Access,
    ) -> Result<ProxySnapshot, RegistryError> {
        let proxy = self.entry_for(id, access)?;
        let _lifecycle = proxy.lifecycle.lock().await;
        self.stop_server(id, &proxy, true).await;
        self.start_locked(id, &proxy).await
    }

    /// Stops every server gracefully for process shutdown, keeping each proxy's desired state so
    /// the next start brings the same proxies back.
    pub async fn shutdown(&self) {
        let stops = self.entries().into_iter().map(|(id, proxy)| async move {
            let _lifecycle = proxy.lifecycle.lock().await;
            self.stop_server(id, &proxy, true).await;
        });
        futures_util::future::join_all(stops).await;
    }

    async fn persist_desired(
        &self,
        id: ProxyId,
        proxy: &ManagedProxy,
        running: bool,
    ) -> Result<(), RegistryError> {
        let state = if running { "running" } else { "stopped" };
        db::run(&self.db, move |conn| {
            db::proxies::set_runtime_state(conn, id.0, state, None)
        })
        .await?;
        lock(&proxy.runtime).desired_running = running;
        Ok(())
    }

    fn set_status(
        &self,
        id: ProxyId,
        proxy: &ManagedProxy,
        status: ProxyStatus,
        last_error: Option<String>,
    ) {
        {
            let mut runtime = lock(&proxy.runtime);
            runtime.status = status;
            runtime.last_error = last_error;
        }
        self.emit(RegistryEvent::Changed(id));
    }
}

fn copy_name(name: &str) -> String {
    let copy: String = format!("{name} (copy)");
    copy.chars().take(80).collect()
}
