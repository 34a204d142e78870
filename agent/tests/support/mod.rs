//! Helpers shared by the agent's integration tests (each test file is its
//! own crate and includes this module; not every file uses every helper).
#![allow(dead_code)]

use std::path::Path;

use innoxide_agent::backup::BackupOptions;
use innoxide_agent::mysql::ConnectOptions;
use innoxide_agent::repo::{RepoOptions, Transform};
use innoxide_testkit::MysqlServer;

/// Does the server hold a backup lock, or a registered redo log consumer?
/// Asked of the server itself, not of the engine.
pub async fn server_holds_backup_state(server: &MysqlServer) -> (bool, bool) {
    let locks: u64 = server
        .query_scalar(
            "SELECT COUNT(*) FROM performance_schema.metadata_locks WHERE OBJECT_TYPE = 'BACKUP LOCK'",
        )
        .await
        .unwrap();
    let mut conn = server.conn().await.unwrap();
    let consumer = innoxide_agent::mysql::redo_consumer_registered(&mut conn)
        .await
        .unwrap();
    (locks > 0, consumer)
}

/// A refused backup left no folder at `target`, and neither the backup lock
/// nor a redo log consumer on the server.
pub async fn assert_refused_with_nothing_left(server: &MysqlServer, target: &Path) {
    assert!(
        !target.exists(),
        "a refused backup left {}",
        target.display()
    );
    assert_eq!(server_holds_backup_state(server).await, (false, false));
}

/// The repository options that sign in to the in-process S3 server.
pub fn s3_options(s3: &innoxide_testkit::S3Server) -> RepoOptions {
    RepoOptions {
        s3_endpoint: Some(s3.endpoint()),
        s3_region: Some(s3.region().to_owned()),
        s3_access_key_id: Some(s3.access_key().to_owned()),
        s3_secret_access_key: Some(innoxide_agent::secret::Secret::new(s3.secret_key())),
        ..RepoOptions::default()
    }
}

/// Backup options for `server` as root over its socket, into `repository`.
pub fn backup_options(
    server: &MysqlServer,
    repository: String,
    repo: RepoOptions,
    transform: Transform,
    timestamped: bool,
) -> BackupOptions {
    BackupOptions {
        connect: ConnectOptions {
            socket: Some(server.socket().to_owned()),
            user: Some("root".into()),
            ..Default::default()
        },
        repository,
        repo,
        transform,
        spool_dir: None,
        timestamped,
        parallel: 2,
        throttle: None,
        adaptive_pacing: true,
        slave_info: false,
        redo_consumer: true,
        locks: Default::default(),
        incremental: None,
        page_tracking: false,
    }
}

/// A plain, untimestamped backup into a local folder.
pub fn local_backup_options(server: &MysqlServer, dir: &Path) -> BackupOptions {
    backup_options(
        server,
        dir.display().to_string(),
        RepoOptions::default(),
        Transform::default(),
        false,
    )
}

const AGENT: &str = env!("CARGO_BIN_EXE_innoxide-agent");

/// Runs the agent binary; returns its output whatever the exit status.
pub async fn agent(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(AGENT)
        .args(args)
        .env("INNOXIDE_LOG_JSON", "false")
        .env_remove("INNOXIDE_MYSQLD")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Process output as text, for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `copy-back` of the prepared backup in `backup_dir` into the new
/// `datadir` with a new server UUID, then `server` started on it.
pub async fn restore_into(
    backup_dir: &Path,
    datadir: &Path,
    server: innoxide_testkit::MysqlBuilder,
) -> MysqlServer {
    let (dir, target) = (
        backup_dir.display().to_string(),
        datadir.display().to_string(),
    );
    let out = agent(&[
        "copy-back",
        "--backup-dir",
        &dir,
        "--datadir",
        &target,
        "--new-server-uuid",
    ])
    .await;
    assert!(out.status.success(), "copy-back:\n{}", text(&out.stderr));
    server.existing_datadir(datadir).start().await.unwrap()
}
