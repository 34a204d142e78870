//! Scenario 8: incremental backups. A full backup (with `--page-tracking`,
//! which starts the server's page tracking), then 1% of the dataset
//! changed, then an incremental of it twice: its changed pages found by
//! page tracking and by a full scan; each as a ratio to the full backup's
//! time and bytes. Then two more 1% changes, each followed by a
//! page-tracked incremental, and the restore of the chain (full + 3
//! incrementals: apply-log, three apply-incremental-backup, copy-back)
//! against the restore of the full alone (apply-log, copy-back).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Bench, settle};
use crate::agent::{BackupTarget, manifest_facts};
use crate::child::remove_dir;
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

/// The incremental methods compared.
const METHODS: [(&str, &str); 2] = [("page_track", "page-track"), ("full_scan", "full-scan")];

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "incremental",
        "8. Incremental backup after a 1% change, and restoring a chain",
        "A full backup of the idle server to a local folder (`--page-tracking`), then 1% of every \
         sysbench table's rows (a contiguous range of ids, so about 1% of the data pages) given a \
         new `c`, the change flushed, and an incremental of it (`--incremental=page-track`, and \
         `--incremental=full-scan` from the same base): wall time and bytes held, as ratios to the \
         full backup's. Then two more such changes and page-tracked incrementals, and the restore \
         of the chain of full + 3 incrementals (apply-log, apply-incremental-backup of each, \
         copy-back) against that of the full alone (apply-log, copy-back).",
    );
    let mut full = (Series::new(), Series::new());
    let mut inc: Vec<(Series, Series)> = METHODS
        .iter()
        .map(|_| (Series::new(), Series::new()))
        .collect();
    let (mut alone, mut chain) = (Series::new(), Series::new());
    let mut rows_checked = Vec::new();
    for i in 0..b.repeat() {
        tracing::info!(run = i + 1, of = b.repeat(), "8. incremental");
        match one_run(b, i, &mut full, &mut inc).await {
            Ok(backups) => match restores(b, i, &backups).await {
                Ok((alone_s, chain_s, rows)) => {
                    alone.push(alone_s);
                    chain.push(chain_s);
                    rows_checked.push(rows);
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    alone.fail(why.clone());
                    chain.fail(why);
                }
            },
            Err(e) => {
                let why = format!("{e:#}");
                for series in [&mut alone, &mut chain] {
                    series.fail(why.clone());
                }
            }
        }
        for name in ["full", "page_track", "full_scan", "chain2", "chain3"] {
            remove_dir(&b.work.join(format!("inc-{i}-{name}")));
        }
    }

    s.push(Metric::from_series(
        "full",
        "Full backup",
        Unit::Seconds,
        &full.0,
    ));
    s.push(Metric::from_series(
        "full_bytes",
        "Full backup: bytes held",
        Unit::Bytes,
        &full.1,
    ));
    for ((key, flag), (time, bytes)) in METHODS.iter().zip(&inc) {
        s.push(Metric::from_series(
            key,
            &format!("Incremental, --incremental={flag}"),
            Unit::Seconds,
            time,
        ));
        s.push(Metric::from_series(
            &format!("{key}_bytes"),
            &format!("Incremental, --incremental={flag}: bytes held"),
            Unit::Bytes,
            bytes,
        ));
    }
    s.push(Metric::from_series(
        "restore_full",
        "Restore of the full alone (apply-log + copy-back)",
        Unit::Seconds,
        &alone,
    ));
    s.push(Metric::from_series(
        "restore_chain",
        "Restore of full + 3 incrementals (apply-log + 3 × apply-incremental-backup + copy-back)",
        Unit::Seconds,
        &chain,
    ));
    for (key, flag) in METHODS {
        s.ratio(
            &format!("{key}_time_vs_full"),
            &format!("Incremental ({flag}) time ÷ full backup time (goal for page-track: ≤ 0.25)"),
            key,
            "full",
        );
        s.ratio(
            &format!("{key}_bytes_vs_full"),
            &format!(
                "Incremental ({flag}) bytes ÷ full backup bytes (goal for page-track: ≤ 0.10)"
            ),
            &format!("{key}_bytes"),
            "full_bytes",
        );
    }
    s.ratio(
        "chain_vs_full",
        "Chain restore ÷ full restore",
        "restore_chain",
        "restore_full",
    );
    s.note(format!(
        "Rows of sbtest.sbtest1 in each restored chain, checked (with a checksum of the rows the \
         changes touched) against the source at the last incremental: {rows_checked:?}. Bytes held: the original size of every file the backup \
         holds (its manifest); the full's includes its redo and binlog."
    ));
    Ok(s)
}

