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
#[command(
    name = "innoxide-agent",
    version,
    about = "Hot physical backup and restore of MySQL/InnoDB"
)]
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
    /// Apply an incremental backup onto a full backup prepared by apply-log
    /// (one incremental at a time, in order).
    ApplyIncrementalBackup(ApplyIncrementalArgs),
    /// Copy a prepared backup into an empty datadir.
    CopyBack(CopyBackArgs),
    /// Like copy-back, but moves the files (the backup is consumed).
    MoveBack(CopyBackArgs),
    /// Prepare a raw backup and copy it into an empty datadir in one step.
    CopyBackAndApplyLog(CopyBackAndApplyLogArgs),
    /// Take a backup and prepare it in one step.
    BackupAndApplyLog(BackupAndApplyLogArgs),
    /// Check every file of a backup against its manifest (stored and original checksums).
    Verify(VerifyArgs),
    /// List the backups in a repository.
    List(ListArgs),
    /// Delete one backup from a repository.
    Delete(DeleteArgs),
    /// Apply retention: delete backups beyond --keep-last / older than --keep-within, and orphans.
    Prune(PruneArgs),
    /// Copy the server's binary logs into an archive (a folder or repository
    /// URL), following the active one, for point-in-time recovery; with
    /// --until-current up to the server's position now, then exit.
    ArchiveBinlogs(ArchiveBinlogsArgs),
    /// Run the gRPC agent next to mysqld.
    Serve(ServeArgs),
    /// Before mysqld starts (the pod's init container): finish or run an armed
    /// datadir swap, --revert one, or restore into an empty volume (--restore-spec).
    /// Exits 0 when done or when there is nothing to do, 3 when refused (nothing touched).
    Init(crate::swap::init::InitArgs),
    /// Copy this executable into DIR (the operator's init container puts the
    /// agent into a volume the MySQL container's image runs it from).
    Install {
        /// The folder to put `innoxide-agent` in.
        dir: PathBuf,
    },
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

/// Where object stores are and how to sign in; the standard AWS_*,
/// GOOGLE_* and AZURE_* environment variables work too.
#[derive(Args, Debug, Clone, Default)]
struct RepoArgs {
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION")]
    s3_region: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    s3_access_key_id: Option<String>,
    /// Prefer the environment variable: a flag is visible in `ps`.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Put the bucket in the host name (AWS style) instead of the path.
    #[arg(long)]
    s3_virtual_hosted: bool,
    /// az://: the account's Blob endpoint, for Azure Stack, sovereign clouds
    /// or Azurite (default: https://<account>.blob.core.windows.net).
    #[arg(long)]
    azure_endpoint: Option<String>,
}

impl RepoArgs {
    fn options(&self) -> crate::repo::RepoOptions {
        crate::repo::RepoOptions {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_access_key_id: self.s3_access_key_id.clone(),
            s3_secret_access_key: self.s3_secret_access_key.clone().map(Secret::new),
            s3_virtual_hosted: self.s3_virtual_hosted,
            azure_endpoint: self.azure_endpoint.clone(),
            // gs:// and az:// sign in from GOOGLE_* / AZURE_* variables.
            ..Default::default()
        }
    }
}

