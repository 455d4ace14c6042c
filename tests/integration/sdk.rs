//! The SDK conformance suite: `tests/sdk` drives real proxies of the `rubberduck` binary through
//! the official Python SDKs (openai, anthropic, boto3, google-genai) against a recording mock
//! upstream. This test prepares a virtualenv for it and runs it with pytest.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use super::support::port_block_of;

const REQUIREMENTS: &str = "tests/sdk/requirements.txt";
/// How much of pytest's output a failure message repeats (all of it was printed already).
const TAIL_LINES: usize = 150;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// FNV-1a: a stable fingerprint of the requirements file for the install stamp.
fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("{what}: could not start it: {error}"));
    assert!(status.success(), "{what} failed: {status}");
}

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

/// Echoes a child's output line by line (captured by the test harness, live with
/// `--nocapture`) and keeps it for the failure message.
fn echo(
    stream: impl Read + Send + 'static,
    kept: Arc<Mutex<Vec<String>>>,
    to_stderr: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            kept.lock().expect("output lock").push(line);
        }
    })
}

#[test]
fn official_sdks_work_through_the_proxies() {
    let venv = virtualenv();
    // Every test of the suite creates its own proxies.
    let ports = port_block_of(200);
    let mut child = Command::new(venv.join("bin").join("python"))
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
        .stderr(Stdio::piped())
        .spawn()
        .expect("pytest starts from the virtualenv");
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        echo(
            child.stdout.take().expect("stdout"),
            Arc::clone(&output),
            false,
        ),
        echo(
            child.stderr.take().expect("stderr"),
            Arc::clone(&output),
            true,
        ),
    ];
    let status = child.wait().expect("pytest runs");
    for reader in readers {
        reader.join().expect("output reader");
    }
    let output = output.lock().expect("output lock");
    let tail = output[output.len().saturating_sub(TAIL_LINES)..].join("\n");
    assert!(
        status.success(),
        "the SDK suite failed ({status}); last lines of its output:\n{tail}"
    );
}
