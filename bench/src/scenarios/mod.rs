//! The scenarios of `make bench`, one module each, and what they share: the
//! source MySQL 9.7 server with the sysbench dataset, the agent, the measured
//! runner, and what one scenario leaves for the next (the backups taken under
//! load are the ones apply-log prepares and copy-back restores).

pub mod apply_log;
pub mod archive_lag;
pub mod idle_backup;
pub mod incremental;
pub mod peer;
pub mod replay;
pub mod restore;
pub mod rss;
pub mod throughput;
pub mod under_load;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use innoxide_testkit::{MysqlBuilder, MysqlServer, Sysbench, Workload};

use crate::agent::Agent;
use crate::child::{Cmd, Run, Runner, dir_bytes};
use crate::plan::DatasetPlan;
use crate::results::Dataset;

/// Knobs of a run (the command line, minus where things go).
#[derive(Debug, Clone)]
pub struct Options {
    pub repeat: u32,
    /// Runs of each logical reload (mysqldump, myloader): minutes each at full size.
    pub logical_repeat: u32,
    /// sysbench threads of the write load.
    pub load_threads: u32,
    /// `innodb_buffer_pool_size` of every server, bytes.
    pub buffer_pool: u64,
    /// `innodb_redo_log_capacity` (MySQL) / `innodb_log_file_size` (MariaDB).
    pub redo_capacity: u64,
    /// The peak-RSS scenario's second dataset is the main one divided by this.
    pub rss_divisor: u64,
    /// sysbench workload of the write load.
    pub workload: Workload,
    /// `--throttle` of the second series of backups under load.
    pub load_throttle: String,
    /// An older agent whose apply-log scenario 3 runs in turns with ours.
    pub baseline_agent: Option<PathBuf>,
    /// Seconds of write load during each of scenario 3's heavy-redo
    /// backups (0: none).
    pub heavy_redo_seconds: u64,
}

impl Options {
    pub fn workload_script(&self) -> &'static str {
        match self.workload {
            Workload::ReadWrite => "oltp_read_write",
            Workload::WriteOnly => "oltp_write_only",
            Workload::ReadOnly => "oltp_read_only",
        }
    }
}

/// What the scenarios share.
pub struct Bench {
    pub opts: Options,
    pub plan: DatasetPlan,
    pub runner: Runner,
    pub agent: Agent,
    /// Scratch space for backups, clones and copies (removed at the end).
    pub work: PathBuf,
    pub source: MysqlServer,
    pub sysbench: Sysbench,
    pub dataset: Dataset,
    pub kept: Kept,
}

/// What earlier scenarios leave for later ones.
#[derive(Debug, Default)]
pub struct Kept {
    /// The idle full backups of scenario 1 (time, CPU, peak RSS).
    pub idle_runs: Vec<Run>,
    /// Bytes of the files an idle backup holds (the throughput numerator).
    pub idle_backup_bytes: Option<u64>,
    /// Backups taken under load (scenario 2), for apply-log.
    pub load_backups: Vec<PathBuf>,
    /// A backup apply-log prepared, for copy-back.
    pub prepared: Option<PathBuf>,
    /// The first apply-log failure, to explain a restore that cannot run.
    pub apply_log_error: Option<String>,
    pub apply_runs: Vec<Run>,
    pub copy_back_runs: Vec<Run>,
}

