//! Scenario 4: restore. Physical: `copy-back` of the backup apply-log
//! prepared into an empty datadir, then a 9.7 server started on it until it
//! accepts connections. Logical, the same data: a mydumper dump reloaded
//! with myloader, and a mysqldump dump reloaded with the 9.7 `mysql` client,
//! each into a freshly initialized, running server (its initialization is
//! not counted, which favours the logical side).

use std::time::Instant;

use anyhow::{Context, Result};
use innoxide_testkit::MysqlServer;

use super::{Bench, rows_of_first_table};
use crate::child::{Cmd, remove_dir};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "restore",
        "4. Restore: copy-back + server start vs logical reload",
        "Physical: `innoxide-agent copy-back --parallel` (the backups' `--parallel`: files and 64 MiB \
         ranges of large files copied at once) of a prepared backup into an empty datadir, plus the start \
         of a 9.7 server on it until it accepts connections. Logical: the same data dumped once with \
         mydumper and with the 9.7 mysqldump (`--single-transaction`), each reloaded (myloader; `mysql < \
         dump.sql`) into a fresh, already running 9.7 server with the same settings.",
    );
    physical(b, &mut s).await;
    logical(b, &mut s).await?;
    s.ratio(
        "vs_myloader",
        "Restore ÷ myloader reload",
        "restore",
        "myloader",
    );
    s.ratio(
        "vs_mysqldump",
        "Restore ÷ mysqldump reload",
        "restore",
        "mysqldump",
    );
    Ok(s)
}

async fn physical(b: &mut Bench, s: &mut Scenario) {
    let (mut total, mut copy, mut start) = (Series::new(), Series::new(), Series::new());
    let mut checks = Vec::new();
    match b.kept.prepared.clone() {
        None => total.fail("no backup to restore (scenarios 2 and 3 did not run or failed)"),
        Some(backup) => {
            for i in 0..b.repeat() {
                tracing::info!(run = i + 1, of = b.repeat(), "4. copy-back + start");
                match restore_once(b, &backup, i).await {
                    Ok((copy_s, start_s, rows)) => {
                        copy.push(copy_s);
                        start.push(start_s);
                        total.push(copy_s + start_s);
                        checks.push(rows);
                    }
                    Err(e) => {
                        let mut why = format!("{e:#}");
                        if let Some(apply) = &b.kept.apply_log_error {
                            why = format!(
                                "{why} (the backup is not prepared: apply-log failed: {apply})"
                            );
                        }
                        total.fail(why);
                    }
                }
            }
            remove_dir(&backup);
        }
    }
    s.push(Metric::from_series(
        "restore",
        "Innoxide copy-back + server start",
        Unit::Seconds,
        &total,
    ));
    s.push(Metric::from_series(
        "copy_back",
        "  of which copy-back",
        Unit::Seconds,
        &copy,
    ));
    s.push(Metric::from_series(
        "start",
        "  of which server start",
        Unit::Seconds,
        &start,
    ));
    if let Some(rows) = checks.first() {
        s.note(format!(
            "Check: the restored server has {rows} rows in sbtest.sbtest1 ({} were loaded).",
            b.plan.rows_per_table
        ));
    }
}

/// One copy-back and start: (copy-back seconds, start seconds, rows in sbtest1).
async fn restore_once(b: &mut Bench, backup: &std::path::Path, i: u32) -> Result<(f64, f64, u64)> {
    let datadir = b.scratch(&format!("restore-{i}"));
    std::fs::create_dir_all(&datadir)?;
    let result = async {
        let run = b
            .agent
            .copy_back(&b.runner, &format!("copy-back-{i}"), backup, &datadir)
            .await?;
        let started = Instant::now();
        let mut server = b
            .server_builder()
            .existing_datadir(&datadir)
            .start()
            .await
            .context("starting a server on the restored datadir")?;
        let start_s = started.elapsed().as_secs_f64();
        let rows = rows_of_first_table(&server).await?;
        server.stop().await?;
        b.kept.copy_back_runs.push(run.clone());
        anyhow::Ok((run.seconds(), start_s, rows))
    }
    .await;
    remove_dir(&datadir);
    result
}

