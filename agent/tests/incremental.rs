//! Incremental backups against a real MySQL 9.7: a full backup, DDL of
//! every kind and writes, incremental 1, more DDL under sysbench load,
//! incremental 2; the chain applied (apply-log, then each incremental in
//! order) and copied back must be exactly the source at incremental 2's
//! GTID set (the consistency oracle). The chain runs twice: with the
//! changed pages found by a full scan, and by the server's page tracking
//! (started by the full backup's `--page-tracking`). An incremental
//! applied out of order is refused with what was expected, and nothing is
//! changed; `--incremental=page-track` is refused, naming why, when the
//! server's tracking does not cover the base. A chain also works across a
//! repository: a compressed, encrypted full backup in S3 and a compressed,
//! encrypted incremental in a folder that names it by URL.

mod support;
use support::text;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use innoxide_agent::meta::{ChangedPages, FileKind, Manifest};
use innoxide_testkit::oracle::{self, OracleInput};
use innoxide_testkit::{MysqlServer, Sysbench, mysql_prefix};

const AGENT: &str = env!("CARGO_BIN_EXE_innoxide-agent");

/// Prints how long each step took (seen with `--nocapture`).
struct Steps {
    started: Instant,
    last: Instant,
}

impl Steps {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
        }
    }

    fn done(&mut self, step: &str) {
        let now = Instant::now();
        println!(
            "[incremental] {step}: {:.1?} (total {:.1?})",
            now - self.last,
            now - self.started
        );
        self.last = now;
    }
}

