//! Command line and environment, and the config file (`file`).

pub mod file;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::validation::parse_port_range;

#[derive(Debug, Parser)]
#[command(
    name = "rubberduck",
    version,
    about = "LLM caching reverse proxy with failure simulation"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, so that plain `rubberduck` serves.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the dashboard and every proxy (the default).
    Serve(Box<ServeArgs>),
    /// Fire LLM requests at a proxy and report throughput and latency.
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Measure what a proxy adds over calling the upstream directly (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Export or import a proxy's recorded answers as fixtures, on a data directory.
    Fixtures(crate::fixtures::cli::FixturesArgs),
    /// Check a config file without starting anything: prints every problem, with its line.
    Check(CheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The config file to check (TOML; see README.md, "Config file").
    #[arg(long)]
    pub config: PathBuf,

    /// Ports proxies may use, as FIRST-LAST (as `serve` would be given them).
    #[arg(long, env = "RUBBERDUCK_PROXY_PORTS", default_value = "8001-9999", value_parser = parse_port_range)]
    pub proxy_ports: RangeInclusive<u16>,
}

/// `rubberduck check --config FILE`: `FILE: N proxies OK` and success, or every problem and
/// failure. Reads nothing but the file (and the paths it names); no data directory.
pub fn check(args: &CheckArgs) -> std::process::ExitCode {
    match file::ConfigFile::load(&args.config, &args.proxy_ports) {
        Ok(file) => {
            let count = file.declarations.proxies.len();
            let noun = if count == 1 { "proxy" } else { "proxies" };
            println!("{}: {count} {noun} OK", file.shown);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A config file declaring proxies (TOML), applied at start: each is created or updated by
    /// name, owned by the first admin, and started; a wrong file stops the start.
    #[arg(long, env = "RUBBERDUCK_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the dashboard and admin API.
    #[arg(long, env = "RUBBERDUCK_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Directory holding the SQLite database.
    #[arg(long, env = "RUBBERDUCK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address the proxy ports listen on (0.0.0.0 to reach them from other machines).
    #[arg(long, env = "RUBBERDUCK_PROXY_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub proxy_host: IpAddr,

    /// Ports proxies may use, as FIRST-LAST.
    #[arg(long, env = "RUBBERDUCK_PROXY_PORTS", default_value = "8001-9999", value_parser = parse_port_range)]
    pub proxy_ports: RangeInclusive<u16>,

    /// Worker threads each proxy's server runs. Two let a busy proxy use two cores (and keep the
    /// request log's cost to a few percent); each costs about 1.8 MiB while idle.
    #[arg(long, env = "RUBBERDUCK_PROXY_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub proxy_workers: u16,

    /// Seconds a graceful stop waits for in-flight requests before closing them.
    #[arg(long, env = "RUBBERDUCK_STOP_TIMEOUT", default_value_t = 10)]
    pub stop_timeout: u64,

    /// Seconds to wait for an upstream's response head (streamed bodies may run longer).
    #[arg(long, env = "RUBBERDUCK_UPSTREAM_TIMEOUT", default_value_t = 600)]
    pub upstream_timeout: u64,

    /// Largest request body a proxy accepts, in MiB.
    #[arg(long, env = "RUBBERDUCK_MAX_REQUEST_MB", default_value_t = 64)]
    pub max_request_mb: usize,

    /// Seconds a client has to send a whole request body to a proxy; a slower one gets a 408.
    #[arg(long, env = "RUBBERDUCK_REQUEST_BODY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_body_timeout: u64,

    /// Memory all proxies together may hold in request bodies being received, in MiB; past it a
    /// request is answered 503 at once instead of being read.
    #[arg(long, env = "RUBBERDUCK_REQUEST_BODIES_MB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_bodies_mb: u64,

    /// Connections one proxy port serves at once; more wait to be accepted, so one busy or
    /// hostile client cannot use up the process's open files (0: a quarter of the open-file
    /// limit).
    #[arg(
        long,
        env = "RUBBERDUCK_MAX_CONNECTIONS_PER_PROXY",
        default_value_t = 0
    )]
    pub max_connections_per_proxy: usize,

    /// Memory for the in-memory tier of the response cache, in MiB (SQLite holds the rest).
    #[arg(long, env = "RUBBERDUCK_CACHE_MEMORY_MB", default_value_t = 256)]
    pub cache_memory_mb: u64,

    /// Writes (log entries, cache entries, hits, roll-ups) that may wait for the database
    /// writer; past this they are dropped and counted in /metrics. ~0.5 KiB each while queued.
    #[arg(long, env = "RUBBERDUCK_WRITE_QUEUE", default_value_t = DEFAULT_WRITE_QUEUE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub write_queue: u32,

    /// Email of the admin created at the first start.
    #[arg(
        long,
        env = "RUBBERDUCK_ADMIN_EMAIL",
        default_value = "admin@localhost"
    )]
    pub admin_email: String,

    /// Password of the admin created at the first start; without it one is generated and
    /// printed once. Environment only, so it never shows in the process list.
    #[arg(skip = Secret::from_env("RUBBERDUCK_ADMIN_PASSWORD"))]
    pub admin_password: Option<Secret>,

    /// Accepted as an API token of the first admin, for automation. Environment only.
    #[arg(skip = Secret::from_env("RUBBERDUCK_BOOTSTRAP_TOKEN"))]
    pub bootstrap_token: Option<Secret>,

    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// Single sign-on through an OpenID Connect provider; off unless an issuer and a client id
