//! The command line: the seed tools' verbs and options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::backup::{self, BackupOptions, Progress};
use crate::mycnf::OptionFile;
use crate::mysql::ConnectOptions;
use crate::secret::Secret;

#[derive(Parser, Debug)]
#[command(name = "innoxide-agent", version, about = "Hot physical backup and restore of MySQL/InnoDB")]
pub struct Cli {
    /// Log as JSON lines (the default when stderr is not a terminal).
    #[arg(long, global = true, env = "INNOXIDE_LOG_JSON")]
    log_json: Option<bool>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a hot full backup of a running server.
    Backup(BackupArgs),
    /// Prepare a raw backup: apply its redo log with the server's own mysqld.
    ApplyLog(ApplyLogArgs),
    /// Apply an incremental backup onto a prepared full backup.
    ApplyIncrementalBackup(BackupDirArg),
    /// Copy a prepared backup into an empty datadir.
    CopyBack(CopyBackArgs),
    /// Like copy-back, but moves the files (the backup is consumed).
    MoveBack(CopyBackArgs),
    /// Prepare a raw backup and copy it into an empty datadir in one step.
    CopyBackAndApplyLog(CopyBackAndApplyLogArgs),
    /// Take a backup and prepare it in one step.
    BackupAndApplyLog(BackupAndApplyLogArgs),
    /// Check every file of a backup against its manifest.
    Verify(BackupDirArg),
    /// List the backups under a folder.
    List(ListArgs),
    /// Run the gRPC agent next to mysqld.
    Serve,
}

#[derive(Args, Debug, Clone)]
struct ConnectArgs {
    /// Read connection options from this file's [client]/[xtrabackup] sections.
    #[arg(long)]
    defaults_file: Option<PathBuf>,
    #[arg(long, short = 'u', env = "MYSQL_USER")]
    user: Option<String>,
    /// Prefer MYSQL_PWD or --defaults-file: a flag is visible in `ps`.
    #[arg(long, short = 'p', env = "MYSQL_PWD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long, short = 'H')]
    host: Option<String>,
    #[arg(long, short = 'P')]
    port: Option<u16>,
    #[arg(long, short = 'S')]
    socket: Option<PathBuf>,
}

impl ConnectArgs {
    fn resolve(&self) -> anyhow::Result<ConnectOptions> {
        let mut options = ConnectOptions {
            host: self.host.clone(),
            port: self.port,
            socket: self.socket.clone(),
            user: self.user.clone(),
            password: self.password.clone().map(Secret::new),
        };
        if let Some(path) = &self.defaults_file {
            options.fill_from(&OptionFile::load(path)?);
        }
        Ok(options)
    }
}

