//! The datadir swap against real MySQL 9.7 servers: a staged restore armed
//! and swapped in by the real `innoxide-agent init` binary, killed at every
//! step boundary and finished by the next run, reverted, and a restore into
//! a new, empty volume from S3. Every datadir it leaves is judged by a
//! server started on it: gtid_executed and CHECKSUM TABLE against the
//! source at the backup point (the backup is taken with no writes running,
//! so the source's checksums right then are the backup's).

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Instant, SystemTime};

use innoxide_agent::backup::{self, Progress};
use innoxide_agent::prepare::{self, ApplyLogOptions};
use innoxide_agent::repo::Transform;
use innoxide_agent::swap::{self, Armed};
use innoxide_proto::restore_spec::{RepositorySpec, RestoreSpec, S3CredentialsSpec, SecretSource};
use innoxide_testkit::{MysqlServer, S3Server, Sysbench};
use tokio_util::sync::CancellationToken;

const AGENT: &str = env!("CARGO_BIN_EXE_innoxide-agent");
const STATE: &str = ".innoxide-agent";

/// Small servers: the smallest redo capacity keeps each datadir copy short.
fn builder() -> innoxide_testkit::MysqlBuilder {
    MysqlServer::builder()
        .redo_capacity(8 << 20)
        .buffer_pool(64 << 20)
}

/// What the source was at the backup point, and after it.
struct Source {
    server: MysqlServer,
    tables: Vec<String>,
    backup_gtid: String,
    backup_sums: BTreeMap<String, u64>,
    after_gtid: String,
    after_sums: BTreeMap<String, u64>,
    server_uuid: String,
}