async fn agent(args: &[&str]) -> Output {
    tokio::process::Command::new(AGENT)
        .args(args)
        .env("INNOXIDE_LOG_JSON", "false")
        .env(
            "INNOXIDE_MYSQLD",
            mysql_prefix().unwrap().join("bin/mysqld"),
        )
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

async fn agent_ok(args: &[&str]) -> String {
    let out = agent(args).await;
    assert!(
        out.status.success(),
        "innoxide-agent {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// A backup with the CLI into `dir`; `extra` makes it incremental.
async fn backup(server: &MysqlServer, dir: &Path, extra: &[&str]) -> Manifest {
    let socket = server.socket().display().to_string();
    let dir_arg = dir.display().to_string();
    let mut args = vec![
        "backup",
        "--socket",
        &socket,
        "--user",
        "root",
        "--no-timestamp",
        "--parallel",
        "2",
        "--backup-dir",
        &dir_arg,
    ];
    args.extend_from_slice(extra);
    agent_ok(&args).await;
    innoxide_agent::verify::read_manifest(dir).unwrap()
}

fn stored_bytes(manifest: &Manifest) -> u64 {
    manifest
        .files
        .iter()
        .map(|f| f.stored_size.unwrap_or(f.size))
        .sum()
}

/// What a refused step must leave: every raw backup verifying, and the
/// prepared datadir as it was (its seal and chain untouched).
fn assert_untouched(backups: &[&Path], prepared_seal: &str) {
    for dir in backups {
        innoxide_agent::verify::verify_dir(dir)
            .unwrap_or_else(|e| panic!("{} no longer verifies: {e}", dir.display()));
    }
    let seal = std::fs::read_to_string(
        backups[0]
            .join("prepared")
            .join(innoxide_agent::prepare::sums::SUMS_FILE),
    )
    .unwrap();
    assert_eq!(seal, prepared_seal, "the prepared datadir changed");
}

fn seal_of(full: &Path) -> String {
    std::fs::read_to_string(
        full.join("prepared")
            .join(innoxide_agent::prepare::sums::SUMS_FILE),
    )
    .unwrap()
}

async fn exec_all(server: &MysqlServer, statements: &[&str]) {
    for statement in statements {
        server
            .exec(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// `n` rows of 200 bytes into `table` (id, note).
fn fill(table: &str, n: u32) -> String {
    format!(
        "INSERT INTO {table} (id, note) WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 \
         FROM s WHERE i < {n}) SELECT i, REPEAT(CHAR(65 + i % 26), 200) FROM s"
    )
}

/// The server's page lists (`#meb/*.idx`) left in its datadir.
fn page_lists_left(server: &MysqlServer) -> Vec<String> {
    std::fs::read_dir(server.datadir().join("#meb"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_by_full_scan_with_ddl_under_load_restores_exactly_the_last_incremental() {
    chain_with_ddl_under_load(ChangedPages::FullScan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_by_page_tracking_with_ddl_under_load_restores_exactly_the_last_incremental() {
    chain_with_ddl_under_load(ChangedPages::PageTracking).await;
}

/// The chain, its changed pages found by `method`: by page tracking, the
/// full backup starts it (`--page-tracking`), incremental 1 uses it by
/// default and incremental 2 asks for it (`--incremental=page-track`); by
/// full scan, the server has no tracking and incremental 2 asks for the
/// scan (`--incremental=full-scan`).
async fn chain_with_ddl_under_load(method: ChangedPages) {
    let by_tracking = method == ChangedPages::PageTracking;
    let mut steps = Steps::new();
    let source = MysqlServer::builder()
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    let bench = Sysbench::prepare(&source, 2, 5_000).await.unwrap();
    source
        .exec("SET GLOBAL cte_max_recursion_depth = 100000; CREATE DATABASE shop")
        .await
        .unwrap();
    for table in [
        "kept",
        "dropped",
        "renamed",
        "truncated",
        "forced",
        "indexed",
    ] {
        source
            .exec(&format!(
                "CREATE TABLE shop.{table} (id INT PRIMARY KEY, note VARCHAR(255), n INT DEFAULT 0)"
            ))
            .await
            .unwrap();
        source
            .exec(&fill(&format!("shop.{table}"), 3000))
            .await
            .unwrap();
    }
    steps.done("source: 2 x 5k sysbench rows, 6 tables of 3k rows");

    let work = tempfile::tempdir().unwrap();
    let full = work.path().join("full");
    let inc1 = work.path().join("inc1");
    let inc2 = work.path().join("inc2");
    let full_options: &[&str] = if by_tracking {
        &["--page-tracking"]
    } else {
        &[]
    };
    let full_manifest = backup(&source, &full, full_options).await;
    assert_eq!(full_manifest.page_tracking_lsn.is_some(), by_tracking);
    steps.done("full backup");

    // Every kind of DDL, and writes, between the full and incremental 1.
    exec_all(
        &source,
        &[
            "CREATE TABLE shop.created (id INT PRIMARY KEY, note VARCHAR(255), n INT DEFAULT 0)",
            &fill("shop.created", 2000),
            "DROP TABLE shop.dropped",
            "RENAME TABLE shop.renamed TO shop.renamed_once",
            "TRUNCATE TABLE shop.truncated",
            &fill("shop.truncated", 500),
            "ALTER TABLE shop.forced FORCE",
            // A sorted index build: pages written without redo.
            "ALTER TABLE shop.indexed ADD INDEX by_note (note), ALGORITHM=INPLACE",
            "UPDATE shop.kept SET n = n + 1 WHERE id % 3 = 0",
            "UPDATE shop.renamed_once SET n = 7 WHERE id < 100",
        ],
    )
    .await;
    bench.run(2, Duration::from_secs(3)).await.unwrap();
    let inc1_manifest = backup(
        &source,
        &inc1,
        &[
            "--incremental",
            &format!("--incremental-basedir={}", full.display()),
        ],
    )
    .await;
    steps.done("DDL, writes, incremental 1 (innobackupex spelling)");

    // More DDL while sysbench writes, and incremental 2 during the load.
    let load = bench.run_background(2, Duration::from_secs(10)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    exec_all(
        &source,
        &[
            "RENAME TABLE shop.renamed_once TO shop.renamed_twice",
            "ALTER TABLE shop.created ADD INDEX by_n (n)",
            "ALTER TABLE shop.kept FORCE",
            "TRUNCATE TABLE shop.created",
            &fill("shop.created", 700),
            "CREATE TABLE shop.late (id INT PRIMARY KEY, note VARCHAR(255), n INT DEFAULT 0)",
            &fill("shop.late", 1000),
            "DELETE FROM shop.indexed WHERE id % 2 = 0",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let inc2_manifest = backup(
        &source,
        &inc2,
        &[
            if by_tracking {
                "--incremental=page-track"
            } else {
                "--incremental=full-scan"
            },
            &format!("--incremental-base=dir:{}", inc1.display()),
        ],
    )
    .await;
    let report = load.wait().await.unwrap();
    assert!(report.transactions > 0, "the load ran: {report:?}");
    steps.done("DDL under load, incremental 2 (mysqlbackup spelling)");

    // What the incrementals hold.
    for (name, manifest, base) in [
        ("inc1", &inc1_manifest, &full_manifest),
        ("inc2", &inc2_manifest, &inc1_manifest),
    ] {
        let incremental = manifest.incremental.as_ref().expect("an incremental");
        assert_eq!(manifest.backup_type, "incremental");
        assert_eq!(
            incremental.method, method,
            "{name} found its pages by {method:?}"
        );
        assert_eq!(manifest.redo.from_lsn, base.redo.to_lsn);
        assert_eq!(incremental.since_lsn, base.redo.start_checkpoint_lsn);
        let checkpoints =
            std::fs::read_to_string(work.path().join(name).join("xtrabackup_checkpoints")).unwrap();
        assert!(
            checkpoints.contains("backup_type = incremental"),
            "{checkpoints}"
        );
        assert!(
            checkpoints.contains(&format!("from_lsn = {}", base.redo.to_lsn)),
            "{checkpoints}"
        );
        let said = format!("incremental_method = {}", method.as_str());
        assert!(checkpoints.contains(&said), "{checkpoints}");
        let info = std::fs::read_to_string(work.path().join(name).join("xtrabackup_info")).unwrap();
        assert!(info.contains(&said), "{info}");
        let deltas = manifest
            .files
            .iter()
            .filter(|f| f.kind == FileKind::Delta)
            .count();
        println!(
            "{name}: {} bytes stored ({} deltas) against the full's {} bytes",
            stored_bytes(manifest),
            deltas,
            stored_bytes(&full_manifest)
        );
        assert!(deltas > 0, "{name} stores changed pages as deltas");
        assert!(stored_bytes(manifest) < stored_bytes(&full_manifest));
    }
    assert_eq!(
        page_lists_left(&source),
        Vec::<String>::new(),
        "the server's page lists are removed"
    );
    let whole = |manifest: &Manifest, path: &str| {
        let t = manifest
            .incremental
            .as_ref()
            .unwrap()
            .tablespaces
            .iter()
            .find(|t| t.path == path)
            .unwrap_or_else(|| panic!("{path} is not listed"))
            .clone();
        !t.delta
    };
    assert!(
        whole(&inc1_manifest, "shop/created.ibd"),
        "a new table is copied whole"
    );
    assert!(
        whole(&inc1_manifest, "shop/truncated.ibd"),
        "TRUNCATE gives a new space id"
    );
    assert!(
        !whole(&inc1_manifest, "shop/renamed_once.ibd"),
        "a rename keeps its pages"
    );
    assert!(
        !inc1_manifest
            .incremental
            .as_ref()
            .unwrap()
            .tablespaces
            .iter()
            .any(|t| t.path == "shop/dropped.ibd"),
        "a dropped table is not listed"
    );

    // apply-log on the full, then the incrementals: out of order first.
    let full_arg = full.display().to_string();
    let (inc1_arg, inc2_arg) = (inc1.display().to_string(), inc2.display().to_string());
    agent_ok(&[
        "apply-log",
        "--backup-dir",
        &full_arg,
        "--use-memory",
        "128M",
    ])
    .await;
    steps.done("apply-log of the full");
    let seal = seal_of(&full);
    let out = agent(&[
        "apply-incremental-backup",
        "--backup-dir",
        &full_arg,
        "--incremental-backup-dir",
        &inc2_arg,
    ])
    .await;
    let err = text(&out.stderr);
    assert!(!out.status.success(), "incremental 2 before 1 is refused");
    assert!(err.contains("does not continue the chain"), "{err}");
    assert!(
        err.contains("an incremental is missing between them"),
        "{err}"
    );
    assert!(
        err.contains(&format!("base is {}", full.display())),
        "{err}"
    );
    assert_untouched(&[&full, &inc1, &inc2], &seal);
    assert!(!full.join("prepared.partial").exists());

    for inc in [&inc1_arg, &inc2_arg] {
        let said = agent_ok(&[
            "apply-incremental-backup",
            "--backup-dir",
            &full_arg,
            "--incremental-backup-dir",
            inc,
            "--use-memory",
            "128M",
        ])
        .await;
        assert!(said.contains("recovered from checkpoint"), "{said}");
    }
    steps.done("apply-incremental-backup of 1 then 2");
    // An incremental of the chain applied again changes nothing.
    let again = agent_ok(&[
        "apply-incremental-backup",
        "--backup-dir",
        &full_arg,
        "--incremental-backup-dir",
        &inc1_arg,
    ])
    .await;
    assert!(again.contains("already applied"), "{again}");
    for dir in [&full, &inc1, &inc2] {
        innoxide_agent::verify::verify_dir(dir).expect("raw backups are never modified");
    }

    let datadir = work.path().join("restored");
    let restored =
        support::restore_into(&full, &datadir, MysqlServer::builder().server_id(2)).await;
    steps.done("copy-back, restored server started");
    let dropped: u64 = restored
        .query_scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' \
             AND TABLE_NAME IN ('dropped', 'renamed', 'renamed_once')",
        )
        .await
        .unwrap();
    assert_eq!(dropped, 0, "dropped and renamed-away tables are gone");
    let indexes: u64 = restored
        .query_scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop' \
             AND INDEX_NAME IN ('by_note', 'by_n')",
        )
        .await
        .unwrap();
    assert_eq!(indexes, 2, "both added indexes are there");
    let check: Vec<(String, String, String, String)> = restored
        .query_rows("CHECK TABLE shop.indexed, shop.created, shop.kept, shop.renamed_twice")
        .await
        .unwrap();
    assert!(
        check.iter().all(|row| row.2 != "error"),
        "CHECK TABLE: {check:?}"
    );

    let mut tables = bench.table_names();
    for table in [
        "kept",
        "renamed_twice",
        "truncated",
        "forced",
        "indexed",
        "created",
        "late",
    ] {
        tables.push(format!("shop.{table}"));
    }
    let verdict = oracle::check(OracleInput {
        source: &source,
        restored: &restored,
        backup_gtid_set: &inc2_manifest.gtid_executed,
        tables: &tables,
    })
    .await
    .unwrap();
    println!("{verdict}");
    assert!(verdict.passed(), "{verdict}");
    assert_ne!(inc2_manifest.gtid_executed, inc1_manifest.gtid_executed);
    steps.done("oracle at incremental 2's GTID set");
}

/// `--incremental=page-track` refused, naming why and leaving nothing,
/// when the server has no tracking and when its tracking started after the
/// base; the default then scans. A backup that finds tracking running
/// marks a point in it, so the incremental after it can use tracking even
/// though tracking started after that backup's base; tracking stopped and
/// started again since a base does not cover it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_track_is_refused_naming_why_when_tracking_does_not_cover_the_base() {
    let source = MysqlServer::builder().start().await.unwrap();
    exec_all(
        &source,
        &[
            "SET GLOBAL cte_max_recursion_depth = 100000",
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY, note VARCHAR(255), n INT DEFAULT 0)",
            &fill("shop.t", 3000),
        ],
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let full = work.path().join("full");
    backup(&source, &full, &[]).await;
    let socket = source.socket().display().to_string();
    let page_track = |base: &Path, dir: &Path| {
        vec![
            "backup".to_owned(),
            "--socket".to_owned(),
            socket.clone(),
            "--user=root".to_owned(),
            "--no-timestamp".to_owned(),
            "--incremental=page-track".to_owned(),
            format!("--incremental-basedir={}", base.display()),
            "--backup-dir".to_owned(),
            dir.display().to_string(),
        ]
    };
    let refused = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = agent(&args).await;
        assert!(!out.status.success(), "{args:?} was not refused");
        text(&out.stderr)
    };

    // No component_mysqlbackup on the server.
    exec_all(&source, &["UPDATE shop.t SET n = n + 1 WHERE id % 5 = 0"]).await;
    let refused_dir = work.path().join("refused");
    let err = refused(page_track(&full, &refused_dir)).await;
    assert!(
        err.contains("--incremental=page-track: the server has no page tracking"),
        "{err}"
    );
    assert!(err.contains("component_mysqlbackup"), "{err}");
    support::assert_refused_with_nothing_left(&source, &refused_dir).await;

    // Tracking started after the full backup began.
    exec_all(
        &source,
        &[
            "INSTALL COMPONENT 'file://component_mysqlbackup'",
            "DO mysqlbackup_page_track_set(1)",
            "UPDATE shop.t SET n = n + 1 WHERE id % 7 = 0",
        ],
    )
    .await;
    let err = refused(page_track(&full, &refused_dir)).await;
    assert!(err.contains("page tracking started at LSN"), "{err}");
    assert!(err.contains("after the base"), "{err}");
    support::assert_refused_with_nothing_left(&source, &refused_dir).await;
    innoxide_agent::verify::verify_dir(&full).expect("the base is untouched");

    // The default scans; finding tracking running, it marks a point.
    let scanned_dir = work.path().join("scanned");
    let scanned = backup(
        &source,
        &scanned_dir,
        &[
            "--incremental",
            &format!("--incremental-basedir={}", full.display()),
        ],
    )
    .await;
    let incremental = scanned.incremental.as_ref().unwrap();
    assert_eq!(incremental.method, ChangedPages::FullScan);
    assert!(
        scanned.page_tracking_lsn.is_some(),
        "a point in the running tracking"
    );

    // From that point on, tracking serves the next incremental, also one
    // taken right away: the server may not have checkpointed past the
    // point yet, and tracking lists no page before it has, so the agent
    // waits for that checkpoint.
    exec_all(&source, &["UPDATE shop.t SET n = n + 1 WHERE id % 11 = 0"]).await;
    let tracked_dir = work.path().join("tracked");
    let args = page_track(&scanned_dir, &tracked_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let said = agent_ok(&args).await;
    println!(
        "the agent waited for the checkpoint: {}",
        said.contains("waiting for it to pass")
    );
    let tracked = innoxide_agent::verify::read_manifest(&tracked_dir).unwrap();
    assert_eq!(
        tracked.incremental.as_ref().unwrap().method,
        ChangedPages::PageTracking
    );
    assert!(
        tracked.files.iter().any(|f| f.kind == FileKind::Delta),
        "the changed pages are stored"
    );

    // Tracking stopped and started again: a gap since that base.
    exec_all(
        &source,
        &[
            "DO mysqlbackup_page_track_set(0)",
            "UPDATE shop.t SET n = n + 1 WHERE id % 13 = 0",
            "DO mysqlbackup_page_track_set(1)",
        ],
    )
    .await;
    let err = refused(page_track(&tracked_dir, &refused_dir)).await;
    assert!(err.contains("page tracking started at LSN"), "{err}");
    support::assert_refused_with_nothing_left(&source, &refused_dir).await;
    assert_eq!(page_lists_left(&source), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encrypted_chain_across_s3_and_a_folder_restores_exactly() {
    use innoxide_agent::backup::{self, IncrementalOptions, Progress};
    use innoxide_agent::prepare::incremental::{ApplyIncrementalOptions, apply_incremental};
    use innoxide_agent::prepare::{ApplyLogOptions, apply_log};
    use innoxide_agent::repo::{self, Key, Transform, lifecycle};
    use tokio_util::sync::CancellationToken;

    let mut steps = Steps::new();
    let s3 = innoxide_testkit::S3Server::start().await.unwrap();
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 2, 3_000).await.unwrap();
    let key = Key::from_file_contents(&[7u8; 32]).unwrap();
    let transform = Transform {
        zstd_level: Some(3),
        key: Some(key.clone()),
    };
    let url = format!("s3://{}/db", s3.bucket());
    let full = backup::run(
        &support::backup_options(
            &source,
            url.clone(),
            support::s3_options(&s3),
            transform.clone(),
            true,
        ),
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    steps.done("full backup to S3, zstd + AES-256-GCM");

    bench.run(2, Duration::from_secs(3)).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let inc_dir = work.path().join("inc");
    let mut options = support::backup_options(
        &source,
        inc_dir.display().to_string(),
        support::s3_options(&s3),
        transform,
        false,
    );
    options.incremental = Some(IncrementalOptions {
        base: format!("{url}/{}", full.name),
        method: None,
    });
    let inc = backup::run(&options, Progress::new(), CancellationToken::new())
        .await
        .unwrap();
    steps.done("incremental into a folder, its base named by URL");
    let deltas: Vec<_> = inc
        .manifest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Delta)
        .collect();
    assert!(!deltas.is_empty());
    assert!(
        deltas.iter().all(|f| f.stored_sha256.is_some()),
        "deltas are stored compressed and encrypted like any file"
    );
    assert_eq!(
        inc.manifest.incremental.as_ref().unwrap().base.backup_id,
        full.manifest.backup_id()
    );

    // The full comes out of the bucket (decrypted); the incremental is
    // applied as it is stored, with the key.
    let full_dir = work.path().join("full");
    let store = repo::open(&format!("{url}/{}", full.name), &support::s3_options(&s3)).unwrap();
    let manifest = lifecycle::read_manifest(&store).await.unwrap();
    let (fetch_key, fetch_dir) = (key.clone(), full_dir.clone());
    tokio::task::spawn_blocking(move || {
        lifecycle::fetch(&store, &manifest, Some(&fetch_key), &fetch_dir, &mut |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let mysqld = Some(mysql_prefix().unwrap().join("bin/mysqld"));
    apply_log(
        &ApplyLogOptions {
            backup_dir: full_dir.clone(),
            mysqld: mysqld.clone(),
            force: false,
            buffer_pool: 128 << 20,
            key: None,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut apply = ApplyIncrementalOptions {
        backup_dir: full_dir.clone(),
        incremental_dir: inc_dir.clone(),
        mysqld,
        force: false,
        buffer_pool: 128 << 20,
        key: None,
    };
    let err = apply_incremental(&apply, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("key"),
        "an encrypted incremental needs its key: {err}"
    );
    apply.key = Some(key);
    apply_incremental(&apply, CancellationToken::new())
        .await
        .unwrap();
    steps.done("fetch, apply-log, apply-incremental-backup");

    let datadir = work.path().join("restored");
    let restored =
        support::restore_into(&full_dir, &datadir, MysqlServer::builder().server_id(2)).await;
    let verdict = oracle::check(OracleInput {
        source: &source,
        restored: &restored,
        backup_gtid_set: &inc.manifest.gtid_executed,
        tables: &bench.table_names(),
    })
    .await
    .unwrap();
    println!("{verdict}");
    assert!(verdict.passed(), "{verdict}");
    steps.done("restored, oracle at the incremental's GTID set");
}
