//! Scenario 5: backup throughput by storage: plain and zstd-compressed to a
//! local folder, plain and compressed to the testkit's S3 server (s3s-fs on
//! loopback, in this process). Throughput is the bytes the backup holds
//! (original sizes) per wall second, and per CPU-second of the agent: the
//! per-core figure, which does not depend on how many cores there are.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use innoxide_testkit::S3Server;

use super::Bench;
use crate::agent::{BackupTarget, manifest_facts};
use crate::child::{Run, dir_bytes, remove_dir};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

/// Wall and per-core throughput of one way of storing the backup, and the
/// agent's peak memory doing it (object storage buffers parts in memory,
/// so its figure is not scenario 6's local-folder one).
#[derive(Default)]
struct Mode {
    wall: Series,
    per_core: Series,
    peak_rss: Series,
}

impl Mode {
    fn record(&mut self, result: Result<(Run, u64)>) {
        match result {
            Ok((run, bytes)) => {
                self.wall.push(bytes as f64 / run.seconds());
                self.peak_rss.push(run.peak_rss as f64);
                let cpu = run.cpu.as_secs_f64();
                if cpu > 0.0 {
                    self.per_core.push(bytes as f64 / cpu);
                }
            }
            Err(e) => {
                self.wall.fail(format!("{e:#}"));
                self.per_core.fail(format!("{e:#}"));
                self.peak_rss.fail(format!("{e:#}"));
            }
        }
    }

    fn push_into(&self, s: &mut Scenario, key: &str, label: &str) {
        s.push(Metric::from_series(
            &format!("{key}_wall"),
            &format!("{label}: MB/s"),
            Unit::BytesPerSecond,
            &self.wall,
        ));
        s.push(Metric::from_series(
            &format!("{key}_core"),
            &format!("{label}: MB per CPU-second"),
            Unit::BytesPerCpuSecond,
            &self.per_core,
        ));
        s.push(Metric::from_series(
            &format!("{key}_rss"),
            &format!("{label}: agent peak RSS"),
            Unit::Bytes,
            &self.peak_rss,
        ));
    }
}

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "throughput",
        "5. Throughput: zstd compression and S3",
        "Idle full backups with `--compress` (zstd) to a local folder, and to `s3://` on the testkit's \
         in-process S3 server (s3s-fs on loopback, SigV4 checked), with and without compression. MB/s = \
         original bytes of the backed-up files ÷ wall time; MB per CPU-second = the same bytes ÷ the \
         agent's user + sys CPU time (throughput per core).",
    );
    let mut plain = Mode::default();
    for run in &b.kept.idle_runs {
        if let Some(bytes) = b.kept.idle_backup_bytes {
            plain.record(Ok((run.clone(), bytes)));
        }
    }
    if b.kept.idle_runs.is_empty() {
        plain.record(Err(anyhow::anyhow!("no idle backup ran (scenario 1)")));
    }

    let mut zstd = Mode::default();
    let mut ratios = Vec::new();
    for i in 0..b.repeat() {
        tracing::info!(
            run = i + 1,
            of = b.repeat(),
            "5. compressed backup to a folder"
        );
        let dir = b.scratch(&format!("zstd-{i}"));
        let target = BackupTarget {
            location: dir.display().to_string(),
            compress: true,
            ..Default::default()
        };
        let result = async {
            let run = b
                .agent
                .backup(
                    &b.runner,
                    &format!("zstd-backup-{i}"),
                    b.source.socket(),
                    &target,
                )
                .await?;
            let facts = manifest_facts(&dir)?;
            let Some((original, stored)) = facts.transformed else {
                bail!("the agent wrote no compressed file (no stored_size in innoxide.json)");
            };
            ratios.push(original as f64 / stored.max(1) as f64);
            Ok((run, facts.original_bytes.unwrap_or(original)))
        }
        .await;
        zstd.record(result);
        remove_dir(&dir);
    }

    let mut alone = Series::new();
    for _ in 0..b.repeat() {
        let datadir = b.source.datadir().to_owned();
        match tokio::task::spawn_blocking(move || zstd_alone(&datadir)).await {
            Ok(Ok(rate)) => alone.push(rate),
            Ok(Err(e)) => alone.fail(format!("{e:#}")),
            Err(e) => alone.fail(format!("the zstd yardstick panicked: {e}")),
        }
    }

    let (mut s3_plain, mut s3_zstd) = (Mode::default(), Mode::default());
    match S3Server::start().await {
        Err(e) => {
            s3_plain.record(Err(anyhow::anyhow!("starting the S3 server: {e:#}")));
            s3_zstd.record(Err(anyhow::anyhow!("starting the S3 server: {e:#}")));
        }
        Ok(s3) => {
            for i in 0..b.repeat() {
                for (compress, mode) in [(false, &mut s3_plain), (true, &mut s3_zstd)] {
                    tracing::info!(run = i + 1, of = b.repeat(), compress, "5. backup to S3");
                    mode.record(to_s3(b, &s3, i, compress).await);
                }
            }
        }
    }

    plain.push_into(&mut s, "plain", "file://, uncompressed");
    zstd.push_into(&mut s, "zstd", "file://, zstd");
    s.push(Metric::from_series(
        "zstd_alone_core",
        "zstd library alone (level 1, 4 MiB chunks, one core, the largest table file): MB per CPU-second",
        Unit::BytesPerCpuSecond,
        &alone,
    ));
    s3_plain.push_into(&mut s, "s3", "s3://, uncompressed");
    s3_zstd.push_into(&mut s, "s3_zstd", "s3://, zstd");
    if !ratios.is_empty() {
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        s.note(format!(
            "zstd stored the data files {mean:.2}× smaller (sysbench rows are random strings)."
        ));
    }
    s.note(
        "The S3 server runs inside the bench process: its CPU is not in the agent's CPU-seconds.",
    );
    s.note(
        "The zstd library row is a yardstick, not a backup: the bench compresses the largest table \
         file of the source as the agent does (one zstd context, 4 MiB chunks, level 1) and counts \
         only the compression calls' CPU time: what zstd alone does with the table bytes that make \
         up most of a full-size backup (small datasets have more near-empty pages, which compress \
         faster).",
    );
    Ok(s)
}

