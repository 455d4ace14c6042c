//! Rubberduck: a self-hosted LLM caching reverse proxy with failure simulation.

pub mod app;
pub mod auth;
pub mod bench;
pub mod cache;
pub mod config;
pub mod db;
pub mod emulator;
pub mod faults;
pub mod fixtures;
pub mod forwarded;
pub mod gateway;
pub mod ids;
pub mod loadtest;
pub mod providers;
pub mod reach;
pub mod registry;
pub mod settings;
pub mod spec;
pub mod telemetry;
pub mod validation;
pub mod web;

/// The running version, shown in pages and `/healthz`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
