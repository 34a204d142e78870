//! What the agent's operations do: requests turned into engine options
//! (refused here, before anything starts, when they cannot work), and the
//! bodies that run the engine and say how it went.
//!
//! The repository is a local folder (`file://`) for now. Object storage
//! plugs in at [`backup_plan`] (where a backup goes) and [`fetch`] (how a
//! restore gets it); the rest does not change.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use innoxide_proto::agent::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::Config;
use super::chain;
use super::operations::{Job, Live};
use super::record::{
    BackupOutcome, ChainLink, Failure, Outcome, Phase, Replayed, StageOutcome, check_name,
};
use crate::backup::{self, BackupOptions};
use crate::mysql::{self, ConnectOptions};
use crate::prepare::pitr;
use crate::repo::{Key, RepoOptions, StoreError, Transform, lifecycle};
use crate::secret::Secret;
use crate::{meta, prepare, verify};

/// Files a backup copies at once when the request leaves it open.
const DEFAULT_PARALLEL: usize = 4;
/// The apply-log instance's buffer pool when the request leaves it open.
const DEFAULT_USE_MEMORY: u64 = 256 << 20;

/// A backup request, checked and turned into what the engine takes.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub options: BackupOptions,
    /// The backup's own folder, when the repository is a local folder.
    pub dir: Option<PathBuf>,
    /// Where the backup is: a folder or an object store URL.
    pub location: String,
    pub repository_url: String,
    pub backup_name: String,
    /// The repository, where an incremental's chain is looked up.
    target: Target,
}

/// Where a request's repository is and how to reach it.
#[derive(Debug, Clone)]
struct Target {
    /// A folder, or an object store URL, as `repo::open` takes it.
    location: String,
    options: RepoOptions,
    /// The folder, when the repository is local.
    local_root: Option<PathBuf>,
}

impl Target {
    fn backup(&self, name: &str) -> (String, Option<PathBuf>) {
        match &self.local_root {
            Some(root) => {
                let dir = root.join(name);
                (dir.display().to_string(), Some(dir))
            }
            None => (
                format!("{}/{name}", self.location.trim_end_matches('/')),
                None,
            ),
        }
    }
}

/// The repository of a request: a local folder, or an object store with the
/// request's non-secret options (`endpoint`, `region`, `virtual_hosted`)
/// and credentials.
fn target(repository: &pb::Repository) -> Result<Target, Status> {
    let scheme = repository.url.split_once("://").map(|(s, _)| s);
    if matches!(scheme, None | Some("file")) {
        let root = local_repository(&repository.url)?;
        return Ok(Target {
            location: root.display().to_string(),
            options: RepoOptions::default(),
            local_root: Some(root),
        });
    }
    if !matches!(scheme, Some("s3" | "gs" | "az" | "azure" | "abfs")) {
        return Err(Status::invalid_argument(format!(
            "repository.url {:?}: unknown scheme; use file:///path, s3://, gs:// or az://",
            repository.url
        )));
    }
    let option = |key: &str| repository.options.get(key).cloned();
    let mut options = RepoOptions {
        s3_endpoint: option("endpoint"),
        s3_region: option("region"),
        s3_virtual_hosted: option("virtual_hosted").is_some_and(|v| v == "true"),
        azure_account: option("storage_account"),
        azure_endpoint: option("endpoint"),
        ..RepoOptions::default()
    };
    match &repository.credentials {
        Some(pb::repository::Credentials::Gcs(creds)) => {
            if let Some(key) = &creds.service_account_key {
                options.gcs_service_account_key =
                    Some(resolve_secret(key, "repository.gcs.service_account_key")?);
            }
        }
        Some(pb::repository::Credentials::Azure(creds)) => {
            if let Some(key) = &creds.access_key {
                options.azure_access_key =
                    Some(resolve_secret(key, "repository.azure.access_key")?);
            }
        }
        Some(pb::repository::Credentials::S3(_)) | None => {}
    }
    if let Some(pb::repository::Credentials::S3(creds)) = &repository.credentials {
        if let Some(id) = &creds.access_key_id {
            options.s3_access_key_id = Some(
                resolve_secret(id, "repository.s3.access_key_id")?
                    .expose()
                    .to_owned(),
            );
        }
        if let Some(secret) = &creds.secret_access_key {
            options.s3_secret_access_key =
                Some(resolve_secret(secret, "repository.s3.secret_access_key")?);
        }
    }
    Ok(Target {
        location: repository.url.clone(),
        options,
        local_root: None,
    })
}

/// A request's repository as `repo::open` takes it (the binlog archive's):
/// its location and options.
pub(super) fn repository(repository: &pb::Repository) -> Result<(String, RepoOptions), Status> {
    let target = target(repository)?;
    Ok((target.location, target.options))
}

