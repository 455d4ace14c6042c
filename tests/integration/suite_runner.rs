//! Running a conformance suite of another language (pytest, node --test) as one Rust test:
//! its output echoed live and kept for the failure message.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

/// How much of a suite's output a failure message repeats (all of it was printed already).
const TAIL_LINES: usize = 150;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// FNV-1a: a stable fingerprint of the requirements file for the install stamp.
pub fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

pub fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("{what}: could not start it: {error}"));
    assert!(status.success(), "{what} failed: {status}");
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

/// Runs `command` (stdout and stderr piped) to its end; fails with the tail of its output.
pub fn run_suite(command: &mut Command, what: &str) {
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("{what}: could not start it: {error}"));
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
    let status = child.wait().expect("the suite runs");
    for reader in readers {
        reader.join().expect("output reader");
    }
    let output = output.lock().expect("output lock");
    let tail = output[output.len().saturating_sub(TAIL_LINES)..].join("\n");
    assert!(
        status.success(),
        "{what} failed ({status}); last lines of its output:\n{tail}"
    );
}
