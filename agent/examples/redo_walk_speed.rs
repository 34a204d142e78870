//! How fast the redo record reader walks: the real redo of
//! `tests/fixtures/innodb/make-redo-records.sh`, walked over and over.
//!
//! `cargo run --release -p innoxide-agent --example redo_walk_speed [SECONDS]`

use std::time::{Duration, Instant};

use innoxide_agent::innodb::redo_walk::walk_blocks;

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3.0);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/innodb");
    let blocks = zstd::decode_all(&std::fs::read(format!("{dir}/redo-records.bin.zst"))?[..])?;
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/redo-records.json"))?)?;
    let number = |key: &str| facts[key].as_u64().unwrap_or_default();
    let (first, end) = (number("first_block_lsn"), number("end_lsn"));
    let page_size = number("page_size") as usize;

    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (mut walks, mut records) = (0u64, 0u64);
    while started.elapsed() < budget {
        let summary = walk_blocks(&blocks, first, end, page_size)?;
        records += summary.records;
        walks += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = walks as f64 * (end - first) as f64;
    println!(
        "walked {walks} × {:.1} MB of redo ({} records each) in {elapsed:.2} s: {:.0} MB/s, {:.1} M records/s",
        (end - first) as f64 / 1e6,
        records / walks.max(1),
        bytes / elapsed / 1e6,
        records as f64 / elapsed / 1e6,
    );
    Ok(())
}