/// The AES-256 key of a request, from its SecretRef.
pub(super) fn encryption_key(
    secret: Option<&pb::SecretRef>,
    field: &str,
) -> Result<Option<Key>, Status> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let value = resolve_secret(secret, field)?;
    Key::from_file_contents(value.expose().as_bytes())
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// The one place a StartBackup request becomes engine options.
pub fn backup_plan(req: &pb::StartBackupRequest, config: &Config) -> Result<BackupPlan, Status> {
    let repository = req
        .repository
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("repository is required"))?;
    let target = target(repository)?;
    let backup_name = if req.backup_name.is_empty() {
        req.operation_id.clone()
    } else {
        req.backup_name.clone()
    };
    check_name("backup_name", &backup_name).map_err(Status::invalid_argument)?;
    let options = req.options.clone().unwrap_or_default();
    let parallel = match options.parallel {
        0 => DEFAULT_PARALLEL,
        n @ 1..=256 => n as usize,
        n => {
            return Err(Status::invalid_argument(format!(
                "options.parallel is {n}; use 1 to 256"
            )));
        }
    };
    let zstd_level = match pb::Compression::try_from(options.compression) {
        Ok(pb::Compression::None) => None,
        Ok(pb::Compression::Zstd) => Some(crate::repo::chunk::DEFAULT_ZSTD_LEVEL),
        Err(_) => {
            return Err(Status::invalid_argument(
                "options.compression is not a known value",
            ));
        }
    };
    let key = encryption_key(options.encryption_key.as_ref(), "options.encryption_key")?;
    let incremental = match &req.incremental {
        None => None,
        Some(incremental) => {
            let base = &incremental.base_backup_name;
            check_name("incremental.base_backup_name", base).map_err(Status::invalid_argument)?;
            if *base == backup_name {
                return Err(Status::invalid_argument(format!(
                    "incremental.base_backup_name {base:?} is this backup's own name; name the \
                     backup it continues"
                )));
            }
            let method = match pb::IncrementalMethod::try_from(incremental.method) {
                Ok(pb::IncrementalMethod::Auto) => None,
                Ok(pb::IncrementalMethod::PageTrack) => Some(meta::ChangedPages::PageTracking),
                Ok(pb::IncrementalMethod::FullScan) => Some(meta::ChangedPages::FullScan),
                Err(_) => {
                    return Err(Status::invalid_argument(
                        "incremental.method is not a known value",
                    ));
                }
            };
            Some(backup::IncrementalOptions {
                base: target.backup(base).0,
                method,
            })
        }
    };
    let (location, dir) = target.backup(&backup_name);
    Ok(BackupPlan {
        options: BackupOptions {
            connect: connect_options(req.mysql.as_ref(), &config.connect)?,
            repository: location.clone(),
            repo: target.options.clone(),
            transform: Transform { zstd_level, key },
            // On the volume: the redo of a busy server can be large.
            spool_dir: Some(config.state_dir.join("spool")),
            timestamped: false,
            parallel,
            throttle: (options.throttle_bytes_per_second > 0)
                .then_some(options.throttle_bytes_per_second),
            adaptive_pacing: true,
            slave_info: options.slave_info,
            redo_consumer: !options.skip_redo_consumer,
            locks: backup::LockOptions::default(),
            incremental,
            page_tracking: options.start_page_tracking,
        },
        dir,
        location,
        repository_url: repository.url.clone(),
        backup_name,
        target,
    })
}

pub async fn run_backup(plan: BackupPlan, job: Job) -> Result<Outcome, Failure> {
    if let Some(dir) = &plan.dir
        && claim_destination(dir)?
    {
        job.update(|r| r.owns_destination = true);
    }
    if let Some(spool) = &plan.options.spool_dir {
        std::fs::create_dir_all(spool).map_err(|e| io_failure("create", spool, &e))?;
    }
    tracing::info!(location = %plan.location, "backup starting");
    let report = backup::run(&plan.options, job.live.engine.clone(), job.cancel.clone())
        .await
        .map_err(|e| backup_failure(&e))?;
    let mut outcome = BackupOutcome::from_manifest(
        match &plan.dir {
            Some(dir) => location_of(dir),
            None => plan.location.clone(),
        },
        plan.backup_name.clone(),
        &report.manifest,
    );
    outcome.chain = if report.manifest.incremental.is_some() {
        // The backup is complete whatever this says: a chain that cannot
        // be read now is reported empty, and a restore reads it again.
        let target = &plan.target;
        match chain::walk(&plan.backup_name, |n| target.backup(n).0, &target.options).await {
            Ok(members) => members.iter().map(chain::Member::link).collect(),
            Err(e) => {
                tracing::warn!(error = %e.message, "the incremental's chain cannot be read back");
                Vec::new()
            }
        }
    } else {
        vec![ChainLink::from_manifest(
            plan.backup_name.clone(),
            &report.manifest,
        )]
    };
    Ok(Outcome::Backup(outcome))
}