#[derive(Args, Debug, Clone)]
struct BackupArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Folder that receives a timestamped backup directory (innobackupex's BACKUP-ROOT-DIR).
    #[arg(value_name = "BACKUP-ROOT", conflicts_with = "backup_dir")]
    root: Option<PathBuf>,
    /// Same as BACKUP-ROOT (`--target-dir` is accepted too).
    #[arg(long, alias = "target-dir")]
    backup_dir: Option<PathBuf>,
    /// Write into the given folder itself instead of a timestamped subfolder.
    #[arg(long)]
    no_timestamp: bool,
    /// Files copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    /// Limit reads of data files, in bytes per second (suffixes K, M, G).
    #[arg(long, value_parser = parse_size)]
    throttle: Option<u64>,
    /// Record how to make a restore a replica of this server's source.
    #[arg(long)]
    slave_info: bool,
    /// Tail the redo files without registering the server's redo log consumer.
    #[arg(long)]
    no_redo_consumer: bool,
    /// Compress stored files with zstd.
    #[arg(long)]
    compress: bool,
    /// Encrypt stored files with the AES-256 key in this file.
    #[arg(long)]
    encrypt_key_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct BackupDirArg {
    /// The backup directory.
    #[arg(long, alias = "target-dir", value_name = "DIR")]
    backup_dir: PathBuf,
    /// The incremental backup directory (apply-incremental-backup).
    #[arg(long)]
    incremental_backup_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct ApplyLogArgs {
    #[arg(long, alias = "target-dir", value_name = "DIR")]
    backup_dir: PathBuf,
    /// The mysqld to recover with: must be the source's exact version (default: from PATH).
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    mysqld: Option<PathBuf>,
    /// Overwrite what an earlier, failed apply-log left behind.
    #[arg(long)]
    force: bool,
    /// Decompress a compressed backup first.
    #[arg(long)]
    uncompress: bool,
    /// Buffer pool for the recovery, bytes (suffixes K, M, G).
    #[arg(long, value_parser = parse_size, default_value = "256M")]
    use_memory: u64,
}

#[derive(Args, Debug, Clone)]
struct CopyBackArgs {
    #[arg(long, alias = "target-dir", value_name = "DIR")]
    backup_dir: PathBuf,
    /// The (empty) datadir to restore into.
    #[arg(long)]
    datadir: PathBuf,
    /// Restore into a datadir that is not empty.
    #[arg(long, alias = "force-non-empty-directories")]
    force: bool,
    /// Drop auto.cnf so the restored server gets a new server UUID (a clone, not an in-place restore).
    #[arg(long)]
    new_server_uuid: bool,
}

#[derive(Args, Debug, Clone)]
struct CopyBackAndApplyLogArgs {
    #[command(flatten)]
    copy_back: CopyBackArgs,
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    mysqld: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct BackupAndApplyLogArgs {
    #[command(flatten)]
    backup: BackupArgs,
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    mysqld: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct ListArgs {
    /// The folder holding backups.
    #[arg(value_name = "BACKUP-ROOT")]
    root: PathBuf,
}

/// Parses `1048576`, `512K`, `100M`, `2G`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 1048576, 512K, 100M or 2G"))?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}: use K, M or G")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("innoxide-agent: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "failed");
            eprintln!("innoxide-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Backup(args) => {
            backup_command(&args).await?;
        }
        Command::BackupAndApplyLog(args) => {
            let dir = backup_command(&args.backup).await?;
            apply_log_command(&ApplyLogArgs {
                backup_dir: dir,
                mysqld: args.mysqld,
                force: false,
                uncompress: false,
                use_memory: 256 << 20,
            })
            .await?;
        }
        Command::ApplyLog(args) => apply_log_command(&args).await?,
        Command::CopyBack(args) => copy_back_command(&args, false).await?,
        Command::MoveBack(args) => copy_back_command(&args, true).await?,
        Command::CopyBackAndApplyLog(args) => {
            crate::restore::copy_back_and_apply_log(&restore_options(&args.copy_back, false), args.mysqld)
                .await?;
            eprintln!("completed OK!");
        }
        Command::Verify(args) => {
            let report = crate::verify::verify_dir(&args.backup_dir)?;
            println!("{report}");
            eprintln!("completed OK!");
        }
        Command::List(args) => {
            for line in crate::verify::list(&args.root)? {
                println!("{line}");
            }
        }
        Command::ApplyIncrementalBackup(_) => anyhow::bail!(
            "incremental backups are not built yet: this version takes and restores full backups only"
        ),
        Command::Serve => anyhow::bail!(
            "`serve` (the gRPC agent) is not built yet: use the backup, apply-log and copy-back commands"
        ),
    }
    Ok(())
}

async fn backup_command(args: &BackupArgs) -> anyhow::Result<PathBuf> {
    if args.compress || args.encrypt_key_file.is_some() {
        anyhow::bail!(
            "--compress and --encrypt-key-file are not built yet: this version writes uncompressed, \
             unencrypted backups; leave those options out"
        );
    }
    let root = args
        .root
        .clone()
        .or_else(|| args.backup_dir.clone())
        .ok_or_else(|| anyhow::anyhow!("say where the backup goes: BACKUP-ROOT or --backup-dir"))?;
    let options = BackupOptions {
        connect: args.connect.resolve()?,
        root,
        timestamped: !args.no_timestamp,
        parallel: args.parallel.into(),
        throttle: args.throttle,
        slave_info: args.slave_info,
        redo_consumer: !args.no_redo_consumer,
    };
    let progress = Progress::new();
    let cancel = cancel_on_signals();
    let reporter = tokio::spawn(report_progress(progress.clone()));
    let result = backup::run(&options, progress, cancel).await;
    reporter.abort();
    let report = result?;
    tracing::info!(
        dir = %report.dir.display(),
        last_lsn = report.manifest.redo.last_lsn,
        binlog = %report.manifest.binlog_file,
        position = report.manifest.binlog_position,
        gtid = %report.manifest.gtid_executed,
        "backup complete"
    );
    println!("{}", report.dir.display());
    eprintln!("completed OK!");
    Ok(report.dir)
}

async fn apply_log_command(args: &ApplyLogArgs) -> anyhow::Result<()> {
    if args.uncompress {
        anyhow::bail!("--uncompress: compressed backups are not built yet, so there is nothing to uncompress");
    }
    let options = crate::prepare::ApplyLogOptions {
        backup_dir: args.backup_dir.clone(),
        mysqld: args.mysqld.clone(),
        force: args.force,
        buffer_pool: args.use_memory,
    };
    crate::prepare::apply_log(&options, cancel_on_signals()).await?;
    eprintln!("completed OK!");
    Ok(())
}

fn restore_options(args: &CopyBackArgs, move_files: bool) -> crate::restore::CopyBackOptions {
    crate::restore::CopyBackOptions {
        backup_dir: args.backup_dir.clone(),
        datadir: args.datadir.clone(),
        force_non_empty: args.force,
        new_server_uuid: args.new_server_uuid,
        move_files,
    }
}

async fn copy_back_command(args: &CopyBackArgs, move_files: bool) -> anyhow::Result<()> {
    crate::restore::copy_back(&restore_options(args, move_files)).await?;
    eprintln!("completed OK!");
    Ok(())
}

/// SIGINT and SIGTERM cancel the running operation, which then releases
/// what it holds on the server and cleans up before the process exits.
fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM: cancelling"),
            _ = int.recv() => tracing::warn!("SIGINT: cancelling"),
        }
        cancel.cancel();
    });
    token
}

async fn report_progress(progress: Arc<Progress>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let s = progress.snapshot();
        tracing::info!(
            phase = ?s.phase,
            bytes_done = s.bytes_done,
            bytes_total = s.bytes_total,
            files_done = s.files_done,
            files_total = s.files_total,
            redo_copied_lsn = s.redo_copied_lsn,
            "progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_usual_suffixes() {
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn backup_takes_the_seed_options() {
        let cli = Cli::try_parse_from([
            "innoxide-agent", "backup", "--user=root", "--socket=/tmp/s", "--no-timestamp",
            "--parallel=8", "--throttle=10M", "/backups",
        ])
        .unwrap();
        let Command::Backup(args) = cli.command else { panic!("not backup") };
        assert_eq!(args.parallel, 8);
        assert_eq!(args.throttle, Some(10 << 20));
        assert_eq!(args.root.as_deref(), Some(std::path::Path::new("/backups")));
    }

    #[test]
    fn a_wrong_flag_is_refused() {
        let err = Cli::try_parse_from(["innoxide-agent", "backup", "--paralel=2", "/b"]).unwrap_err();
        assert!(err.to_string().contains("--paralel"), "{err}");
    }
}
