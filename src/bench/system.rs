//! What the benchmark reads from Linux's /proc: memory and CPU time of processes and threads,
//! and a description of the machine.

use std::path::Path;

use serde::Serialize;

use super::BenchError;

/// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Resident now (VmRSS).
    pub rss_kib: u64,
    /// The most ever resident (VmHWM, the high-water mark).
    pub peak_kib: u64,
    pub threads: u64,
}

pub fn memory(pid: u32) -> Result<Memory, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = read(Path::new(&path))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| BenchError::Proc(format!("{path} has no {name}")))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// User plus system CPU seconds of a process or thread from its `stat` file.
pub fn cpu_seconds(stat_path: &Path) -> Result<f64, BenchError> {
    let stat = read(stat_path)?;
    // The command name in parentheses may hold spaces; the fields are counted after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the name: state is field 3, utime field 14, stime field 15.
    let ticks = |index: usize| fields.get(index - 3).and_then(|v| v.parse::<u64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / TICKS_PER_SECOND),
        _ => Err(BenchError::Proc(format!(
            "{} is not a stat file",
            stat_path.display()
        ))),
    }
}

pub fn process_cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    cpu_seconds(Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU seconds of this process's threads with the given name.
pub fn own_threads_cpu_seconds(name: &str) -> Result<f64, BenchError> {
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| BenchError::Proc(e.to_string()))?;
    let mut seconds = 0.0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            seconds += cpu_seconds(&task.path().join("stat"))?;
        }
    }
    Ok(seconds)
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1, 5 and 15 minute load averages when the run started.
    pub load: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let read_trimmed = |path: &str| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let load = read_trimmed("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            load,
        }
    }
}

fn read(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path)
        .map_err(|e| BenchError::Proc(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let memory = memory(std::process::id()).expect("own status");
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        assert!(process_cpu_seconds(std::process::id()).expect("own stat") >= 0.0);
    }

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("stat");
        std::fs::write(
            &path,
            "42 (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0",
        )
        .expect("write");
        assert!((cpu_seconds(&path).expect("parses") - 3.0).abs() < 1e-9);
    }
}