/// A StageRestore request, checked.
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub repository_url: String,
    pub backup_name: String,
    /// The backup in the repository: a folder or an object store URL.
    pub source: String,
    pub source_options: RepoOptions,
    pub key: Option<Key>,
    /// `<staging dir>/<operation id>`: the fetched backup (an incremental's
    /// full) goes into `backup/` under it, and apply-log prepares
    /// `backup/prepared/`; an incremental's chain goes into
    /// `incrementals/<n>-<name>/` and is applied onto it in order.
    pub staging: PathBuf,
    pub apply_log: prepare::ApplyLogOptions,
    /// Replay the archive to this point after apply-log.
    pub point_in_time: Option<(pitr::BinlogSource, pitr::StopTarget)>,
    /// The repository, where an incremental's chain is looked up.
    target: Target,
}

pub fn stage_plan(req: &pb::StageRestoreRequest, config: &Config) -> Result<StagePlan, Status> {
    stage_plan_in(req, &config.staging_dir, config.mysqld.clone())
}

/// A StageRestore request checked, staging into `<staging_dir>/<operation id>`
/// (the service's, or init's for a restore into a new volume).
pub fn stage_plan_in(
    req: &pb::StageRestoreRequest,
    staging_dir: &Path,
    mysqld: Option<PathBuf>,
) -> Result<StagePlan, Status> {
    let repository = req
        .repository
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("repository is required"))?;
    let target = target(repository)?;
    check_name("backup_name", &req.backup_name).map_err(Status::invalid_argument)?;
    let key = encryption_key(req.encryption_key.as_ref(), "encryption_key")?;
    let point_in_time = match &req.point_in_time {
        Some(point) => Some(point_in_time(point, req.binlog_archive.as_ref(), &key)?),
        None => None,
    };
    let staging = staging_dir.join(&req.operation_id);
    Ok(StagePlan {
        repository_url: repository.url.clone(),
        backup_name: req.backup_name.clone(),
        source: target.backup(&req.backup_name).0,
        source_options: target.options.clone(),
        key,
        apply_log: prepare::ApplyLogOptions {
            key: None,
            backup_dir: staging.join("backup"),
            mysqld,
            force: false,
            buffer_pool: match req.use_memory_bytes {
                0 => DEFAULT_USE_MEMORY,
                n => n,
            },
        },
        point_in_time,
        staging,
        target,
    })
}

/// A StageRestore's point in time, as the replay takes it: the target and
/// the archive (read with the backup's key: one cluster, one key).
fn point_in_time(
    point: &pb::RestorePoint,
    archive: Option<&pb::Repository>,
    key: &Option<Key>,
) -> Result<(pitr::BinlogSource, pitr::StopTarget), Status> {
    let stop = match &point.target {
        Some(pb::restore_point::Target::Gtid(text)) => pitr::StopTarget::Gtid(
            text.parse()
                .map_err(|e| Status::invalid_argument(format!("point_in_time.gtid: {e}")))?,
        ),
        Some(pb::restore_point::Target::Time(at)) => {
            let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
            pitr::StopTarget::Time(
                time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .map_err(|e| Status::invalid_argument(format!("point_in_time.time: {e}")))?,
            )
        }
        Some(pb::restore_point::Target::Position(at)) => {
            if at.file.is_empty() {
                return Err(Status::invalid_argument(
                    "point_in_time.position.file is required",
                ));
            }
            pitr::StopTarget::Position {
                file: at.file.clone(),
                pos: at.position,
            }
        }
        None => {
            return Err(Status::invalid_argument(
                "point_in_time is set but names no gtid, time or position",
            ));
        }
    };
    let archive = archive
        .ok_or_else(|| Status::invalid_argument("binlog_archive is required with point_in_time"))?;
    let archive = target(archive)?;
    Ok((
        pitr::BinlogSource::Archive(Box::new(pitr::ArchiveSource {
            location: archive.location,
            repo: archive.options,
            key: key.clone(),
        })),
        stop,
    ))
}

/// Fetch, verify, apply the log. A failure removes the staging folder: it
/// holds only a copy, and the volume's space is the live server's.
pub async fn run_stage_restore(plan: StagePlan, job: Job) -> Result<Outcome, Failure> {
    job.update(|r| r.owns_destination = true);
    stage(&plan, &job.live, &job.cancel)
        .await
        .map(Outcome::StageRestore)
}