/// are given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Single sign-on (OIDC)")]
pub struct OidcArgs {
    /// Issuer URL of the OpenID Connect provider (its discovery document is read from
    /// ISSUER/.well-known/openid-configuration). https, or http on a loopback address.
    #[arg(long = "oidc-issuer", env = "RUBBERDUCK_OIDC_ISSUER")]
    pub issuer: Option<String>,

    /// Client id Rubberduck is registered under at the provider.
    #[arg(long = "oidc-client-id", env = "RUBBERDUCK_OIDC_CLIENT_ID")]
    pub client_id: Option<String>,

    /// The client's secret; environment only (`RUBBERDUCK_OIDC_CLIENT_SECRET`). Without it
    /// Rubberduck signs in as a public client (PKCE only).
    #[arg(skip = Secret::from_env("RUBBERDUCK_OIDC_CLIENT_SECRET"))]
    pub client_secret: Option<Secret>,

    /// Where the provider sends the browser back to; register it at the provider. Default:
    /// http://<dashboard address>/login/oidc/callback.
    #[arg(long = "oidc-redirect-url", env = "RUBBERDUCK_OIDC_REDIRECT_URL")]
    pub redirect_url: Option<String>,

    /// Label of the sign-in button ("Sign in with <name>").
    #[arg(
        long = "oidc-name",
        env = "RUBBERDUCK_OIDC_NAME",
        default_value = "Single sign-on"
    )]
    pub name: String,

    /// Scopes to ask for, separated by spaces or commas (`openid` is always asked for).
    #[arg(
        long = "oidc-scopes",
        env = "RUBBERDUCK_OIDC_SCOPES",
        default_value = "openid email profile"
    )]
    pub scopes: String,

    /// Email domains allowed to sign in, comma-separated; empty lets in anyone the provider
    /// vouches for.
    #[arg(
        long = "oidc-allowed-domains",
        env = "RUBBERDUCK_OIDC_ALLOWED_DOMAINS",
        default_value = ""
    )]
    pub allowed_domains: String,

    /// Whether someone without an account gets a member account at their first sign-in
    /// (true/false); without it an admin creates accounts first.
    #[arg(
        long = "oidc-auto-create",
        env = "RUBBERDUCK_OIDC_AUTO_CREATE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub auto_create: bool,
}

impl Default for OidcArgs {
    /// The defaults of the command line: single sign-on off.
    fn default() -> Self {
        OidcArgs {
            issuer: None,
            client_id: None,
            client_secret: None,
            redirect_url: None,
            name: "Single sign-on".to_owned(),
            scopes: "openid email profile".to_owned(),
            allowed_domains: String::new(),
            auto_create: true,
        }
    }
}

/// A password or token from the environment; never printed, not even in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    fn from_env(name: &str) -> Option<Secret> {
        std::env::var(name)
            .ok()
            .filter(|value| !value.is_empty())
            .map(Secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl ServeArgs {
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout)
    }
}

/// Deep enough for the bench's miss run at 32 connections (BENCHMARKS.md) to lose nothing.
pub const DEFAULT_WRITE_QUEUE: u32 = 50_000;

impl Default for ServeArgs {
    /// The defaults of the command line.
    fn default() -> Self {
        ServeArgs {
            config: None,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
            data_dir: PathBuf::from("./data"),
            proxy_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            proxy_ports: 8001..=9999,
            proxy_workers: 2,
            stop_timeout: 10,
            upstream_timeout: 600,
            max_request_mb: 64,
            request_body_timeout: 60,
            request_bodies_mb: 512,
            max_connections_per_proxy: 0,
            cache_memory_mb: 256,
            write_queue: DEFAULT_WRITE_QUEUE,
            admin_email: "admin@localhost".to_owned(),
            admin_password: None,
            bootstrap_token: None,
            oidc: OidcArgs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_command_line() {
        let parsed = Cli::try_parse_from(["rubberduck"]).expect("no arguments parse");
        let defaults = ServeArgs::default();
        assert_eq!(parsed.serve.bind, defaults.bind);
        assert_eq!(parsed.serve.proxy_ports, defaults.proxy_ports);
        assert_eq!(parsed.serve.upstream_timeout, defaults.upstream_timeout);
        assert_eq!(parsed.serve.oidc.name, defaults.oidc.name);
        assert_eq!(parsed.serve.oidc.scopes, defaults.oidc.scopes);
        assert_eq!(parsed.serve.oidc.auto_create, defaults.oidc.auto_create);
    }

    #[test]
    fn oidc_auto_create_reads_yes_and_no() {
        let off = Cli::try_parse_from(["rubberduck", "--oidc-auto-create", "no"]).expect("parses");
        assert!(!off.serve.oidc.auto_create);
        let on = Cli::try_parse_from(["rubberduck", "--oidc-auto-create", "true"]).expect("parses");
        assert!(on.serve.oidc.auto_create);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("8001-9999"), Ok(8001..=9999));
        assert!(parse_port_range("9-8").is_err());
        assert!(parse_port_range("0-8").is_err());
        assert!(parse_port_range("8001").is_err());
    }
}
