//! The mini instance's buffer pool: at least what the user gave
//! (`--use-memory`), more when the redo to replay is large and the memory is
//! free. Crash recovery keeps the parsed redo records in the buffer pool;
//! when they do not fit it applies what it has, frees the pool and scans the
//! log again from there, so a pool too small for the redo multiplies the
//! scans (and each apply batch flushes).

use std::path::Path;

/// Bytes of buffer pool per byte of redo that recovery keeps in one pass:
/// the parsed records and their hash take about twice the log's bytes, and
/// the pages they change need frames too.
const POOL_PER_REDO_BYTE: u64 = 3;
/// What the server needs besides the records (dictionary, undo, rollback).
const POOL_BASE: u64 = 128 << 20;
/// The most apply-log takes by itself, whatever the redo.
const POOL_MAX: u64 = 8 << 30;
/// mysqld rounds the pool to its chunk size; asking in chunks says what it
/// will use.
const POOL_CHUNK: u64 = 128 << 20;

/// The buffer pool for replaying `redo_bytes`: `floor`, or enough for the
/// whole redo in one pass when that is more, within half of `free` memory
/// and [`POOL_MAX`]. Pure.
pub fn buffer_pool_for(floor: u64, redo_bytes: u64, free: Option<u64>) -> u64 {
    let wanted = redo_bytes
        .saturating_mul(POOL_PER_REDO_BYTE)
        .saturating_add(POOL_BASE)
        .div_ceil(POOL_CHUNK)
        .saturating_mul(POOL_CHUNK)
        .min(POOL_MAX);
    let room = free.map_or(0, |free| free / 2);
    floor.max(wanted.min(room))
}

/// Memory this process may still take: the machine's available memory,
/// or less when its cgroup (a container's limit) has less room.
pub fn free_memory() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_available(&text));
    let cgroup = cgroup_room(Path::new("/sys/fs/cgroup"));
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn meminfo_available(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// `memory.max − memory.current` of the cgroup v2 this process is in, when
/// it has a limit.
fn cgroup_room(root: &Path) -> Option<u64> {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).ok();
    let max = read("memory.max")?.trim().parse::<u64>().ok()?;
    let current = read("memory.current")?.trim().parse::<u64>().ok()?;
    Some(max.saturating_sub(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn small_redo_keeps_the_floor_and_large_redo_grows_within_free_memory() {
        assert_eq!(
            buffer_pool_for(256 * MIB, 10 * MIB, Some(16 << 30)),
            256 * MIB
        );
        // 137 MiB of redo: 3 × 137 + 128 = 539 MiB, in 128 MiB chunks.
        assert_eq!(
            buffer_pool_for(256 * MIB, 137 * MIB, Some(16 << 30)),
            640 * MIB
        );
        // Half of what is free, at most.
        assert_eq!(
            buffer_pool_for(256 * MIB, 1 << 30, Some(1 << 30)),
            512 * MIB
        );
        // Never below what the user gave, never above the cap.
        assert_eq!(buffer_pool_for(2 << 30, 137 * MIB, Some(MIB)), 2 << 30);
        assert_eq!(
            buffer_pool_for(128 * MIB, 100 << 30, Some(1 << 40)),
            POOL_MAX
        );
        // Free memory unknown: the floor.
        assert_eq!(buffer_pool_for(128 * MIB, 1 << 30, None), 128 * MIB);
    }

    #[test]
    fn available_memory_from_meminfo_and_cgroup() {
        let meminfo =
            "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   22000000 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(22_000_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(dir.path().join("memory.current"), "1000\n").unwrap();
        assert_eq!(cgroup_room(dir.path()), None, "no limit");
        std::fs::write(dir.path().join("memory.max"), "5000\n").unwrap();
        assert_eq!(cgroup_room(dir.path()), Some(4000));
    }
}