/// Fetch, verify, apply the log into `plan.staging`: what a StageRestore
/// runs, and what `init` runs to restore into a new volume. A failure
/// removes the staging folder.
pub async fn stage(
    plan: &StagePlan,
    live: &Live,
    cancel: &CancellationToken,
) -> Result<StageOutcome, Failure> {
    let result = stage_into(plan, live, cancel).await;
    if result.is_err()
        && plan.staging.exists()
        && let Err(e) = std::fs::remove_dir_all(&plan.staging)
    {
        tracing::warn!(dir = %plan.staging.display(), error = %e, "cannot remove the staging folder");
    }
    result
}

async fn stage_into(
    plan: &StagePlan,
    live: &Live,
    cancel: &CancellationToken,
) -> Result<StageOutcome, Failure> {
    if plan.staging.exists() {
        // Left by an operation of this id whose record is gone: ours to replace.
        std::fs::remove_dir_all(&plan.staging)
            .map_err(|e| io_failure("remove", &plan.staging, &e))?;
    }
    std::fs::create_dir_all(&plan.staging).map_err(|e| io_failure("create", &plan.staging, &e))?;

    live.set_phase(Phase::Fetching);
    let target = &plan.target;
    let chain = chain::walk(&plan.backup_name, |n| target.backup(n).0, &target.options).await?;
    if chain.len() > 1 && plan.point_in_time.is_some() {
        // The replay runs in apply-log's mini instance; applying a chain
        // first would need it to start from the last incremental's point.
        return Err(Failure::new(
            Code::FailedPrecondition,
            "UNSUPPORTED",
            format!(
                "{} is an incremental backup: a point in time from an incremental is not built \
                 yet; restore it to a point from its full backup {}, or without a point in time",
                plan.backup_name, chain[0].name
            ),
        ));
    }
    // The full into backup/ (where apply-log prepares it), each incremental
    // into its own folder, numbered in the order they are applied.
    let folders: Vec<PathBuf> = chain
        .iter()
        .enumerate()
        .map(|(i, member)| match i {
            0 => plan.apply_log.backup_dir.clone(),
            _ => plan
                .staging
                .join(INCREMENTALS_DIR)
                .join(format!("{i}-{}", member.name)),
        })
        .collect();
    for member in &chain {
        lifecycle::check_key(&member.manifest, plan.key.as_ref()).map_err(|e| {
            Failure::new(
                Code::FailedPrecondition,
                "BACKUP_INVALID",
                format!("{}: {e}; check the encryption key", member.location),
            )
        })?;
    }
    let files = || chain.iter().flat_map(|m| m.manifest.files.iter());
    // Applying an incremental builds the new prepared datadir beside the
    // old one: a chain needs room for one more copy of the full.
    let rebuilt = (chain.len() > 1).then(|| chain[0].manifest.files.iter().map(|f| f.size));
    check_space(
        &plan.staging,
        files().map(|f| f.size).chain(rebuilt.into_iter().flatten()),
    )?;
    let progress = &live.engine;
    progress
        .bytes_total
        .store(files().map(|f| f.size).sum(), Ordering::Relaxed);
    progress
        .files_total
        .store(files().count() as u64, Ordering::Relaxed);
    for (member, folder) in chain.iter().zip(&folders) {
        fetch(plan, member, folder, live, cancel).await?;
    }

    live.set_phase(Phase::Verifying);
    for folder in &folders {
        let to_verify = folder.clone();
        let verified = tokio::task::spawn_blocking(move || verify::verify_dir(&to_verify))
            .await
            .map_err(|e| internal(&e))?
            .map_err(|e| {
                Failure::new(
                    Code::DataLoss,
                    "BACKUP_INVALID",
                    format!("{e}; take a new backup"),
                )
            })?;
        tracing::info!(
            dir = %folder.display(),
            files = verified.files,
            bytes = verified.bytes,
            "backup verified"
        );
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
    }

    live.set_phase(Phase::ApplyingLog);
    if let Some((binlogs, target)) = &plan.point_in_time {
        let options = pitr::PointInTimeOptions {
            apply: plan.apply_log.clone(),
            binlogs: binlogs.clone(),
            target: target.clone(),
        };
        let report = pitr::apply_log_to_point(&options, cancel.clone())
            .await
            .map_err(|e| apply_log_failure(&e))?;
        live.set_phase(Phase::Done);
        let record = report.record;
        let manifest = &chain[0].manifest;
        return Ok(StageOutcome {
            prepared_dir: report.apply.prepared_dir,
            backup_location: plan.source.clone(),
            server_version: manifest.server_version.clone(),
            last_lsn: manifest.redo.last_lsn,
            binlog_file: record.binlog_file,
            binlog_position: record.binlog_position,
            gtid_executed: record.gtid_executed,
            replayed: Some(Replayed {
                backup_gtid_executed: record.backup_gtid_executed,
                transactions: record.transactions_replayed,
            }),
            chain: chain.iter().map(chain::Member::link).collect(),
        });
    }
    let mut report = prepare::apply_log(&plan.apply_log, cancel.clone())
        .await
        .map_err(|e| apply_log_failure(&e))?;
    for folder in &folders[1..] {
        tracing::info!(incremental = %folder.display(), "applying an incremental of the chain");
        let options = prepare::incremental::ApplyIncrementalOptions {
            backup_dir: plan.apply_log.backup_dir.clone(),
            incremental_dir: folder.clone(),
            mysqld: plan.apply_log.mysqld.clone(),
            force: false,
            buffer_pool: plan.apply_log.buffer_pool,
            key: None,
        };
        report = prepare::incremental::apply_incremental(&options, cancel.clone())
            .await
            .map_err(|e| apply_log_failure(&e))?;
    }
    live.set_phase(Phase::Done);
    let last = chain
        .last()
        .expect("a chain holds at least its full backup");
    let manifest = &last.manifest;
    Ok(StageOutcome {
        prepared_dir: report.prepared_dir,
        backup_location: plan.source.clone(),
        server_version: manifest.server_version.clone(),
        last_lsn: manifest.redo.last_lsn,
        binlog_file: manifest.binlog_file.clone(),
        binlog_position: manifest.binlog_position,
        gtid_executed: manifest.gtid_executed.clone(),
        replayed: None,
        chain: chain.iter().map(chain::Member::link).collect(),
    })
}