/// The agent's zstd level and chunk size (agent/src/repo/chunk.rs:
/// DEFAULT_ZSTD_LEVEL, CHUNK_SIZE); the bench does not link the agent.
const AGENT_ZSTD_LEVEL: i32 = 1;
const AGENT_CHUNK: usize = 4 << 20;

/// The ceiling of a compressed backup's bytes per CPU-second: the zstd
/// library alone compressing the largest table file of `datadir` as the
/// agent does (one context, chunk by chunk) on this thread, counting only
/// the CPU time of the compression calls.
fn zstd_alone(datadir: &Path) -> Result<f64> {
    use std::io::Read;
    let largest = largest_table(datadir)?;
    let mut file = std::fs::File::open(&largest)?;
    let mut compressor = zstd::bulk::Compressor::new(AGENT_ZSTD_LEVEL)?;
    let mut chunk = vec![0u8; AGENT_CHUNK];
    let (mut bytes, mut cpu) = (0u64, 0.0);
    loop {
        let mut n = 0;
        while n < chunk.len() {
            match file.read(&mut chunk[n..])? {
                0 => break,
                read => n += read,
            }
        }
        if n == 0 {
            break;
        }
        let before = thread_cpu_seconds()?;
        let stored = compressor.compress(&chunk[..n])?;
        cpu += thread_cpu_seconds()? - before;
        std::hint::black_box(stored);
        bytes += n as u64;
    }
    if cpu <= 0.0 {
        bail!("{} is empty", largest.display());
    }
    Ok(bytes as f64 / cpu)
}

fn thread_cpu_seconds() -> Result<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_THREAD)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// The largest `.ibd` one folder down in `datadir` (a schema's table).
fn largest_table(datadir: &Path) -> Result<PathBuf> {
    let mut largest: Option<(u64, PathBuf)> = None;
    for schema in std::fs::read_dir(datadir)? {
        let schema = schema?.path();
        if !schema.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&schema)? {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "ibd") {
                let size = path.metadata()?.len();
                if largest.as_ref().is_none_or(|(l, _)| size > *l) {
                    largest = Some((size, path));
                }
            }
        }
    }
    largest
        .map(|(_, path)| path)
        .ok_or_else(|| anyhow::anyhow!("no table file in {}", datadir.display()))
}

/// One backup into the bucket; its bytes are the manifest's original sizes.
async fn to_s3(b: &Bench, s3: &S3Server, i: u32, compress: bool) -> Result<(Run, u64)> {
    let prefix = format!("bench/{}-{i}", if compress { "zstd" } else { "plain" });
    // The agent runs in a scratch folder: an agent that took the URL for a
    // relative path would write there, not pass for a working S3 upload.
    let cwd = b.scratch(&format!("s3-cwd-{i}"));
    std::fs::create_dir_all(&cwd)?;
    let target = BackupTarget {
        location: format!("s3://{}/{prefix}", s3.bucket()),
        compress,
        env: s3
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        cwd: Some(cwd.clone()),
        ..Default::default()
    };
    let result = async {
        let run = b.agent.backup(&b.runner, &format!("s3-backup-{i}"), b.source.socket(), &target).await?;
        let stored = s3.object_path(&prefix);
        if !stored.join("innoxide.json").is_file() {
            bail!(
                "the agent said it succeeded but wrote no innoxide.json to the bucket ({} bytes landed in its \
                 working folder instead: it took the s3:// URL for a local path)",
                dir_bytes(&cwd)
            );
        }
        let bytes = manifest_facts(&stored)?
            .original_bytes
            .unwrap_or_else(|| dir_bytes(&stored));
        remove_dir(&stored);
        Ok((run, bytes))
    }
    .await;
    remove_dir(&cwd);
    result
}