/// What one run leaves for the restores: the full and its chain of three
/// page-tracked incrementals.
struct Backups {
    full: PathBuf,
    chain: [PathBuf; 3],
    /// [`fingerprint`] of the source at the last incremental.
    fingerprint: (u64, u64),
}

async fn one_run(
    b: &Bench,
    i: u32,
    full_series: &mut (Series, Series),
    inc: &mut [(Series, Series)],
) -> Result<Backups> {
    let full = b.scratch(&format!("inc-{i}-full"));
    let run = backup(
        b,
        &format!("inc-{i}-full"),
        &full,
        &["--page-tracking".into()],
    )
    .await;
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            full_series.0.fail(format!("{e:#}"));
            full_series.1.fail(format!("{e:#}"));
            return Err(e);
        }
    };
    full_series.0.push(run);
    full_series.1.push(bytes_held(&full)? as f64);

    change_one_percent(b, 0).await?;
    let mut page_tracked = None;
    for ((key, flag), (time, bytes)) in METHODS.iter().zip(inc.iter_mut()) {
        let dir = b.scratch(&format!("inc-{i}-{key}"));
        let extra = [
            format!("--incremental={flag}"),
            format!("--incremental-basedir={}", full.display()),
        ];
        match backup(b, &format!("inc-{i}-{key}"), &dir, &extra).await {
            Ok(seconds) => {
                time.push(seconds);
                bytes.push(bytes_held(&dir)? as f64);
            }
            Err(e) => {
                time.fail(format!("{e:#}"));
                bytes.fail(format!("{e:#}"));
            }
        }
        if *key == "page_track" {
            page_tracked = Some(dir);
        }
    }
    let first = page_tracked
        .filter(|dir| dir.join("innoxide.json").is_file())
        .context("the page-tracked incremental failed, so no chain to restore")?;
    let mut chain = vec![first];
    for step in 2..=3 {
        change_one_percent(b, step - 1).await?;
        let dir = b.scratch(&format!("inc-{i}-chain{step}"));
        let base = chain.last().expect("one at least").clone();
        let extra = [
            "--incremental=page-track".to_string(),
            format!("--incremental-basedir={}", base.display()),
        ];
        backup(b, &format!("inc-{i}-chain{step}"), &dir, &extra).await?;
        chain.push(dir);
    }
    let fingerprint = fingerprint(&b.source, 3 * ids_per_change(b)).await?;
    Ok(Backups {
        full,
        chain: chain.try_into().expect("three incrementals"),
        fingerprint,
    })
}