async fn logical(b: &mut Bench, s: &mut Scenario) -> Result<()> {
    let (mut myloader, mut mysqldump) = (Series::new(), Series::new());
    let (mut dump_mydumper, mut dump_mysqldump) = (Series::new(), Series::new());

    tracing::info!("4. mydumper and mysqldump dumps");
    let dump_dir = b.scratch("mydumper");
    let dumped = b
        .runner
        .run(
            "mydumper",
            &Cmd::new("mydumper")
                .arg(format!("--socket={}", b.source.socket().display()))
                .args([
                    "--user=root",
                    "--database=sbtest",
                    "--threads=2",
                    "--trx-consistency-only",
                ])
                .arg(format!("--outputdir={}", dump_dir.display())),
        )
        .await;
    dump_mydumper.record(
        dumped
            .as_ref()
            .map(|r| r.seconds())
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    );
    let dump_file = b.work.join("mysqldump.sql");
    let dumped_sql = b
        .runner
        .run(
            "mysqldump",
            &Cmd::new(b.source.bin("mysqldump"))
                .arg(format!(
                    "--defaults-file={}",
                    b.source.defaults_file().display()
                ))
                .args([
                    "--single-transaction",
                    "--set-gtid-purged=OFF",
                    "--databases",
                    "sbtest",
                ])
                .arg(format!("--result-file={}", dump_file.display())),
        )
        .await;
    dump_mysqldump.record(
        dumped_sql
            .as_ref()
            .map(|r| r.seconds())
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    );

    for i in 0..b.opts.logical_repeat.max(1) {
        match &dumped {
            Ok(_) => {
                tracing::info!(run = i + 1, "4. myloader reload");
                let result = reload(b, &format!("myloader-{i}"), |server| {
                    Cmd::new("myloader")
                        .arg(format!("--socket={}", server.socket().display()))
                        .args(["--user=root", "--threads=2", "--overwrite-tables"])
                        .arg(format!("--directory={}", dump_dir.display()))
                })
                .await;
                myloader.record(result);
            }
            Err(e) => myloader.fail(format!("mydumper: {e:#}")),
        }
        match &dumped_sql {
            Ok(_) => {
                tracing::info!(run = i + 1, "4. mysqldump reload");
                let result = reload(b, &format!("mysqldump-reload-{i}"), |server| {
                    Cmd::new(server.bin("mysql"))
                        .arg(format!(
                            "--defaults-file={}",
                            server.defaults_file().display()
                        ))
                        .stdin_file(&dump_file)
                })
                .await;
                mysqldump.record(result);
            }
            Err(e) => mysqldump.fail(format!("mysqldump: {e:#}")),
        }
    }
    remove_dir(&dump_dir);
    let _ = std::fs::remove_file(&dump_file);

    s.push(
        Metric::from_series(
            "myloader",
            "myloader reload (mydumper dump)",
            Unit::Seconds,
            &myloader,
        )
        .anchor(),
    );
    s.push(
        Metric::from_series(
            "mysqldump",
            "mysql < mysqldump dump",
            Unit::Seconds,
            &mysqldump,
        )
        .anchor(),
    );
    s.push(
        Metric::from_series(
            "dump_mydumper",
            "mydumper dump (not in the ratios)",
            Unit::Seconds,
            &dump_mydumper,
        )
        .anchor(),
    );
    s.push(
        Metric::from_series(
            "dump_mysqldump",
            "mysqldump dump (not in the ratios)",
            Unit::Seconds,
            &dump_mysqldump,
        )
        .anchor(),
    );
    if b.opts.logical_repeat < b.opts.repeat {
        s.note(format!(
            "Logical reloads ran {} time(s) each (`--logical-repeat`), not {}: they take minutes at full size. \
             The ratios pair the first runs.",
            b.opts.logical_repeat.max(1),
            b.opts.repeat
        ));
    }
    s.note("Both reload targets write a binlog, as the source does (the 9.7 default); a physical restore writes none.");
    Ok(())
}

/// Starts a fresh server, times `command(server)` against it, checks the
/// rows arrived, and throws the server away.
async fn reload(b: &Bench, label: &str, command: impl Fn(&MysqlServer) -> Cmd) -> Result<f64> {
    let mut server = b.server_builder().start().await?;
    let run = b.runner.run(label, &command(&server)).await?;
    let rows = rows_of_first_table(&server).await?;
    server.stop().await?;
    anyhow::ensure!(
        rows == b.plan.rows_per_table,
        "reloaded sbtest.sbtest1 has {rows} rows, expected {}",
        b.plan.rows_per_table
    );
    Ok(run.seconds())
}
