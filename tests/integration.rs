//! One integration-test binary (every file directly in tests/ links separately); the modules
//! below start the real servers on 127.0.0.1 with a temporary data directory and talk HTTP.

mod integration {
    pub mod proxied;
    pub mod suite_runner;
    pub mod support;
    pub mod upstream;

    mod accounts;
    mod api;
    mod binary;
    mod browser;
    mod cache;
    mod emulator;
    mod faults;
    mod forwarding;
    mod http2;
    mod js_sdk;
    mod lifecycle;
    mod loadtest;
    mod logs;
    mod oidc;
    mod pages;
    mod sdk;
    mod telemetry;
}