fn read_key(path: Option<&PathBuf>) -> anyhow::Result<Option<crate::repo::Key>> {
    let Some(path) = path else { return Ok(None) };
    let contents = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the key file {}: {e}", path.display()))?;
    crate::repo::Key::from_file_contents(&contents)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[derive(Args, Debug, Clone)]
struct BackupArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    repo: RepoArgs,
    /// Where backups go: a folder (innobackupex's BACKUP-ROOT-DIR) or a repository URL
    /// (s3://bucket/prefix, gs://…, az://…); each backup gets a timestamped folder in it.
    #[arg(value_name = "BACKUP-ROOT", conflicts_with = "backup_dir")]
    root: Option<String>,
    /// Same as BACKUP-ROOT (`--target-dir` is accepted too).
    #[arg(long, alias = "target-dir")]
    backup_dir: Option<String>,
    /// Write into the given folder itself instead of a timestamped subfolder.
    #[arg(long)]
    no_timestamp: bool,
    /// Files copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    /// Limit reads of data files, in bytes per second (suffixes K, M, G): a
    /// fixed cap, which adaptive pacing stays under.
    #[arg(long, value_parser = parse_size)]
    throttle: Option<u64>,
    /// `adaptive`: slow the copy while the server's writes (INSERT, UPDATE,
    /// DELETE, COMMIT; from performance_schema) are slower than before the
    /// backup; full speed on an idle server, and for a copy of at most
    /// 32 MiB (an incremental of a few changed pages). `off`: copy at full
    /// speed (or --throttle).
    #[arg(long, value_enum, default_value_t = Pacing::Adaptive)]
    pacing: Pacing,
    /// Record how to make a restore a replica of this server's source.
    #[arg(long)]
    slave_info: bool,
    /// Tail the redo files without registering the server's redo log consumer.
    #[arg(long)]
    no_redo_consumer: bool,
    /// Longest wait for LOCK INSTANCE FOR BACKUP, in seconds (it waits only
    /// for running DDL; DML never waits on it).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    backup_lock_timeout: u64,
    /// `on`: hold LOCK INSTANCE FOR BACKUP during the whole copy (DDL waits).
    /// `reduced`: take it only at the end, briefly; index builds during the
    /// copy are re-copied, file creates/renames/drops refuse the backup.
    #[arg(long, value_name = "MODE", default_value = "on", ignore_case = true,
          value_parser = ["on", "reduced"])]
    lock_ddl: String,
    /// Longest wait for the read lock on non-InnoDB tables, in seconds
    /// (writes to those tables queue while it waits).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    lock_wait_timeout: u64,
    /// How long to wait for writes to non-InnoDB tables to finish before
    /// read-locking them, in seconds; nothing is held meanwhile.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    ftwrl_wait_timeout: u64,
    /// End (KILL QUERY) writes to non-InnoDB tables still running after this
    /// many seconds of that wait; 0 ends nothing.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    kill_long_queries_timeout: u64,
    /// Compress stored files with zstd.
    #[arg(long)]
    compress: bool,
    /// zstd level (1 fastest … 19 smallest).
    #[arg(long, default_value_t = crate::repo::chunk::DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    compress_level: i32,
    /// Encrypt stored files (AES-256-GCM) with the 256-bit key in this file
    /// (32 raw bytes, 64 hex characters or base64).
    #[arg(long)]
    encrypt_key_file: Option<PathBuf>,
    /// Where captured redo is spooled for compressed, encrypted or remote backups.
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Take an incremental backup: the pages changed since the base. Alone
    /// (innobackupex) or with a method, as mysqlbackup's
    /// --incremental=full-scan|page-track. Default: the server's page
    /// tracking when it runs and covers the base, else a full scan.
    #[arg(long, value_name = "METHOD", num_args = 0..=1, default_missing_value = "auto")]
    incremental: Option<String>,
    /// The incremental's base: the previous backup of the chain, full or
    /// incremental (a folder or a repository URL).
    #[arg(long, value_name = "BASE", conflicts_with = "incremental_base")]
    incremental_basedir: Option<String>,
    /// mysqlbackup's spelling of the base: dir:BASE.
    #[arg(long, value_name = "dir:BASE")]
    incremental_base: Option<String>,
    /// Start the server's page tracking (installing component_mysqlbackup
    /// if needed: INSERT on mysql.component; tracking needs BACKUP_ADMIN)
    /// before the copy, so the incrementals after this backup read only the
    /// pages the server lists instead of every page (reading the list needs
    /// SYSTEM_VARIABLES_ADMIN too). It keeps running.
    #[arg(long)]
    page_tracking: bool,
}

impl BackupArgs {
    /// The incremental options, when a base or --incremental is given.
    fn incremental(&self) -> anyhow::Result<Option<backup::IncrementalOptions>> {
        let base = match (&self.incremental_basedir, &self.incremental_base) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(spec)) => match spec.split_once(':') {
                Some(("dir", dir)) if !dir.is_empty() => Some(dir.to_owned()),
                _ => anyhow::bail!(
                    "--incremental-base={spec}: only dir:BASE is supported (history: needs a \
                     backup history table, which innoxide-agent does not keep)"
                ),
            },
            (None, None) => None,
        };
        let method = match self.incremental.as_deref() {
            None | Some("auto") => None,
            Some("full-scan") => Some(crate::meta::ChangedPages::FullScan),
            Some("page-track") => Some(crate::meta::ChangedPages::PageTracking),
            Some(other) => {
                anyhow::bail!("--incremental={other}: the methods are full-scan and page-track")
            }
        };
        match base {
            Some(base) => Ok(Some(backup::IncrementalOptions { base, method })),
            None if self.incremental.is_some() => anyhow::bail!(
                "--incremental needs its base: --incremental-basedir=BASE or --incremental-base=dir:BASE"
            ),
            None => Ok(None),
        }
    }
}

/// How the copy is paced against the server's load.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Pacing {
    Adaptive,
    Off,
}

#[derive(Args, Debug, Clone)]
struct ArchiveBinlogsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    repo: RepoArgs,
    /// The archive: a folder or a repository URL (s3://bucket/prefix/binlogs, gs://…, az://…).
    #[arg(value_name = "LOCATION")]
    location: String,
    /// Archive up to the server's binlog position at the call, then exit
    /// (non-zero, naming them, when gaps are found).
    #[arg(long)]
    until_current: bool,
    /// The longest time between two uploads of the active binlog's new
    /// transactions, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    upload_interval: u64,
    /// Where the server's binlog files are, as seen from here (default: the
    /// folder of @@log_bin_basename).
    #[arg(long)]
    binlog_dir: Option<PathBuf>,
    /// Compress stored binlogs with zstd.
    #[arg(long)]
    compress: bool,
    /// zstd level (1 fastest … 19 smallest).
    #[arg(long, default_value_t = crate::repo::chunk::DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    compress_level: i32,
    /// Encrypt stored binlogs (AES-256-GCM) with the 256-bit key in this file.
    #[arg(long)]
    encrypt_key_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct VerifyArgs {
    /// The backup: a folder or a URL (s3://bucket/prefix/2026-11-21_18-39-12).
    #[arg(long, alias = "target-dir", value_name = "LOCATION")]
    backup_dir: String,
    #[arg(long)]
    encrypt_key_file: Option<PathBuf>,
    #[command(flatten)]
    repo: RepoArgs,
}

