//! The JavaScript conformance suite: `tests/js` drives real proxies of the `rubberduck` binary
//! through the official JavaScript SDKs from npm (pinned in `tests/js/package-lock.json`) against
//! the recording mock upstream of `tests/sdk`. This test installs the packages with `npm ci` when
//! the lock file changed and runs the suite with `node --test`.

use std::process::{Command, Stdio};

use super::suite_runner::{fingerprint, repo, run, run_suite};
use super::support::port_block_of;

#[test]
fn official_javascript_sdks_work_through_the_proxies() {
    let suite = repo().join("tests").join("js");
    let lock = std::fs::read(suite.join("package-lock.json")).expect("tests/js/package-lock.json");
    let wanted = fingerprint(&lock);
    let stamp = suite.join("node_modules").join(".installed-lock.sha");
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    if installed.trim() != wanted {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&suite),
            "npm ci in tests/js (the JS suite needs Node and npm)",
        );
        std::fs::write(&stamp, format!("{wanted}\n")).expect("write the install stamp");
    }
    let ports = port_block_of(250);
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=2"])
        .current_dir(&suite)
        .env("RUBBERDUCK_BIN", env!("CARGO_BIN_EXE_rubberduck"))
        .env(
            "JS_PROXY_PORTS",
            format!("{}-{}", ports.start(), ports.end()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_suite(&mut command, "the JavaScript SDK suite (node --test)");
}