/// A source with sysbench data, a backup of it (no writes running), more
/// writes after the backup, and the backup fetched into
/// `<datadir>/.innoxide-agent/staging/<id>/backup` and prepared there, as
/// StageRestore leaves it. Returns the prepared dir.
async fn staged_source(id: &str) -> (Source, PathBuf) {
    let server = builder().start().await.unwrap();
    let bench = Sysbench::prepare(&server, 2, 2_000).await.unwrap();
    let tables = bench.table_names();
    let repo = tempfile::tempdir().unwrap();
    let raw = repo.path().join("full");
    let options = support::local_backup_options(&server, &raw);
    let report = backup::run(&options, Progress::new(), CancellationToken::new())
        .await
        .unwrap();
    let backup_gtid = report.manifest.gtid_executed.clone();
    assert_eq!(server.gtid_executed().await.unwrap(), backup_gtid);
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    let backup_sums = server.checksum_tables(&names).await.unwrap();

    server
        .exec("UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id <= 500")
        .await
        .unwrap();
    server
        .exec("CREATE TABLE sbtest.after_backup (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let after_gtid = server.gtid_executed().await.unwrap();
    let after_sums = server.checksum_tables(&names).await.unwrap();
    assert_ne!(after_gtid, backup_gtid);
    assert_ne!(after_sums, backup_sums);
    let server_uuid = server.query_scalar("SELECT @@server_uuid").await.unwrap();

    let backup_dir = server
        .datadir()
        .join(STATE)
        .join("staging")
        .join(id)
        .join("backup");
    std::fs::create_dir_all(backup_dir.parent().unwrap()).unwrap();
    copy_tree(&raw, &backup_dir);
    let prepared = prepare::apply_log(
        &ApplyLogOptions {
            key: None,
            backup_dir: backup_dir.clone(),
            mysqld: Some(server.bin("mysqld")),
            force: false,
            buffer_pool: 64 << 20,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap()
    .prepared_dir;
    let source = Source {
        server,
        tables,
        backup_gtid,
        backup_sums,
        after_gtid,
        after_sums,
        server_uuid,
    };
    (source, prepared)
}

fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `innoxide-agent init` with `args` (and the test hook's env, if any).
async fn init(datadir: &Path, args: &[&str], abort_at: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(AGENT);
    command
        .arg("init")
        .arg(format!("--datadir={}", datadir.display()))
        .args(args)
        .env("INNOXIDE_LOG_JSON", "false")
        .env_remove(swap::exchange::ABORT_AT_ENV)
        .env_remove("INNOXIDE_STATE_DIR")
        .env_remove("INNOXIDE_RESTORE_SPEC")
        .kill_on_drop(true);
    if let Some(point) = abort_at {
        command.env(swap::exchange::ABORT_AT_ENV, point);
    }
    command.output().await.unwrap()
}

fn assert_success(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "init failed ({}):\n{stderr}",
        out.status
    );
    stderr
}

fn arm(datadir: &Path, id: &str, prepared: &Path, gtid: &str) {
    swap::arm(
        &datadir.join(STATE),
        Armed {
            operation_id: id.into(),
            prepared_dir: prepared.to_owned(),
            gtid_executed: gtid.into(),
            armed_at: SystemTime::now(),
        },
    )
    .unwrap();
}

/// The server's tables and GTID set, as judged by a server on the datadir.
async fn assert_holds(
    server: &MysqlServer,
    tables: &[String],
    gtid: &str,
    sums: &BTreeMap<String, u64>,
) {
    assert_eq!(server.gtid_executed().await.unwrap(), gtid);
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    assert_eq!(&server.checksum_tables(&names).await.unwrap(), sums);
}

async fn after_backup_table_exists(server: &MysqlServer) -> bool {
    let n: u64 = server
        .query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = 'sbtest' AND table_name = 'after_backup'",
        )
        .await
        .unwrap();
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_armed_swap_replaces_the_datadir_keeps_the_old_one_and_reverts() {
    let started = Instant::now();
    let (mut source, prepared) = staged_source("r1").await;
    let datadir = source.server.datadir().to_owned();
    let state = datadir.join(STATE);
    arm(&datadir, "r1", &prepared, &source.backup_gtid);

    // While mysqld runs on the datadir, init refuses and moves nothing.
    let refused = init(&datadir, &[], None).await;
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("locked by process"),
        "{}",
        text(&refused.stderr)
    );
    assert!(datadir.join("ibdata1").exists() && !state.join("previous").exists());

    source.server.stop().await.unwrap();
    let out = assert_success(&init(&datadir, &[], None).await);
    println!("{out}");
    assert!(out.contains("swap of r1 done"), "{out}");
    // Only the server's files came in: apply-log's own stay behind.
    for own in [
        "xtrabackup_checkpoints",
        "mysql-stderr",
        "innoxide-mysqld.cnf",
    ] {
        assert!(
            !datadir.join(own).exists(),
            "{own} was moved into the datadir"
        );
    }
    assert!(datadir.join("#innodb_redo").is_dir());
    let previous = state.join("previous/r1");
    assert!(previous.join("ibdata1").is_file() && previous.join("auto.cnf").is_file());
    assert!(
        !state.join("staging/r1").exists(),
        "the staging folder is removed"
    );
    let swapped = swap::state(&state).unwrap();
    assert_eq!(swapped.armed_operation_id, None);
    assert_eq!(
        swapped.last.as_ref().unwrap().gtid_executed,
        source.backup_gtid
    );

    // mysqld's startup scan must not see previous/: its .ibd files have the
    // same tablespace ids as the datadir's. It skips the hidden state dir.
    source.server.restart().await.unwrap();
    assert!(previous.join("mysql.ibd").is_file());
    assert_holds(
        &source.server,
        &source.tables,
        &source.backup_gtid,
        &source.backup_sums,
    )
    .await;
    assert!(!after_backup_table_exists(&source.server).await);
    let uuid: String = source
        .server
        .query_scalar("SELECT @@server_uuid")
        .await
        .unwrap();
    assert_eq!(
        uuid, source.server_uuid,
        "an in-place restore keeps the server's identity"
    );

    // Nothing armed: init says so and changes nothing.
    source.server.stop().await.unwrap();
    let idle = assert_success(&init(&datadir, &[], None).await);
    assert!(idle.contains("nothing to do"), "{idle}");

    // Revert: the old datadir comes back with everything written after the backup.
    let out = assert_success(&init(&datadir, &["--revert=r1"], None).await);
    assert!(out.contains("revert of r1 done"), "{out}");
    assert!(!previous.exists() && state.join("reverted/r1/ibdata1").is_file());
    source.server.restart().await.unwrap();
    assert_holds(
        &source.server,
        &source.tables,
        &source.after_gtid,
        &source.after_sums,
    )
    .await;
    assert!(after_backup_table_exists(&source.server).await);
    source.server.stop().await.unwrap();
    // A second revert of the same swap is done already.
    assert_success(&init(&datadir, &["--revert=r1"], None).await);
    println!("swap + revert: {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_killed_at_any_step_finishes_on_the_next_run() {
    let started = Instant::now();
    let (mut source, prepared) = staged_source("k1").await;
    source.server.stop().await.unwrap();
    let template = source.server.datadir().to_owned();
    let relative = prepared.strip_prefix(&template).unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let points = [
        "before-journal",
        "after-journal",
        "move-out-3",
        "between-phases",
        "move-in-3",
        "before-record",
        "before-cleanup",
    ];
    for point in points {
        let step = Instant::now();
        let datadir = work.path().join(point);
        copy_tree(&template, &datadir);
        arm(
            &datadir,
            "k1",
            &datadir.join(&relative),
            &source.backup_gtid,
        );

        let killed = init(&datadir, &[], Some(point)).await;
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{point}: init was not killed at the point:\n{}",
            text(&killed.stderr)
        );
        let out = assert_success(&init(&datadir, &[], None).await);
        assert!(out.contains("swap of k1 done"), "{point}: {out}");
        let state = swap::state(&datadir.join(STATE)).unwrap();
        assert_eq!(state.armed_operation_id, None, "{point}");
        assert!(!state.begun, "{point}");
        assert!(
            datadir.join(STATE).join("previous/k1/ibdata1").is_file(),
            "{point}"
        );

        let server = builder()
            .existing_datadir(&datadir)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{point}: no server starts on the datadir: {e:#}"));
        assert_holds(
            &server,
            &source.tables,
            &source.backup_gtid,
            &source.backup_sums,
        )
        .await;
        drop(server);
        std::fs::remove_dir_all(&datadir).unwrap();
        println!("{point}: {:.1?}", step.elapsed());
    }
    println!("kill points: {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_volume_is_restored_from_s3_once_and_a_used_one_is_refused() {
    let started = Instant::now();
    let s3 = S3Server::start().await.unwrap();
    let server = builder().start().await.unwrap();
    let bench = Sysbench::prepare(&server, 2, 2_000).await.unwrap();
    let tables = bench.table_names();
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    let repo = support::s3_options(&s3);
    let location = format!("s3://{}/cluster-a/full-1", s3.bucket());
    let options = support::backup_options(&server, location, repo, Transform::default(), false);
    let report = backup::run(&options, Progress::new(), CancellationToken::new())
        .await
        .unwrap();
    let gtid = report.manifest.gtid_executed.clone();
    assert_eq!(server.gtid_executed().await.unwrap(), gtid);
    let sums = server.checksum_tables(&names).await.unwrap();
    let source_uuid: String = server.query_scalar("SELECT @@server_uuid").await.unwrap();

    let files = tempfile::tempdir().unwrap();
    let secret = files.path().join("s3-secret");
    std::fs::write(&secret, format!("{}\n", s3.secret_key())).unwrap();
    let spec = RestoreSpec {
        operation_id: "new-1".into(),
        repository: RepositorySpec {
            url: format!("s3://{}/cluster-a", s3.bucket()),
            options: [
                ("endpoint".to_owned(), s3.endpoint()),
                ("region".to_owned(), s3.region().to_owned()),
            ]
            .into(),
            s3: Some(S3CredentialsSpec {
                access_key_id: Some(SecretSource::Value(s3.access_key().to_owned())),
                secret_access_key: Some(SecretSource::File(secret.display().to_string())),
                session_token: None,
            }),
            gcs_service_account_key: None,
            azure_access_key: None,
        },
        backup_name: "full-1".into(),
        encryption_key: None,
        use_memory_bytes: 64 << 20,
        point_in_time: None,
    };
    let spec_file = files.path().join("restore.json");
    std::fs::write(&spec_file, spec.to_json()).unwrap();
    let spec_arg = format!("--restore-spec={}", spec_file.display());
    let mysqld_arg = format!("--mysqld={}", server.bin("mysqld").display());

    // A new volume: empty but for what a filesystem puts there.
    let volume = tempfile::tempdir().unwrap();
    let datadir = volume.path().join("data");
    std::fs::create_dir_all(datadir.join("lost+found")).unwrap();
    // Killed halfway through placing the files: the next run finishes.
    let killed = init(&datadir, &[&spec_arg, &mysqld_arg], Some("move-in-3")).await;
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed.stderr));
    let out = assert_success(&init(&datadir, &[&spec_arg, &mysqld_arg], None).await);
    assert!(
        out.contains("restore of new-1 done (finished an interrupted run)"),
        "{out}"
    );
    assert!(datadir.join("lost+found").is_dir());
    assert!(
        !datadir.join("auto.cnf").exists(),
        "a clone gets its own server UUID"
    );
    assert!(!datadir.join(STATE).join("staging/new-1").exists());

    let mut restored = builder()
        .server_id(2)
        .existing_datadir(&datadir)
        .start()
        .await
        .unwrap();
    assert_holds(&restored, &tables, &gtid, &sums).await;
    let uuid: String = restored.query_scalar("SELECT @@server_uuid").await.unwrap();
    assert_ne!(uuid, source_uuid);
    restored.stop().await.unwrap();

    // The pod restarts: the restore is done, nothing happens.
    let again = assert_success(&init(&datadir, &[&spec_arg, &mysqld_arg], None).await);
    assert!(again.contains("done on this volume already"), "{again}");
    // The MySQLRestore and its spec Secret are deleted later: the pod still
    // starts on the volume the restore filled.
    let gone_spec = format!(
        "--restore-spec={}",
        datadir.join("no-such-spec.json").display()
    );
    let without_spec = assert_success(&init(&datadir, &[&gone_spec, &mysqld_arg], None).await);
    assert!(without_spec.contains("nothing to do"), "{without_spec}");
    restored.restart().await.unwrap();
    assert_eq!(restored.gtid_executed().await.unwrap(), gtid);
    drop(restored);

    // ... but an empty volume without its spec is not started as an empty server.
    let empty = tempfile::tempdir().unwrap();
    let no_spec = init(empty.path(), &[&gone_spec, &mysqld_arg], None).await;
    assert!(!no_spec.status.success());
    assert!(
        text(&no_spec.stderr).contains("is missing and the datadir"),
        "{}",
        text(&no_spec.stderr)
    );

    // A volume with data and no record of this restore: refused, untouched.
    let used = tempfile::tempdir().unwrap();
    std::fs::write(used.path().join("ibdata1"), b"someone's data").unwrap();
    let refused = init(used.path(), &[&spec_arg, &mysqld_arg], None).await;
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("not empty"),
        "{}",
        text(&refused.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(used.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["ibdata1"]);
    assert_eq!(
        std::fs::read(used.path().join("ibdata1")).unwrap(),
        b"someone's data"
    );
    println!("new volume from S3: {:.1?}", started.elapsed());
}