#[derive(Args, Debug, Clone)]
struct DeleteArgs {
    /// The repository: a folder or a URL.
    #[arg(value_name = "REPOSITORY")]
    repository: String,
    /// The backup's name in it.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    repo: RepoArgs,
}

#[derive(Args, Debug, Clone)]
struct PruneArgs {
    #[arg(value_name = "REPOSITORY")]
    repository: String,
    /// Keep the newest N backups.
    #[arg(long)]
    keep_last: Option<usize>,
    /// Keep backups younger than this (e.g. 7d, 36h).
    #[arg(long, value_parser = humantime::parse_duration)]
    keep_within: Option<Duration>,
    /// Also delete folders without a manifest (failed backups) older than this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    orphans_older_than: Duration,
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    repo: RepoArgs,
}

#[derive(Args, Debug, Clone)]
struct ApplyIncrementalArgs {
    /// The full backup, prepared by apply-log.
    #[arg(long, alias = "target-dir", value_name = "DIR")]
    backup_dir: PathBuf,
    /// The incremental backup to apply: the one that continues the chain.
    #[arg(long, alias = "incremental-dir", value_name = "DIR")]
    incremental_backup_dir: PathBuf,
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    mysqld: Option<PathBuf>,
    /// Overwrite what an earlier, failed run left behind.
    #[arg(long)]
    force: bool,
    /// The key of encrypted backups.
    #[arg(long)]
    encrypt_key_file: Option<PathBuf>,
    /// Buffer pool for the recovery, bytes (suffixes K, M, G).
    #[arg(long, value_parser = parse_size, default_value = "256M")]
    use_memory: u64,
}

#[derive(Args, Debug, Clone)]
struct ApplyLogArgs {
    /// The backup to prepare; with --backup-repository, the (empty) folder
    /// the chosen backup is fetched into and prepared in.
    #[arg(long, alias = "target-dir", value_name = "DIR")]
    backup_dir: PathBuf,
    /// Point-in-time restore from a repository of several backups (a
    /// folder or a repository URL): the newest full backup at or before the
    /// --stop-* target that the binlogs reach it from is chosen (and said
    /// why), then fetched into --backup-dir; the repository is only read.
    #[arg(long, value_name = "LOCATION", requires = "stop")]
    backup_repository: Option<String>,
    /// The mysqld to recover with: must be the source's exact version (default: from PATH).
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    mysqld: Option<PathBuf>,
    /// Overwrite what an earlier, failed apply-log left behind.
    #[arg(long)]
    force: bool,
    /// Accepted for the seed's scripts: compressed backups are decompressed
    /// (and checked) automatically while the working copy is built.
    #[arg(long)]
    uncompress: bool,
    /// The key of an encrypted backup.
    #[arg(long)]
    encrypt_key_file: Option<PathBuf>,
    /// Buffer pool for the recovery, bytes (suffixes K, M, G): at least this;
    /// more when the redo is large and half the free memory allows, so the
    /// redo is replayed in one pass.
    #[arg(long, value_parser = parse_size, default_value = "256M")]
    use_memory: u64,
    #[command(flatten)]
    point_in_time: PointInTimeArgs,
}

/// Point-in-time restore: after the backup's recovery, the mini instance's
/// own applier replays the source's binlogs up to one target.
#[derive(Args, Debug, Clone, Default)]
#[command(group(
    clap::ArgGroup::new("stop")
        .args(["stop_gtid", "stop_datetime", "stop_position"])
        .multiple(false)
        .requires("binlogs")
))]
#[command(group(
    clap::ArgGroup::new("binlogs")
        .args(["binlog_dir", "binlog_archive"])
        .multiple(false)
        .requires("stop")
))]
struct PointInTimeArgs {
    /// Replay plain binlog files from this folder (the source's binlog
    /// folder while it still has them, or copies of its files).
    #[arg(long, value_name = "DIR")]
    binlog_dir: Option<PathBuf>,
    /// Replay from a binlog archive written by archive-binlogs (a folder,
    /// file://, s3://, gs://, az://; the --s3-* options as for backup).
    #[arg(long, value_name = "LOCATION")]
    binlog_archive: Option<String>,
    /// The key of an encrypted archive (default: --encrypt-key-file).
    #[arg(long, requires = "binlog_archive")]
    binlog_encrypt_key_file: Option<PathBuf>,
    /// Restore to exactly this GTID set (the restored gtid_executed).
    #[arg(long, value_name = "GTID_SET")]
    stop_gtid: Option<String>,
    /// Restore to the last transaction committed at or before this time
    /// (RFC 3339, e.g. 2026-12-06T20:31:05Z).
    #[arg(long, value_name = "TIME")]
    stop_datetime: Option<String>,
    /// Restore to this transaction boundary of the source's binlog file.
    #[arg(long, value_name = "FILE:POS")]
    stop_position: Option<String>,
    #[command(flatten)]
    repo: RepoArgs,
}

