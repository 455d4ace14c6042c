//! One integration-test binary (every file directly in tests/ links separately); the modules
//! below start the real servers on 127.0.0.1 with a temporary data directory and talk HTTP.

// The crate's lints deny unwrap, expect and panic outside tests; this whole binary is tests,
// helpers included, where a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod integration {
    pub mod proxied;
    pub mod suite_runner;
    pub mod support;
    pub mod upstream;

    mod accounts;
    mod api;
    pub mod binary;
    mod browser;
    pub mod cache;
    mod cache_budget;
    mod cache_view;
    mod config_file;
    mod drops;
    mod emulator;
    mod escalation;
    mod faults;
    mod fixtures;
    mod forwarding;
    mod hardening;
    mod http2;
    mod js_sdk;
    mod lifecycle;
    mod loadtest;
    mod login_hardening;
    mod logs;
    mod oidc;
    mod pages;
    mod revocation;
    pub mod scenarios;
    mod sdk;
    mod slow_clients;
    mod spend_cap;
    mod telemetry;
    mod verify;
}