impl Bench {
    /// Starts the source server, loads the dataset and lets it settle.
    pub async fn setup(
        opts: Options,
        plan: DatasetPlan,
        runner: Runner,
        agent: Agent,
        work: PathBuf,
    ) -> Result<Self> {
        let source = server_builder(&opts)
            .start()
            .await
            .context("starting the source MySQL 9.7")?;
        tracing::info!(
            tables = plan.tables,
            rows_per_table = plan.rows_per_table,
            "sysbench prepare ({} wanted)",
            plan.label
        );
        let (sysbench, prepare_seconds) = load_dataset(&source, &plan, &opts).await?;
        let dataset = Dataset {
            plan: plan.clone(),
            sysbench_bytes: dir_bytes(&source.datadir().join("sbtest")),
            datadir_bytes: dir_bytes(source.datadir()),
            prepare_seconds,
        };
        tracing::info!(
            sysbench_mib = dataset.sysbench_bytes >> 20,
            datadir_mib = dataset.datadir_bytes >> 20,
            prepare_seconds,
            "dataset ready"
        );
        Ok(Self {
            opts,
            plan,
            runner,
            agent,
            work,
            source,
            sysbench,
            dataset,
            kept: Kept::default(),
        })
    }

    /// A fresh folder path under the work folder (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.work.join(name);
        crate::child::remove_dir(&path);
        path
    }

    /// The 9.7 mysqld wrapper, for apply-log's recovery.
    pub fn mysqld(&self) -> PathBuf {
        self.source.bin("mysqld")
    }

    pub fn server_builder(&self) -> MysqlBuilder {
        server_builder(&self.opts)
    }

    pub fn repeat(&self) -> u32 {
        self.opts.repeat.max(1)
    }
}

/// Every 9.7 server of the bench: source, restore targets, logical reload targets.
pub fn server_builder(opts: &Options) -> MysqlBuilder {
    MysqlServer::builder()
        .buffer_pool(opts.buffer_pool)
        .redo_capacity(opts.redo_capacity)
}

/// `sysbench prepare`, then binlogs purged (the load's binlog would otherwise
/// be most of what `cp -a` copies) and dirty pages flushed, so "idle" is idle.
pub async fn load_dataset(
    server: &MysqlServer,
    plan: &DatasetPlan,
    opts: &Options,
) -> Result<(Sysbench, f64)> {
    let started = Instant::now();
    let sysbench = Sysbench::prepare(server, plan.tables, plan.rows_per_table)
        .await?
        .workload(opts.workload);
    let seconds = started.elapsed().as_secs_f64();
    server.exec("FLUSH BINARY LOGS").await?;
    let current: String = server.query_scalar("SHOW BINARY LOG STATUS").await?;
    server
        .exec(&format!("PURGE BINARY LOGS TO '{current}'"))
        .await?;
    settle(server).await?;
    Ok((sysbench, seconds))
}

/// Waits until InnoDB has flushed every dirty page (at most 5 minutes).
pub async fn settle(server: &MysqlServer) -> Result<()> {
    server
        .exec("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let dirty: u64 = server
            .query_scalar(
                "SELECT VARIABLE_VALUE FROM performance_schema.global_status \
                 WHERE VARIABLE_NAME = 'Innodb_buffer_pool_pages_dirty'",
            )
            .await?;
        if dirty == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server
        .exec("SET GLOBAL innodb_max_dirty_pages_pct = DEFAULT")
        .await
}

/// `cp -a SRC DST`, then an fsync of every copied file (the backup tools
/// fsync what they write; a copy left in the page cache is not done).
pub fn cp_a(src: &Path, dst: &Path) -> Cmd {
    Cmd::new("sh").args([
        "-c".as_ref(),
        r#"cp -a "$1" "$2" && find "$2" -type f -exec sync -- {} +"#.as_ref(),
        "cp-a".as_ref(),
        src.as_os_str(),
        dst.as_os_str(),
    ])
}

/// Rows of `sbtest.sbtest1`: the check that a restore or reload holds the data.
pub async fn rows_of_first_table(server: &MysqlServer) -> Result<u64> {
    server
        .query_scalar("SELECT COUNT(*) FROM sbtest.sbtest1")
        .await
}

/// The TPS windows are whole seconds of sysbench's per-second reports: a
/// window shorter than this would have none.
pub const MIN_LOAD_WINDOW: Duration = Duration::from_secs(2);

/// A sysbench run of 24 h: the bench stops it when its window ends.
pub const OPEN_ENDED: Duration = Duration::from_secs(24 * 3600);