/// Where a staged incremental's chain is fetched, under the staging folder.
const INCREMENTALS_DIR: &str = "incrementals";

/// Copies one backup of the chain from its repository into `to` as plain
/// files (decrypted, decompressed), verifying every file against the
/// manifest as it streams; the manifest is written last. Progress counts
/// the bytes.
async fn fetch(
    plan: &StagePlan,
    member: &chain::Member,
    to: &Path,
    live: &Live,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    let store = crate::repo::open(&member.location, &plan.source_options).map_err(|e| {
        Failure::new(
            Code::FailedPrecondition,
            "BACKUP_INVALID",
            format!("{e}; check backup_name and the repository URL"),
        )
    })?;
    let progress = live.engine.clone();
    let (to, key, fetched) = (to.to_owned(), plan.key.clone(), member.manifest.clone());
    let copy = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&to).map_err(|e| io_failure("create", &to, &e))?;
        lifecycle::fetch(&store, &fetched, key.as_ref(), &to, &mut |bytes| {
            progress.bytes_done.fetch_add(bytes, Ordering::Relaxed);
            progress.files_done.fetch_add(1, Ordering::Relaxed);
        })
        .map_err(|e| {
            Failure::new(
                Code::DataLoss,
                "BACKUP_INVALID",
                format!("fetching the backup: {e}; take a new backup"),
            )
        })
    });
    tokio::select! {
        copied = copy => copied.map_err(|e| internal(&e))??,
        _ = cancel.cancelled() => return Err(cancelled()),
    }
    Ok(())
}

/// Room a staged restore takes beyond its files: the redo the mini
/// instance creates and the slack a filesystem needs.
const SPACE_MARGIN: u64 = 512 << 20;

/// Bytes a staged restore needs on its volume, from the manifest's file
/// sizes (plain, whatever was stored): the fetched backup plus apply-log's
/// working copy of it (a full copy where the filesystem cannot reflink),
/// plus a tenth and a margin.
pub fn space_needed(file_sizes: impl IntoIterator<Item = u64>) -> u64 {
    let files: u64 = file_sizes.into_iter().sum();
    files
        .saturating_mul(2)
        .saturating_add(files / 10)
        .saturating_add(SPACE_MARGIN)
}

/// Refuses, before a byte is fetched, a staged restore the volume has no
/// room for: running the live server's volume full is worse than no restore.
fn check_space(staging: &Path, file_sizes: impl Iterator<Item = u64>) -> Result<(), Failure> {
    let stat = nix::sys::statvfs::statvfs(staging)
        .map_err(|e| io_failure("measure the free space of", staging, &e.into()))?;
    let available = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    let needed = space_needed(file_sizes);
    match space_refusal(staging, needed, available) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

fn space_refusal(staging: &Path, needed: u64, available: u64) -> Option<Failure> {
    if available < needed {
        return Some(Failure::new(
            Code::FailedPrecondition,
            "INSUFFICIENT_SPACE",
            format!(
                "INSUFFICIENT_SPACE: staging this backup needs about {} MiB on the volume of {} \
                 ({} MiB free): grow the volume or free space, then stage again",
                needed >> 20,
                staging.display(),
                available >> 20
            ),
        ));
    }
    None
}

/// The local folder of a repository URL, or why there is none.
fn local_repository(url: &str) -> Result<PathBuf, Status> {
    if url.is_empty() {
        return Err(Status::invalid_argument("repository.url is required"));
    }
    let path = match url.split_once("://") {
        Some(("file", rest)) => {
            if !rest.starts_with('/') {
                return Err(Status::invalid_argument(format!(
                    "repository.url {url:?}: a file:// URL has an absolute path and no host, like file:///backups"
                )));
            }
            rest
        }
        Some((scheme, _)) => {
            return Err(Status::invalid_argument(format!(
                "repository.url: unknown scheme {scheme}://; use file:///path, s3://, gs:// or az://"
            )));
        }
        None => url,
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(Status::invalid_argument(format!(
            "repository.url {url:?} is relative; give an absolute path or a file:/// URL"
        )));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Status::invalid_argument(format!(
            "repository.url {url:?} must not contain .."
        )));
    }
    Ok(path)
}

