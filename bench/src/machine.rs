//! The machine the numbers were taken on: cores, memory, the disk under the
//! work folder. Read from /proc, /sys and `df`/`free`, once per run.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// `nproc`.
    pub cores: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
    pub os: String,
    /// Device, file system and what /sys says about the disk under the work folder.
    pub disk: String,
    /// `free -h`, as printed.
    pub free: String,
    /// `df -hT <work folder>`, as printed.
    pub df: String,
}

impl Machine {
    pub fn describe(work: &Path) -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let df = output("df", &["-hT", &work.display().to_string()]);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            disk: disk_of(&df),
            free: output("free", &["-h"]),
            df,
        }
    }

    /// One line for the report's head.
    pub fn summary(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB RAM, {}; {}; kernel {}",
            self.cores,
            self.cpu_model,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.disk,
            self.os,
            self.kernel
        )
    }
}

/// "/dev/vda (ext4, 252G, virtio, rotational=1 as reported)" from `df -hT`'s
/// second line and /sys/block.
fn disk_of(df: &str) -> String {
    let Some(line) = df.lines().nth(1) else {
        return "unknown disk".into();
    };
    let cols: Vec<&str> = line.split_whitespace().collect();
    let (device, fstype, size) = match cols.as_slice() {
        [d, t, s, ..] => (*d, *t, *s),
        _ => return line.to_string(),
    };
    let name = device.trim_start_matches("/dev/");
    let block = Path::new("/sys/block").join(name);
    let mut parts = vec![fstype.to_string(), format!("{size} file system")];
    let driver = std::fs::read_link(block.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(driver) = driver {
        parts.push(format!("driver {driver}"));
    }
    let model = read(block.join("device/model"));
    if !model.trim().is_empty() {
        parts.push(model.trim().to_string());
    }
    let rotational = read(block.join("queue/rotational"));
    if !rotational.trim().is_empty() {
        parts.push(format!(
            "rotational={} (as the VM reports it)",
            rotational.trim()
        ));
    }
    format!("{device} ({})", parts.join(", "))
}

/// The 1-minute load average, as /proc/loadavg prints it.
pub fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_else(|e| format!("{program}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_comes_from_dfs_second_line() {
        let df = "Filesystem Type Size Used Avail Use% Mounted on\n\
                  /dev/nonexistent-disk ext4 252G 18G 74G 20% /";
        assert_eq!(
            disk_of(df),
            "/dev/nonexistent-disk (ext4, 252G file system)"
        );
        assert_eq!(disk_of(""), "unknown disk");
    }
}
