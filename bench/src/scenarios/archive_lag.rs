//! Scenario 10: binlog archive lag. `innoxide-agent archive-binlogs`
//! follows the source into a folder while sysbench writes, once at the
//! default upload interval and once at a short one. The lag is sampled
//! from outside, as an operator would see it: every 200 ms, now minus the
//! newest commit time the archive's index (`binlog-index.json`) names.
//! Under a steady load the server commits all the time, so this is how old
//! the newest transaction not yet archived can get: the delay from a
//! commit to it being in the archive. Afterwards `--until-current` checks
//! that the archive holds every transaction the server executed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Bench, OPEN_ENDED};
use crate::child::{Cmd, remove_dir};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

/// The short upload interval measured beside the default one.
const SHORT_INTERVAL: u64 = 1;
/// How often the index is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "archive_lag",
        "10. Binlog archive lag",
        "`innoxide-agent archive-binlogs` follows the source into a folder while sysbench \
         writes, at the default upload interval (30 s) and at 1 s. Every 200 ms the archive's \
         index is read: lag = now − the newest commit time it names, or the load's start \
         before it names one of the load (how long the newest unarchived transaction has \
         waited). Median and max over the load's samples; the \
         archive is checked to hold the server's whole gtid_executed afterwards.",
    );
    let seconds = if b.plan.label == "smoke" { 12 } else { 120 };
    for (key, label, interval) in [
        ("lag_default", "default interval (30 s)", None),
        ("lag_short", "1 s interval", Some(SHORT_INTERVAL)),
    ] {
        let archive = b.scratch(&format!("archive-lag-{key}"));
        let samples = follow_under_load(b, &archive, interval, Duration::from_secs(seconds)).await;
        remove_dir(&archive);
        let series = match samples {
            Ok(values) => {
                let mut series = Series::new();
                for v in values {
                    series.push(v);
                }
                series
            }
            Err(e) => {
                let mut series = Series::new();
                series.fail(format!("{e:#}"));
                series
            }
        };
        s.push(Metric::from_series(
            key,
            &format!("Archive lag under load, {label}: median (min–max) of the samples"),
            Unit::Seconds,
            &series,
        ));
    }
    s.note(format!(
        "{seconds} s of sysbench load ({} threads) per interval; the archive first caught up \
         with `--until-current` (not measured). With a load shorter than a few intervals the \
         default interval's figure is bounded by the load's length.",
        b.opts.load_threads
    ));
    Ok(s)
}

/// Catches the archive up, starts the follower, runs the load and samples
/// the lag; then stops the follower and checks the archive is whole.
async fn follow_under_load(
    b: &Bench,
    archive: &Path,
    interval: Option<u64>,
    load: Duration,
) -> Result<Vec<f64>> {
    std::fs::create_dir_all(archive)?;
    let socket = b.source.socket().to_owned();
    let base = |verb_args: &[String]| {
        let mut cmd = Cmd::new(&b.agent.bin)
            .arg("archive-binlogs")
            .arg(format!("--socket={}", socket.display()))
            .arg("--user=root");
        for a in verb_args {
            cmd = cmd.arg(a);
        }
        cmd.arg(archive)
    };
    b.runner
        .run("archive-lag-catch-up", &base(&["--until-current".into()]))
        .await
        .context("catching the archive up before the load")?;

    let mut follower = tokio::process::Command::new(&b.agent.bin);
    follower
        .arg("archive-binlogs")
        .arg(format!("--socket={}", socket.display()))
        .arg("--user=root");
    if let Some(seconds) = interval {
        follower.arg(format!("--upload-interval={seconds}"));
    }
    let log = b.work.join(format!(
        "archive-lag-follower-{}.log",
        interval.unwrap_or(0)
    ));
    let mut follower = follower
        .arg(archive)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting archive-binlogs")?;

    let load_started = time::OffsetDateTime::now_utc();
    let run = b.sysbench.run_background(b.opts.load_threads, OPEN_ENDED)?;
    let index = archive.join("binlog-index.json");
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < load {
        tokio::time::sleep(SAMPLE_EVERY).await;
        // Until the archive holds a transaction of the load, the load's
        // first one has waited since the load started.
        let newest = newest_commit(&index).map_or(load_started, |n| n.max(load_started));
        let now = time::OffsetDateTime::now_utc();
        samples.push(((now - newest).as_seconds_f64()).max(0.0));
        if let Some(status) = follower.try_wait()? {
            let _ = run.stop().await;
            bail!(
                "archive-binlogs exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
    run.stop().await.context("the sysbench load")?;
    if let Some(pid) = follower.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let ended = tokio::time::timeout(Duration::from_secs(120), follower.wait())
        .await
        .context("archive-binlogs did not stop within 2 minutes of SIGTERM")??;
    if !ended.success() {
        bail!(
            "archive-binlogs ended with {ended}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    let whole = b
        .runner
        .run("archive-lag-check", &base(&["--until-current".into()]))
        .await
        .context("archiving up to the server's position after the load")?;
    let history = whole.stdout.trim();
    let executed = b.source.gtid_executed().await?;
    if innoxide_testkit::gtid_count(history)? < innoxide_testkit::gtid_count(&executed)? {
        bail!("the archive holds {history}, the server executed {executed}");
    }
    Ok(samples)
}

/// The newest commit time the index names, if it can be read now.
fn newest_commit(index: &PathBuf) -> Option<time::OffsetDateTime> {
    let text = std::fs::read(index).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
    json["files"]
        .as_array()?
        .iter()
        .filter_map(|f| f["last_event_time"].as_str())
        .filter_map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .max()
}