/// The URL of a backup directory in a `file://` repository.
pub fn location_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// MySQL connection options: the agent's own, with the request's user and
/// password when it gives them.
pub(super) fn connect_options(
    creds: Option<&pb::MysqlCredentials>,
    defaults: &ConnectOptions,
) -> Result<ConnectOptions, Status> {
    let mut options = defaults.clone();
    if let Some(creds) = creds {
        if !creds.user.is_empty() {
            options.user = Some(creds.user.clone());
        }
        options.password = creds
            .password
            .as_ref()
            .map(|p| resolve_secret(p, "mysql.password"))
            .transpose()?;
    }
    Ok(options)
}

/// The value of a credential. Errors name the field and the file, never
/// the value.
fn resolve_secret(secret: &pb::SecretRef, field: &str) -> Result<Secret, Status> {
    match &secret.source {
        Some(pb::secret_ref::Source::Value(value)) => Ok(Secret::new(value.clone())),
        Some(pb::secret_ref::Source::File(path)) => {
            if !Path::new(path).is_absolute() {
                return Err(Status::invalid_argument(format!(
                    "{field}.file must be an absolute path"
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                Status::failed_precondition(format!(
                    "cannot read {field} from {path}: {e}; mount the Secret there or pass the value"
                ))
            })?;
            Ok(Secret::new(text.trim()))
        }
        None => Err(Status::invalid_argument(format!(
            "{field} is set but empty: give a value or a file"
        ))),
    }
}

/// Makes the backup directory. True when it is ours to remove after a
/// crash: we made it, or it was empty (the engine refuses any other).
fn claim_destination(dir: &Path) -> Result<bool, Failure> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::new(
                Code::FailedPrecondition,
                "TARGET",
                format!(
                    "cannot create the repository folder {}: {e}; check the volume",
                    parent.display()
                ),
            )
        })?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()))
        }
        Err(e) => Err(Failure::new(
            Code::FailedPrecondition,
            "TARGET",
            format!(
                "cannot create the backup folder {}: {e}; check the volume",
                dir.display()
            ),
        )),
    }
}

fn cancelled() -> Failure {
    Failure::new(Code::Cancelled, "CANCELLED", "cancelled")
}

fn internal(e: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        Code::Internal,
        "INTERNAL",
        format!("{e}; this is a bug: please report it"),
    )
}

fn io_failure(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(
        Code::Internal,
        "IO",
        format!(
            "cannot {what} {}: {e}; check the agent's volume",
            path.display()
        ),
    )
}

/// The gRPC code and stable reason of a MySQL error.
pub fn mysql_code(e: &mysql::Error) -> (Code, &'static str) {
    match e {
        mysql::Error::Connect { .. } | mysql::Error::Statement { .. } => {
            (Code::Unavailable, "MYSQL_UNAVAILABLE")
        }
        mysql::Error::MissingPrivilege { .. } => (Code::PermissionDenied, "MYSQL_PRIVILEGE"),
        mysql::Error::UnsupportedVersion { .. } => (Code::FailedPrecondition, "UNSUPPORTED"),
        mysql::Error::Unexpected { .. } => (Code::Internal, "MYSQL_UNEXPECTED"),
        mysql::Error::LockWaitTimeout { .. } => (Code::Unavailable, "LOCK_WAIT_TIMEOUT"),
    }
}