impl PointInTimeArgs {
    fn target(&self) -> anyhow::Result<Option<crate::prepare::pitr::StopTarget>> {
        use crate::prepare::pitr::StopTarget;
        let target = if let Some(set) = &self.stop_gtid {
            StopTarget::Gtid(
                set.parse()
                    .map_err(|e| anyhow::anyhow!("--stop-gtid {set:?}: {e}"))?,
            )
        } else if let Some(time) = &self.stop_datetime {
            StopTarget::parse_time(time).map_err(|e| anyhow::anyhow!("--stop-datetime: {e}"))?
        } else if let Some(position) = &self.stop_position {
            StopTarget::parse_position(position)
                .map_err(|e| anyhow::anyhow!("--stop-position: {e}"))?
        } else {
            return Ok(None);
        };
        Ok(Some(target))
    }

    fn source(
        &self,
        backup_key: Option<&PathBuf>,
    ) -> anyhow::Result<crate::prepare::pitr::BinlogSource> {
        use crate::prepare::pitr::BinlogSource;
        if let Some(dir) = &self.binlog_dir {
            return Ok(BinlogSource::Dir(dir.clone()));
        }
        let location = self.binlog_archive.clone().ok_or_else(|| {
            anyhow::anyhow!("say where the binlogs are: --binlog-dir or --binlog-archive")
        })?;
        let key = read_key(self.binlog_encrypt_key_file.as_ref().or(backup_key))?;
        Ok(BinlogSource::Archive(Box::new(
            crate::prepare::pitr::ArchiveSource {
                location,
                repo: self.repo.options(),
                key,
            },
        )))
    }
}

#[derive(Args, Debug, Clone)]
struct CopyBackArgs {
    #[arg(long, alias = "target-dir", value_name = "DIR")]
    backup_dir: PathBuf,
    /// The (empty) datadir to restore into (default: `datadir` of --defaults-file).
    #[arg(long)]
    datadir: Option<PathBuf>,
    /// The target server's option file: its [mysqld] datadir,
    /// innodb_data_home_dir and innodb_undo_directory say where files go.
    #[arg(long)]
    defaults_file: Option<PathBuf>,
    /// Where the target server keeps its system tablespace files (default:
    /// from --defaults-file, else where the source had them).
    #[arg(long)]
    innodb_data_home_dir: Option<PathBuf>,
    /// Where the target server keeps its undo tablespaces (default: from
    /// --defaults-file, else where the source had them).
    #[arg(long)]
    innodb_undo_directory: Option<PathBuf>,
    /// Restore into a datadir that is not empty.
    #[arg(long, alias = "force-non-empty-directories")]
    force: bool,
    /// Drop auto.cnf so the restored server gets a new server UUID (a clone, not an in-place restore).
    #[arg(long)]
    new_server_uuid: bool,
    /// Files (and 64 MiB ranges of large files) copied at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
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
struct ServeArgs {
    /// How the agent reaches its server (per-request credentials override user and password).
    #[command(flatten)]
    connect: ConnectArgs,
    /// gRPC address (mTLS unless --insecure); port 0 picks a free port, logged as `listening`.
    #[arg(long, env = "INNOXIDE_LISTEN", default_value = "0.0.0.0:9443")]
    listen: std::net::SocketAddr,
    /// Plain-HTTP address of /metrics (Prometheus) and /healthz (for the kubelet).
    #[arg(long, env = "INNOXIDE_METRICS_LISTEN", default_value = "0.0.0.0:9464")]
    metrics_listen: std::net::SocketAddr,
    /// The agent's certificate chain (PEM).
    #[arg(long, env = "INNOXIDE_TLS_CERT", required_unless_present = "insecure")]
    tls_cert: Option<PathBuf>,
    /// The agent's private key (PEM).
    #[arg(long, env = "INNOXIDE_TLS_KEY", required_unless_present = "insecure")]
    tls_key: Option<PathBuf>,
    /// The CA that signs the certificates clients must present (PEM).
    #[arg(
        long,
        env = "INNOXIDE_TLS_CLIENT_CA",
        required_unless_present = "insecure"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Plaintext gRPC without client authentication: for a local demo only.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_client_ca"])]
    insecure: bool,
    /// Where operation records and staged restores live, on the data volume
    /// (default: `<datadir>/.innoxide-agent`, where `init` looks for them).
    #[arg(long, env = "INNOXIDE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The server's datadir; without --state-dir, records go to `<datadir>/.innoxide-agent`.
    #[arg(long, env = "INNOXIDE_DATADIR")]
    datadir: Option<PathBuf>,
    /// Where staged restores are fetched and prepared (default: <state-dir>/staging).
    #[arg(long, env = "INNOXIDE_STAGING_DIR")]
    staging_dir: Option<PathBuf>,
    /// The mysqld that applies the log: must be the source's exact version (default: from PATH).
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    mysqld: Option<PathBuf>,
    /// How long SIGTERM waits for running operations to release the server.
    #[arg(long, env = "INNOXIDE_SHUTDOWN_GRACE", default_value = "25s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<crate::service::Config> {
        let state_dir = match (self.state_dir, &self.datadir) {
            (Some(dir), _) => dir,
            // Inside the datadir, hidden: a StatefulSet's volume is the
            // datadir, and MySQL's startup scan skips dot-directories (see
            // the swap module).
            (None, Some(datadir)) => datadir.join(crate::swap::STATE_DIR_NAME),
            (None, None) => anyhow::bail!(
                "say where the agent keeps its operation records: --state-dir (a folder on the data volume) or --datadir"
            ),
        };
        let tls = match (self.tls_cert, self.tls_key, self.tls_client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Some(crate::service::TlsFiles {
                cert,
                key,
                client_ca,
            }),
            _ => None,
        };
        Ok(crate::service::Config {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            tls,
            staging_dir: self
                .staging_dir
                .unwrap_or_else(|| state_dir.join("staging")),
            state_dir,
            connect: self.connect.resolve()?,
            mysqld: self.mysqld,
            shutdown_grace: self.shutdown_grace,
        })
    }
}

