//! One integration-test binary (every file directly in tests/ links separately); the modules
//! below start the real servers on 127.0.0.1 with a temporary data directory and talk HTTP.

mod integration {
    pub mod support;

    mod api;
    mod binary;
    mod browser;
    mod lifecycle;
    mod pages;
}