fn backup_failure(e: &backup::Error) -> Failure {
    use backup::CopyError;
    use backup::redo_copier::RedoCopyError;
    let (code, reason) = match e {
        backup::Error::Cancelled => return cancelled(),
        backup::Error::Mysql(e) => mysql_code(e),
        backup::Error::Target { .. } => (Code::FailedPrecondition, "TARGET"),
        backup::Error::Unsupported(_) => (Code::FailedPrecondition, "UNSUPPORTED"),
        backup::Error::Busy(_) => (Code::Unavailable, "SERVER_BUSY"),
        backup::Error::Copy(CopyError::CorruptPage { .. } | CopyError::NotTablespace { .. }) => {
            (Code::DataLoss, "DATA_DAMAGED")
        }
        backup::Error::Copy(_) | backup::Error::ListFiles(_) | backup::Error::Meta(_) => {
            (Code::Internal, "IO")
        }
        backup::Error::Redo(RedoCopyError::Overwritten { .. }) => {
            (Code::Aborted, "REDO_OVERWRITTEN")
        }
        backup::Error::Redo(RedoCopyError::Damaged { .. }) => (Code::DataLoss, "DATA_DAMAGED"),
        backup::Error::Redo(RedoCopyError::Cancelled) => return cancelled(),
        backup::Error::Redo(_) => (Code::Internal, "IO"),
        backup::Error::Repo(_) => (Code::FailedPrecondition, "REPOSITORY"),
        backup::Error::Store(StoreError::Object { .. }) => (Code::Unavailable, "REPOSITORY"),
        backup::Error::Store(StoreError::Io { .. }) => (Code::Internal, "IO"),
    };
    let advice = match reason {
        "MYSQL_UNAVAILABLE" => {
            "; check that mysqld runs and accepts the agent's credentials, then start a new backup"
        }
        "IO" | "REPOSITORY" => {
            "; check the repository (a volume: free space and permissions; an object store: \
             endpoint, credentials, bucket policy and quota), then start a new backup"
        }
        _ => "",
    };
    Failure::new(code, reason, format!("{e}{advice}"))
}