#[derive(Args, Debug, Clone)]
struct ListArgs {
    /// The repository: a folder or a URL.
    #[arg(value_name = "REPOSITORY")]
    root: String,
    #[command(flatten)]
    repo: RepoArgs,
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

/// The exit status of a refusal: the situation is wrong and nothing was
/// touched (a live server on the datadir, a restore over a non-empty one).
const REFUSED: u8 = 3;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            if crate::swap::init::is_refusal(&e) {
                ExitCode::from(REFUSED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Backup(args) => {
            backup_command(&args).await?;
        }
        Command::BackupAndApplyLog(args) => {
            let location = backup_command(&args.backup).await?;
            if location.contains("://") {
                anyhow::bail!(
                    "backup-and-apply-log works on a local folder only (as the seed's); \
                     the backup at {location} is complete — prepare it with apply-log"
                );
            }
            apply_log_command(&ApplyLogArgs {
                backup_dir: PathBuf::from(location),
                backup_repository: None,
                mysqld: args.mysqld,
                force: false,
                uncompress: false,
                encrypt_key_file: args.backup.encrypt_key_file.clone(),
                use_memory: 256 << 20,
                point_in_time: PointInTimeArgs::default(),
            })
            .await?;
        }
        Command::ApplyLog(args) => apply_log_command(&args).await?,
        Command::CopyBack(args) => copy_back_command(&args, false).await?,
        Command::MoveBack(args) => copy_back_command(&args, true).await?,
        Command::CopyBackAndApplyLog(args) => {
            crate::restore::copy_back_and_apply_log(
                &restore_options(&args.copy_back, false)?,
                args.mysqld,
            )
            .await?;
            eprintln!("completed OK!");
        }
        Command::Verify(args) => {
            let key = read_key(args.encrypt_key_file.as_ref())?;
            let report = crate::verify::verify(&args.backup_dir, &args.repo.options(), key).await?;
            println!("{report}");
            eprintln!("completed OK!");
        }
        Command::List(args) => {
            for line in crate::verify::list(&args.root, &args.repo.options()).await? {
                println!("{line}");
            }
        }
        Command::Delete(args) => {
            let store = crate::repo::open(&args.repository, &args.repo.options())?;
            let deleted = crate::repo::lifecycle::delete(&store, &args.name).await?;
            println!("deleted {} ({deleted} objects)", args.name);
        }
        Command::Prune(args) => {
            let plan = crate::verify::prune(
                &args.repository,
                &args.repo.options(),
                crate::verify::Retention {
                    keep_last: args.keep_last,
                    keep_within: args.keep_within,
                    orphans_older_than: args.orphans_older_than,
                },
                args.dry_run,
            )
            .await?;
            for name in &plan {
                println!(
                    "{}{name}",
                    if args.dry_run {
                        "would delete "
                    } else {
                        "deleted "
                    }
                );
            }
        }
        Command::ApplyIncrementalBackup(args) => {
            let options = crate::prepare::incremental::ApplyIncrementalOptions {
                key: read_key(args.encrypt_key_file.as_ref())?,
                backup_dir: args.backup_dir,
                incremental_dir: args.incremental_backup_dir,
                mysqld: args.mysqld,
                force: args.force,
                buffer_pool: args.use_memory,
            };
            let report =
                crate::prepare::incremental::apply_incremental(&options, cancel_on_signals())
                    .await?;
            if report.already_prepared {
                eprintln!(
                    "{} is already applied to {}: nothing to do",
                    options.incremental_dir.display(),
                    report.prepared_dir.display()
                );
            } else if let Some(proof) = &report.recovery {
                eprintln!(
                    "{}: rebuilt with {} and recovered from checkpoint {} to last_lsn {}",
                    report.prepared_dir.display(),
                    options.incremental_dir.display(),
                    proof.checkpoint_lsn,
                    proof.scanned_to_lsn
                );
            }
            eprintln!("completed OK!");
        }
        Command::ArchiveBinlogs(args) => archive_binlogs_command(&args).await?,
        Command::Serve(args) => crate::service::serve(args.config()?).await?,
        Command::Init(args) => crate::swap::init::run(args).await?,
        Command::Install { dir } => {
            let installed = crate::install::install(&dir)?;
            eprintln!("installed {}", installed.display());
        }
    }
    Ok(())
}

async fn backup_command(args: &BackupArgs) -> anyhow::Result<String> {
    let root = args
        .root
        .clone()
        .or_else(|| args.backup_dir.clone())
        .ok_or_else(|| anyhow::anyhow!("say where the backup goes: BACKUP-ROOT or --backup-dir"))?;
    let options = BackupOptions {
        connect: args.connect.resolve()?,
        repository: root,
        repo: args.repo.options(),
        transform: crate::repo::Transform {
            zstd_level: args.compress.then_some(args.compress_level),
            key: read_key(args.encrypt_key_file.as_ref())?,
        },
        spool_dir: args.spool_dir.clone(),
        timestamped: !args.no_timestamp,
        parallel: args.parallel.into(),
        throttle: args.throttle,
        adaptive_pacing: args.pacing == Pacing::Adaptive,
        slave_info: args.slave_info,
        redo_consumer: !args.no_redo_consumer,
        locks: backup::LockOptions {
            backup_lock_timeout: Duration::from_secs(args.backup_lock_timeout),
            table_lock_timeout: Duration::from_secs(args.lock_wait_timeout),
            writers_wait_timeout: Duration::from_secs(args.ftwrl_wait_timeout),
            kill_writers_after: (args.kill_long_queries_timeout > 0)
                .then(|| Duration::from_secs(args.kill_long_queries_timeout)),
            reduced_ddl_lock: args.lock_ddl.eq_ignore_ascii_case("reduced"),
        },
        incremental: args.incremental()?,
        page_tracking: args.page_tracking,
    };
    let progress = Progress::new();
    let cancel = cancel_on_signals();
    let reporter = tokio::spawn(report_progress(progress.clone()));
    let result = backup::run(&options, progress, cancel).await;
    reporter.abort();
    let report = result?;
    tracing::info!(
        location = %report.location,
        last_lsn = report.manifest.redo.last_lsn,
        binlog = %report.manifest.binlog_file,
        position = report.manifest.binlog_position,
        gtid = %report.manifest.gtid_executed,
        "backup complete"
    );
    println!("{}", report.location);
    eprintln!("completed OK!");
    Ok(report.location)
}

async fn archive_binlogs_command(args: &ArchiveBinlogsArgs) -> anyhow::Result<()> {
    use crate::binlog::archive::{self, ArchiveOptions, ArchiveStatus, Stop};
    let options = ArchiveOptions {
        connect: args.connect.resolve()?,
        location: args.location.clone(),
        repo: args.repo.options(),
        transform: crate::repo::Transform {
            zstd_level: args.compress.then_some(args.compress_level),
            key: read_key(args.encrypt_key_file.as_ref())?,
        },
        upload_interval: Duration::from_secs(args.upload_interval),
        binlog_dir: args.binlog_dir.clone(),
        status: Arc::new(ArchiveStatus::default()),
    };
    let stop = if args.until_current {
        Stop::UntilCurrent
    } else {
        Stop::Cancelled(cancel_on_signals())
    };
    let report = archive::archive_binlogs(&options, stop).await?;
    tracing::info!(
        segments = report.segments,
        bytes = report.bytes,
        transactions = report.transactions,
        history = %report.history,
        "binlogs archived"
    );
    println!("{}", report.history);
    eprintln!("completed OK!");
    Ok(())
}

async fn apply_log_command(args: &ApplyLogArgs) -> anyhow::Result<()> {
    let options = crate::prepare::ApplyLogOptions {
        key: read_key(args.encrypt_key_file.as_ref())?,
        backup_dir: args.backup_dir.clone(),
        mysqld: args.mysqld.clone(),
        force: args.force,
        buffer_pool: args.use_memory,
    };
    let report = match args.point_in_time.target()? {
        Some(target) => {
            let binlogs = args.point_in_time.source(args.encrypt_key_file.as_ref())?;
            if let Some(repository) = &args.backup_repository {
                fetch_base(
                    repository,
                    &args.point_in_time.repo.options(),
                    &binlogs,
                    &target,
                    options.key.as_ref(),
                    &args.backup_dir,
                )
                .await?;
            }
            let options = crate::prepare::pitr::PointInTimeOptions {
                binlogs,
                apply: options,
                target,
            };
            let done =
                crate::prepare::pitr::apply_log_to_point(&options, cancel_on_signals()).await?;
            let r = &done.record;
            eprintln!(
                "{}: prepared to {}: {} transaction(s) replayed{}{}; gtid_executed {}, the \
                 source's binlog {}:{}",
                done.apply.prepared_dir.display(),
                r.target,
                r.transactions_replayed,
                match r.replay_seconds {
                    Some(s) => format!(
                        " in {s:.1} s ({:.0}/s)",
                        r.transactions_replayed as f64 / s.max(0.001)
                    ),
                    None => String::new(),
                },
                match (&r.last_transaction, &r.last_committed) {
                    (Some(gtid), Some(at)) => format!(" (the last {gtid}, committed {at})"),
                    _ => String::new(),
                },
                r.gtid_executed,
                r.binlog_file,
                r.binlog_position
            );
            done.apply
        }
        None => crate::prepare::apply_log(&options, cancel_on_signals()).await?,
    };
    if report.already_prepared {
        let point = crate::prepare::pitr::read_record(&report.prepared_dir)?
            .map(|r| format!(" (to {}: gtid_executed {})", r.target, r.gtid_executed))
            .unwrap_or_default();
        eprintln!(
            "{} is already prepared{point}: nothing to do",
            report.prepared_dir.display()
        );
    } else if let Some(proof) = &report.recovery {
        eprintln!(
            "{}: recovered from checkpoint {} to last_lsn {}",
            report.prepared_dir.display(),
            proof.checkpoint_lsn,
            proof.scanned_to_lsn
        );
    }
    if let Some(text) = &report.slave_info {
        eprintln!(
            "replication coordinates of the prepared data ({}):\n{}",
            report.prepared_dir.join(crate::meta::SLAVE_INFO).display(),
            text.trim_end()
        );
    }
    eprintln!("completed OK!");
    Ok(())
}

/// `apply-log --backup-repository`: the base backup for `target` chosen
/// from the repository (said why) and fetched into `dir`.
async fn fetch_base(
    repository: &str,
    repo: &crate::repo::RepoOptions,
    binlogs: &crate::prepare::pitr::BinlogSource,
    target: &crate::prepare::pitr::StopTarget,
    key: Option<&crate::repo::Key>,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::prepare::pitr::repository;
    let chosen = repository::choose(repository, repo, binlogs, target).await?;
    tracing::info!(backup = %chosen.location, why = %chosen.why, "base backup chosen");
    eprintln!("{}", chosen.why);
    if repository::fetch(&chosen, key, dir).await? {
        eprintln!("fetched {} into {}", chosen.location, dir.display());
    } else {
        eprintln!("{} holds {} already", dir.display(), chosen.name);
    }
    Ok(())
}

fn restore_options(
    args: &CopyBackArgs,
    move_files: bool,
) -> anyhow::Result<crate::restore::CopyBackOptions> {
    let server = match &args.defaults_file {
        Some(path) => OptionFile::load(path)?,
        None => OptionFile::default(),
    };
    let option = |name: &str| server.get(&["mysqld"], name).map(PathBuf::from);
    let datadir = args
        .datadir
        .clone()
        .or_else(|| option("datadir"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no datadir to restore into: pass --datadir, or a --defaults-file that sets it"
            )
        })?;
    // mysqld's own defaults when its option file is given: both in the datadir.
    let known = |flag: &Option<PathBuf>, name: &str| {
        flag.clone()
            .or_else(|| option(name))
            .or_else(|| args.defaults_file.as_ref().map(|_| PathBuf::from(".")))
    };
    Ok(crate::restore::CopyBackOptions {
        backup_dir: args.backup_dir.clone(),
        datadir,
        force_non_empty: args.force,
        new_server_uuid: args.new_server_uuid,
        move_files,
        parallel: args.parallel.into(),
        layout: crate::restore::TargetLayout {
            data_home_dir: known(&args.innodb_data_home_dir, "innodb_data_home_dir"),
            undo_directory: known(&args.innodb_undo_directory, "innodb_undo_directory"),
        },
    })
}

