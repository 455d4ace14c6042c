//! The SDK conformance suite: `tests/sdk` drives real proxies of the `rubberduck` binary through
//! the official Python SDKs (openai, anthropic, boto3, google-genai) against a recording mock
//! upstream. This test prepares a virtualenv for it and runs it with pytest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::suite_runner::{fingerprint, repo, run, run_suite};
use super::support::port_block_of;

const REQUIREMENTS: &str = "tests/sdk/requirements.txt";

/// `<CARGO_TARGET_TMPDIR>/sdk-venv` with the pinned requirements; reinstalled only when the
/// requirements file changed since the last install.
fn virtualenv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (the SDK suite needs Python 3 with venv)",
        );
    }
    let requirements = repo().join(REQUIREMENTS);
    let wanted = fingerprint(&std::fs::read(&requirements).expect("tests/sdk/requirements.txt"));
    let stamp = venv.join("requirements.sha");
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    if installed.trim() != wanted {
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    "-r",
                ])
                .arg(&requirements),
            "pip install -r tests/sdk/requirements.txt",
        );
        std::fs::write(&stamp, format!("{wanted}\n")).expect("write the install stamp");
    }
    venv
}

#[test]
fn official_sdks_work_through_the_proxies() {
    let venv = virtualenv();
    // Every test of the suite creates its own proxies.
    let ports = port_block_of(200);
    let mut command = Command::new(venv.join("bin").join("python"));
    command
        .args(["-m", "pytest", "tests/sdk", "-q", "-p", "no:cacheprovider"])
        .current_dir(repo())
        .env("RUBBERDUCK_BIN", env!("CARGO_BIN_EXE_rubberduck"))
        .env(
            "SDK_PROXY_PORTS",
            format!("{}-{}", ports.start(), ports.end()),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("SDK_DIRECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_suite(&mut command, "the SDK suite (pytest)");
}