fn apply_log_failure(e: &prepare::Error) -> Failure {
    let (code, reason) = match e {
        prepare::Error::Cancelled { .. } => return cancelled(),
        // The archive cannot reach the target from this backup (a gap, a
        // point before the backup or past the archive): the message names it.
        prepare::Error::PointInTime(
            pitr::PitrError::Stream(_)
            | pitr::PitrError::Target(_)
            | pitr::PitrError::Archive(_)
            | pitr::PitrError::NoGtids,
        ) => (Code::FailedPrecondition, "TARGET_UNREACHABLE"),
        prepare::Error::Unsupported(_) => (Code::FailedPrecondition, "UNSUPPORTED"),
        prepare::Error::Backup(_)
        | prepare::Error::Meta(_)
        | prepare::Error::SizeMismatch { .. } => (Code::DataLoss, "BACKUP_INVALID"),
        prepare::Error::File(_) => (Code::Internal, "IO"),
        _ => (Code::Internal, "APPLY_LOG"),
    };
    Failure::new(code, reason, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::for_tests("/state".into())
    }

    fn request(url: &str) -> pb::StartBackupRequest {
        pb::StartBackupRequest {
            operation_id: "0c1d".into(),
            repository: Some(pb::Repository {
                url: url.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_file_repository_maps_to_a_folder_named_after_the_operation() {
        for url in ["file:///backups", "/backups"] {
            let plan = backup_plan(&request(url), &config()).unwrap();
            assert_eq!(plan.dir.as_deref(), Some(Path::new("/backups/0c1d")));
            assert_eq!(plan.options.repository, "/backups/0c1d");
            assert!(!plan.options.timestamped);
            assert_eq!(plan.options.parallel, DEFAULT_PARALLEL);
            assert!(plan.options.redo_consumer);
        }
        let mut named = request("file:///backups");
        named.backup_name = "nightly-1".into();
        named.options = Some(pb::BackupOptions {
            throttle_bytes_per_second: 4 << 20,
            parallel: 2,
            ..Default::default()
        });
        let plan = backup_plan(&named, &config()).unwrap();
        assert_eq!(plan.dir.as_deref(), Some(Path::new("/backups/nightly-1")));
        assert_eq!(
            (plan.options.throttle, plan.options.parallel),
            (Some(4 << 20), 2)
        );
    }

    #[test]
    fn object_storage_and_compression_map_to_the_engine() {
        let mut s3 = request("s3://bucket/prefix");
        s3.options = Some(pb::BackupOptions {
            compression: pb::Compression::Zstd as i32,
            ..Default::default()
        });
        let plan = backup_plan(&s3, &config()).unwrap();
        assert_eq!(plan.dir, None);
        assert!(
            plan.location.starts_with("s3://bucket/prefix/"),
            "{}",
            plan.location
        );
        assert_eq!(plan.options.repository, plan.location);
        assert_eq!(
            plan.options.transform.zstd_level,
            Some(crate::repo::chunk::DEFAULT_ZSTD_LEVEL)
        );
        assert!(plan.options.spool_dir.is_some());
        for bad in ["", "backups", "file://host/b", "ftp://x/y", "/a/../b"] {
            assert_eq!(
                backup_plan(&request(bad), &config()).unwrap_err().code(),
                Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn an_incremental_asks_for_its_method_and_a_backup_for_page_tracking() {
        let mut request = request("s3://bucket/db");
        request.backup_name = "inc-1".into();
        let method_of = |request: &pb::StartBackupRequest| {
            backup_plan(request, &config())
                .map(|plan| plan.options.incremental.and_then(|i| i.method))
        };
        for (asked, method) in [
            (pb::IncrementalMethod::Auto, None),
            (
                pb::IncrementalMethod::PageTrack,
                Some(meta::ChangedPages::PageTracking),
            ),
            (
                pb::IncrementalMethod::FullScan,
                Some(meta::ChangedPages::FullScan),
            ),
        ] {
            request.incremental = Some(pb::IncrementalBackup {
                base_backup_name: "full".into(),
                method: asked as i32,
            });
            assert_eq!(method_of(&request).unwrap(), method, "{asked:?}");
        }
        request.incremental = Some(pb::IncrementalBackup {
            base_backup_name: "full".into(),
            method: 7,
        });
        let refused = method_of(&request).unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains("incremental.method"),
            "{refused:?}"
        );

        let mut full = self::request("s3://bucket/db");
        assert!(!backup_plan(&full, &config()).unwrap().options.page_tracking);
        full.options = Some(pb::BackupOptions {
            start_page_tracking: true,
            ..Default::default()
        });
        assert!(backup_plan(&full, &config()).unwrap().options.page_tracking);
    }

    #[test]
    fn gcs_and_azure_credentials_reach_the_object_store_options_and_never_its_debug() {
        let value = |v: &str| pb::SecretRef {
            source: Some(pb::secret_ref::Source::Value(v.into())),
        };
        let gcs = pb::Repository {
            url: "gs://bucket/db".into(),
            credentials: Some(pb::repository::Credentials::Gcs(pb::GcsCredentials {
                service_account_key: Some(value("{\"private_key\": \"gcs-secret\"}")),
            })),
            ..Default::default()
        };
        let options = target(&gcs).unwrap().options;
        assert!(
            options
                .gcs_service_account_key
                .as_ref()
                .is_some_and(|k| k.expose().contains("gcs-secret"))
        );
        assert!(!format!("{options:?}").contains("gcs-secret"));

        let azure = pb::Repository {
            url: "az://container/db".into(),
            options: [
                ("storage_account".to_owned(), "acct1".to_owned()),
                (
                    "endpoint".to_owned(),
                    "https://acct1.blob.local.azs".to_owned(),
                ),
            ]
            .into(),
            credentials: Some(pb::repository::Credentials::Azure(pb::AzureCredentials {
                access_key: Some(value("azure-secret")),
            })),
        };
        let options = target(&azure).unwrap().options;
        assert_eq!(options.azure_account.as_deref(), Some("acct1"));
        assert_eq!(
            options.azure_endpoint.as_deref(),
            Some("https://acct1.blob.local.azs")
        );
        assert_eq!(
            options.azure_access_key.as_ref().map(|k| k.expose()),
            Some("azure-secret")
        );
        assert!(!format!("{options:?}").contains("azure-secret"));
    }

    #[test]
    fn a_stage_without_room_for_two_copies_is_refused_with_the_space_it_needs() {
        let needed = space_needed([600 << 20, 400 << 20]);
        assert_eq!(needed, (2000 << 20) + (100 << 20) + SPACE_MARGIN);
        assert!(space_refusal(Path::new("/data/s"), needed, needed).is_none());
        let refused = space_refusal(Path::new("/data/s"), needed, 1 << 30).unwrap();
        assert_eq!(refused.reason, "INSUFFICIENT_SPACE");
        assert_eq!(refused.code, Code::FailedPrecondition as i32);
        assert!(
            refused.message.contains("2612 MiB") && refused.message.contains("1024 MiB free"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn credentials_come_from_the_request_or_a_file_and_errors_do_not_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        let by_file = pb::MysqlCredentials {
            user: "backup".into(),
            password: Some(pb::SecretRef {
                source: Some(pb::secret_ref::Source::File(file.display().to_string())),
            }),
        };
        let options = connect_options(Some(&by_file), &ConnectOptions::default()).unwrap();
        assert_eq!(options.user.as_deref(), Some("backup"));
        assert_eq!(options.password.unwrap().expose(), "from-file");

        let missing = pb::SecretRef {
            source: Some(pb::secret_ref::Source::File("/nowhere/password".into())),
        };
        let err = resolve_secret(&missing, "mysql.password").unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(
            err.message().contains("/nowhere/password"),
            "{}",
            err.message()
        );
    }
}