async fn copy_back_command(args: &CopyBackArgs, move_files: bool) -> anyhow::Result<()> {
    crate::restore::copy_back(&restore_options(args, move_files)?).await?;
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
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
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

/// A progress bar on a terminal; a JSON progress line every 5 s otherwise
/// (logs of a container or CI are read by machines and people later).
async fn report_progress(progress: Arc<Progress>) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            ticker.tick().await;
            let s = progress.snapshot();
            bar.set_length(s.bytes_total.max(s.bytes_done));
            bar.set_position(s.bytes_done);
            bar.set_message(s.phase.map(|p| format!("{p:?}")).unwrap_or_default());
            if s.phase == Some(backup::Phase::Done) {
                bar.finish_and_clear();
                return;
            }
        }
    }
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
            "innoxide-agent",
            "backup",
            "--user=root",
            "--socket=/tmp/s",
            "--no-timestamp",
            "--parallel=8",
            "--throttle=10M",
            "/backups",
        ])
        .unwrap();
        let Command::Backup(args) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(args.parallel, 8);
        assert_eq!(args.throttle, Some(10 << 20));
        assert_eq!(args.root.as_deref(), Some("/backups"));
        assert_eq!(args.pacing, Pacing::Adaptive, "paced by default");
        assert_eq!(
            args.lock_ddl, "on",
            "the backup lock held for the whole copy"
        );
        // innobackupex spells it in capitals.
        let cli =
            Cli::try_parse_from(["innoxide-agent", "backup", "--lock-ddl=REDUCED", "/b"]).unwrap();
        let Command::Backup(args) = cli.command else {
            panic!("not backup")
        };
        assert!(args.lock_ddl.eq_ignore_ascii_case("reduced"));
        assert!(Cli::try_parse_from(["innoxide-agent", "backup", "--lock-ddl=off", "/b"]).is_err());
        assert_eq!(args.compress_level, crate::repo::chunk::DEFAULT_ZSTD_LEVEL);
        let cli = Cli::try_parse_from(["innoxide-agent", "backup", "--pacing=off", "/b"]).unwrap();
        let Command::Backup(args) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(args.pacing, Pacing::Off);
    }

    fn backup_args(args: &[&str]) -> BackupArgs {
        let mut all = vec!["innoxide-agent", "backup", "/backups"];
        all.extend_from_slice(args);
        let Command::Backup(args) = Cli::try_parse_from(all).unwrap().command else {
            panic!("not backup")
        };
        args
    }

    #[test]
    fn incremental_takes_both_tools_spellings() {
        let innobackupex = backup_args(&["--incremental", "--incremental-basedir=/b/full"])
            .incremental()
            .unwrap()
            .unwrap();
        assert_eq!(innobackupex.base, "/b/full");
        assert_eq!(innobackupex.method, None);
        let mysqlbackup = backup_args(&[
            "--incremental=full-scan",
            "--incremental-base=dir:s3://bucket/db/2026-11-21_18-39-12",
        ])
        .incremental()
        .unwrap()
        .unwrap();
        assert_eq!(mysqlbackup.base, "s3://bucket/db/2026-11-21_18-39-12");
        assert_eq!(
            mysqlbackup.method,
            Some(crate::meta::ChangedPages::FullScan)
        );
        assert!(backup_args(&[]).incremental().unwrap().is_none());
    }

    #[test]
    fn an_incremental_without_a_usable_base_is_refused() {
        let err = backup_args(&["--incremental"]).incremental().unwrap_err();
        assert!(err.to_string().contains("needs its base"), "{err}");
        let err = backup_args(&["--incremental-base=history:last_backup"])
            .incremental()
            .unwrap_err();
        assert!(err.to_string().contains("only dir:BASE"), "{err}");
        let err = backup_args(&["--incremental=optimistic", "--incremental-basedir=/b"])
            .incremental()
            .unwrap_err();
        assert!(
            err.to_string().contains("full-scan and page-track"),
            "{err}"
        );
    }

    #[test]
    fn apply_log_takes_one_stop_target_with_its_binlogs() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["innoxide-agent", "apply-log", "--backup-dir", "/b"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let ok = parse(&[
            "--binlog-dir",
            "/logs",
            "--stop-position",
            "binlog.000007:1234",
        ])
        .unwrap();
        let Command::ApplyLog(args) = ok.command else {
            panic!("not apply-log")
        };
        assert_eq!(
            args.point_in_time.target().unwrap(),
            Some(crate::prepare::pitr::StopTarget::Position {
                file: "binlog.000007".into(),
                pos: 1234
            })
        );
        // A target needs binlogs, binlogs need a target, one of each.
        for wrong in [
            &["--stop-gtid", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"][..],
            &["--binlog-dir", "/logs"],
            &[
                "--binlog-dir",
                "/logs",
                "--stop-gtid",
                "x",
                "--stop-datetime",
                "y",
            ],
            &[
                "--binlog-dir",
                "/logs",
                "--binlog-archive",
                "s3://b/l",
                "--stop-gtid",
                "x",
            ],
        ] {
            assert!(parse(wrong).is_err(), "{wrong:?} was accepted");
        }
        let bad_time = parse(&["--binlog-dir", "/logs", "--stop-datetime", "yesterday"]).unwrap();
        let Command::ApplyLog(args) = bad_time.command else {
            panic!("not apply-log")
        };
        assert!(args.point_in_time.target().is_err());
        // A repository of backups needs a target to choose the base by.
        assert!(parse(&["--backup-repository", "s3://b/db"]).is_err());
        let ok = parse(&[
            "--backup-repository",
            "s3://b/db",
            "--binlog-archive",
            "s3://b/db/binlogs",
            "--stop-datetime",
            "2026-12-06T20:31:05Z",
        ])
        .unwrap();
        let Command::ApplyLog(args) = ok.command else {
            panic!("not apply-log")
        };
        assert_eq!(args.backup_repository.as_deref(), Some("s3://b/db"));
    }

    #[test]
    fn a_wrong_flag_is_refused() {
        let err =
            Cli::try_parse_from(["innoxide-agent", "backup", "--paralel=2", "/b"]).unwrap_err();
        assert!(err.to_string().contains("--paralel"), "{err}");
    }

    #[test]
    fn serve_needs_its_certificates_unless_insecure() {
        let err = Cli::try_parse_from(["innoxide-agent", "serve", "--state-dir=/s"]).unwrap_err();
        assert!(err.to_string().contains("--tls-client-ca"), "{err}");
        let cli = Cli::try_parse_from([
            "innoxide-agent",
            "serve",
            "--insecure",
            "--datadir=/data/mysql",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let config = args.config().unwrap();
        assert!(config.tls.is_none());
        assert_eq!(
            config.state_dir,
            std::path::Path::new("/data/mysql/.innoxide-agent")
        );
        assert_eq!(
            config.staging_dir,
            std::path::Path::new("/data/mysql/.innoxide-agent/staging")
        );
    }
}