/// Restores the full alone, then the chain, each into a new datadir; the
/// chain's restore is started and its rows checked. Returns both times and
/// the rows.
async fn restores(b: &Bench, i: u32, backups: &Backups) -> Result<(f64, f64, u64)> {
    let mysqld = b.mysqld();
    let apply = b
        .agent
        .apply_log(
            &b.runner,
            &format!("inc-{i}-apply-log"),
            &backups.full,
            &mysqld,
        )
        .await?
        .seconds();
    let alone_dir = b.scratch(&format!("inc-{i}-restored-full"));
    let copy_alone = b
        .agent
        .copy_back(
            &b.runner,
            &format!("inc-{i}-copy-back-full"),
            &backups.full,
            &alone_dir,
        )
        .await?
        .seconds();
    remove_dir(&alone_dir);
    let mut chain = apply;
    for (n, inc) in backups.chain.iter().enumerate() {
        chain += b
            .agent
            .apply_incremental(
                &b.runner,
                &format!("inc-{i}-apply-incremental-{}", n + 1),
                &backups.full,
                inc,
                &mysqld,
            )
            .await?
            .seconds();
    }
    let chain_dir = b.scratch(&format!("inc-{i}-restored-chain"));
    chain += b
        .agent
        .copy_back(
            &b.runner,
            &format!("inc-{i}-copy-back-chain"),
            &backups.full,
            &chain_dir,
        )
        .await?
        .seconds();
    let restored = b
        .server_builder()
        .server_id(2)
        .existing_datadir(&chain_dir)
        .start()
        .await
        .context("starting a server on the restored chain")?;
    let found = fingerprint(&restored, 3 * ids_per_change(b)).await?;
    drop(restored);
    remove_dir(&chain_dir);
    if found != backups.fingerprint {
        bail!(
            "the restored chain holds (rows, checksum of the changed rows) {found:?} in sbtest.sbtest1, \
             the source had {:?}",
            backups.fingerprint
        );
    }
    Ok((apply + copy_alone, chain, found.0))
}

/// Rows of sbtest.sbtest1, and a checksum of the rows the three changes
/// touch (the first `changed_ids` ids).
async fn fingerprint(
    server: &innoxide_testkit::MysqlServer,
    changed_ids: u64,
) -> Result<(u64, u64)> {
    let rows = super::rows_of_first_table(server).await?;
    let changed: u64 = server
        .query_scalar(&format!(
            "SELECT CAST(COALESCE(SUM(CRC32(CONCAT(id, ':', c))), 0) AS UNSIGNED) \
             FROM sbtest.sbtest1 WHERE id <= {changed_ids}"
        ))
        .await?;
    Ok((rows, changed))
}

/// A backup into `dir` with `extra` options; its wall time.
async fn backup(b: &Bench, label: &str, dir: &Path, extra: &[String]) -> Result<f64> {
    let target = BackupTarget {
        location: dir.display().to_string(),
        extra: extra.to_vec(),
        ..Default::default()
    };
    Ok(b.agent
        .backup(&b.runner, label, b.source.socket(), &target)
        .await?
        .seconds())
}

/// The original bytes of every file the backup holds.
fn bytes_held(dir: &Path) -> Result<u64> {
    manifest_facts(dir)?
        .original_bytes
        .with_context(|| format!("{}: the manifest lists no file sizes", dir.display()))
}

/// Ids of one change: 1% of a table's rows.
fn ids_per_change(b: &Bench) -> u64 {
    (b.plan.rows_per_table / 100).max(1)
}

/// Gives 1% of each sysbench table's rows (the `step`-th contiguous 1% of
/// ids) a new `c` (not indexed, same length: the change stays in those
/// rows' pages), then waits until the server has flushed it and its
/// checkpoint has passed it, as an incremental taken hours later finds it.
/// The new value is a letter repeated, always another letter than the
/// row's `c` starts with (`97 + (x + 1) % 26` is never `x`): every run of
/// the scenario changes the same ids again, and an UPDATE that wrote back
/// the same value would change no page at all.
async fn change_one_percent(b: &Bench, step: u64) -> Result<()> {
    let per_change = ids_per_change(b);
    let (from, to) = (step * per_change + 1, (step + 1) * per_change);
    for table in 1..=b.plan.tables {
        let changed = b
            .source
            .exec_affected(&format!(
                "UPDATE sbtest.sbtest{table} SET c = REPEAT(CHAR(97 + (ASCII(c) + 1) % 26), 120) \
                 WHERE id BETWEEN {from} AND {to}"
            ))
            .await?;
        if changed != to - from + 1 {
            bail!(
                "the 1% change of sbtest{table} changed {changed} rows of ids {from}..={to}, not all"
            );
        }
    }
    settle(&b.source).await?;
    b.source.checkpoint_passes_now().await
}
