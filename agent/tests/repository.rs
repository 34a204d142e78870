//! Backups in a repository: a real S3-protocol server on loopback that
//! checks signatures (in-process s3s), Azure Blob storage as Microsoft's
//! emulator (Azurite) serves it, compression and encryption, faults on
//! the wire, damage at rest, and retention. What users rely on: a backup
//! either exists whole (manifest last) or leaves nothing, and whatever is
//! stored is checked before it is trusted.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use innoxide_agent::backup::{self, BackupOptions, BackupReport, Progress};
use innoxide_agent::meta;
use innoxide_agent::repo::{self, Key, RepoOptions, Transform, lifecycle};
use innoxide_testkit::azurite::{self, AzuriteServer};
use innoxide_testkit::{MysqlServer, S3Server, Sysbench};
use tokio_util::sync::CancellationToken;

mod support;

use support::s3_options;

fn key(byte: u8) -> Key {
    Key::from_file_contents(&[byte; 32]).unwrap()
}

fn options(
    server: &MysqlServer,
    repository: String,
    repo: RepoOptions,
    transform: Transform,
) -> BackupOptions {
    support::backup_options(server, repository, repo, transform, true)
}

async fn take(options: &BackupOptions) -> Result<BackupReport, backup::Error> {
    backup::run(options, Progress::new(), CancellationToken::new()).await
}

async fn small_server() -> (MysqlServer, Sysbench) {
    let server = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&server, 2, 10_000).await.unwrap();
    (server, bench)
}

fn compressed_and_encrypted() -> Transform {
    Transform {
        zstd_level: Some(3),
        key: Some(key(1)),
    }
}

/// Verifies on a blocking thread, as the CLI does.
async fn verify(
    store: &repo::Store,
    key: Option<Key>,
) -> Result<lifecycle::Verified, lifecycle::Error> {
    let manifest = lifecycle::read_manifest(store).await?;
    let store = store.clone();
    tokio::task::spawn_blocking(move || lifecycle::verify(&store, &manifest, key.as_ref()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compressed_encrypted_backup_under_load_goes_to_s3_and_verifies() {
    let s3 = S3Server::start().await.unwrap();
    let (server, bench) = small_server().await;
    let load = bench.run_background(2, Duration::from_secs(15)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("s3://{}/prod/db1", s3.bucket());
    let report = take(&options(
        &server,
        url.clone(),
        s3_options(&s3),
        compressed_and_encrypted(),
    ))
    .await
    .unwrap();
    load.wait().await.unwrap();

    let m = &report.manifest;
    assert_eq!(m.compression.as_deref(), Some("zstd:3"));
    assert_eq!(m.encryption_key_id.as_deref(), Some(key(1).id()));
    assert!(!m.gtid_executed.is_empty());
    // Data, redo and binlog are chunked; the small metadata files stay text.
    for file in &m.files {
        let metadata = file.kind == meta::FileKind::Metadata || file.path.ends_with(".index");
        assert_eq!(file.stored_size.is_none(), metadata, "{}", file.path);
    }
    let stored: u64 = m.files.iter().filter_map(|f| f.stored_size).sum();
    let original: u64 = m
        .files
        .iter()
        .filter(|f| f.stored_size.is_some())
        .map(|f| f.size)
        .sum();
    assert!(
        stored < original,
        "zstd stored {stored} of {original} bytes"
    );
    // The objects are really in the bucket, under the backup's name.
    let on_disk = s3.object_path(&format!("prod/db1/{}/{}", report.name, meta::MANIFEST));
    assert!(on_disk.exists(), "{}", on_disk.display());
    let ibd =
        std::fs::read(s3.object_path(&format!("prod/db1/{}/sbtest/sbtest1.ibd", report.name)))
            .unwrap();
    assert!(
        !ibd.windows(6).any(|w| w == b"sbtest"),
        "encrypted data shows plain text"
    );

    let repository = repo::open(&url, &s3_options(&s3)).unwrap();
    let backup = repository.child(&report.name);
    let checked = verify(&backup, Some(key(1))).await.unwrap();
    assert_eq!(checked.files, m.files.len());

    // Listed, and fetched back to plain files that match the original checksums.
    let listed = lifecycle::list(&repository).await.unwrap();
    assert_eq!(
        listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        vec![report.name.as_str()]
    );
    let dest = tempfile::tempdir().unwrap();
    let (manifest, fetch_to) = (m.clone(), dest.path().to_owned());
    let b = backup.clone();
    tokio::task::spawn_blocking(move || {
        lifecycle::fetch(&b, &manifest, Some(&key(1)), &fetch_to, &mut |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let local = innoxide_agent::verify::verify_dir(dest.path()).unwrap();
    assert_eq!(local.files, m.files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_and_a_missing_key_are_named_before_anything_is_decrypted() {
    let root = tempfile::tempdir().unwrap();
    let (server, _bench) = small_server().await;
    let report = take(&options(
        &server,
        root.path().display().to_string(),
        RepoOptions::default(),
        compressed_and_encrypted(),
    ))
    .await
    .unwrap();
    let backup = repo::open(&root.path().display().to_string(), &RepoOptions::default())
        .unwrap()
        .child(&report.name);
    let err = verify(&backup, Some(key(2))).await.unwrap_err();
    assert!(matches!(err, lifecycle::Error::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("--encrypt-key-file"), "{err}");
    let err = verify(&backup, None).await.unwrap_err();
    assert!(matches!(err, lifecycle::Error::KeyNeeded { .. }), "{err}");
    verify(&backup, Some(key(1))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_bit_in_any_stored_object_is_caught() {
    let s3 = S3Server::start().await.unwrap();
    let (server, _bench) = small_server().await;
    let url = format!("s3://{}/flip", s3.bucket());
    for transform in [Transform::default(), compressed_and_encrypted()] {
        let report = take(&options(
            &server,
            url.clone(),
            s3_options(&s3),
            transform.clone(),
        ))
        .await
        .unwrap();
        let backup = repo::open(&url, &s3_options(&s3))
            .unwrap()
            .child(&report.name);
        for file in [
            "sbtest/sbtest2.ibd",
            meta::LOGFILE,
            "mysql.ibd",
            &report.manifest.binlog_file,
        ] {
            let path = s3.object_path(&format!("flip/{}/{file}", report.name));
            let original = std::fs::read(&path).unwrap();
            let mut damaged = original.clone();
            let at = damaged.len() / 3;
            damaged[at] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            let err = verify(&backup, transform.key.clone()).await.unwrap_err();
            assert!(
                err.to_string().contains(file),
                "flip in {file} not named: {err}"
            );
            // A restore's fetch stops on it too, and leaves no manifest behind.
            let dest = tempfile::tempdir().unwrap();
            let (b, key, to) = (
                backup.clone(),
                transform.key.clone(),
                dest.path().to_owned(),
            );
            let manifest = report.manifest.clone();
            let fetched = tokio::task::spawn_blocking(move || {
                lifecycle::fetch(&b, &manifest, key.as_ref(), &to, &mut |_| {})
            })
            .await
            .unwrap();
            assert!(fetched.is_err(), "fetch accepted a damaged {file}");
            assert!(!dest.path().join(meta::MANIFEST).exists());
            std::fs::write(&path, &original).unwrap();
        }
        verify(&backup, transform.key.clone()).await.unwrap();
        // Tomorrow's backup in the same second would collide; space them.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_and_a_cut_connection_are_retried_to_success() {
    let s3 = S3Server::start().await.unwrap();
    let (server, _bench) = small_server().await;
    s3.faults().slow_down_next(3);
    s3.faults().cut_next_upload_part();
    let url = format!("s3://{}/faults", s3.bucket());
    let report = take(&options(
        &server,
        url.clone(),
        s3_options(&s3),
        compressed_and_encrypted(),
    ))
    .await
    .unwrap();
    let counts = s3.faults().counts();
    assert_eq!(counts.slow_down, 3);
    assert!(counts.cut_uploads <= 1);
    let backup = repo::open(&url, &s3_options(&s3))
        .unwrap()
        .child(&report.name);
    verify(&backup, Some(key(1))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_the_store_keeps_refusing_fails_with_no_manifest_and_no_objects() {
    let s3 = S3Server::start().await.unwrap();
    let (server, _bench) = small_server().await;
    // Every upload of this table fails, however often it is retried.
    s3.faults().fail_matching("sbtest1.ibd", None);
    let url = format!("s3://{}/refused", s3.bucket());
    let err = take(&options(
        &server,
        url.clone(),
        s3_options(&s3),
        Transform::default(),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("sbtest1.ibd"), "{err}");
    s3.faults().clear();
    let repository = repo::open(&url, &s3_options(&s3)).unwrap();
    let left = repository.list("").await.unwrap();
    assert!(left.is_empty(), "partial objects left: {left:?}");
    assert!(lifecycle::list(&repository).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_deletes_exactly_the_backups_it_does_not_keep() {
    let s3 = S3Server::start().await.unwrap();
    let (server, _bench) = small_server().await;
    let url = format!("s3://{}/retention", s3.bucket());
    let mut names = Vec::new();
    for _ in 0..3 {
        let report = take(&options(
            &server,
            url.clone(),
            s3_options(&s3),
            Transform::default(),
        ))
        .await
        .unwrap();
        names.push(report.name);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // An orphan: objects of a failed backup, no manifest.
    let repository = repo::open(&url, &s3_options(&s3)).unwrap();
    repository
        .put("1999-01-01_00-00-00/ibdata1", b"partial")
        .await
        .unwrap();

    let retention = innoxide_agent::verify::Retention {
        keep_last: Some(1),
        keep_within: None,
        orphans_older_than: Duration::ZERO,
    };
    let opts = s3_options(&s3);
    let planned = innoxide_agent::verify::prune(&url, &opts, retention, true)
        .await
        .unwrap();
    assert_eq!(
        planned,
        vec![
            names[0].clone(),
            names[1].clone(),
            "1999-01-01_00-00-00".into()
        ]
    );
    assert_eq!(
        lifecycle::list(&repository).await.unwrap().len(),
        3,
        "dry run deleted something"
    );

    innoxide_agent::verify::prune(&url, &opts, retention, false)
        .await
        .unwrap();
    let kept: Vec<String> = lifecycle::list(&repository)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(kept, vec![names[2].clone()]);
    let objects = repository.list("").await.unwrap();
    assert!(
        objects.iter().all(|o| o.path.starts_with(&names[2])),
        "{objects:?}"
    );
    verify(&repository.child(&names[2]), None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_backup_with_compression_stays_browsable_and_verifies() {
    let root = tempfile::tempdir().unwrap();
    let (server, _bench) = small_server().await;
    let report = take(&options(
        &server,
        format!("file://{}", root.path().display()),
        RepoOptions::default(),
        Transform {
            zstd_level: Some(1),
            key: None,
        },
    ))
    .await
    .unwrap();
    let dir = root.path().join(&report.name);
    for name in [
        meta::CHECKPOINTS,
        meta::BINLOG_INFO,
        meta::BACKUP_CNF,
        meta::MANIFEST,
    ] {
        assert!(dir.join(name).exists(), "{name}");
    }
    // Metadata stays readable text; data files are chunked.
    assert!(
        std::fs::read_to_string(dir.join(meta::CHECKPOINTS))
            .unwrap()
            .contains("last_lsn")
    );
    let entry = report.manifest.file("sbtest/sbtest1.ibd").unwrap();
    assert!(entry.stored_size.unwrap() < entry.size);
    let backup = repo::open(&dir.display().to_string(), &RepoOptions::default()).unwrap();
    verify(&backup, None).await.unwrap();
    assert!(
        !Path::new(&report.location)
            .join(".xtrabackup_logfile.tmp")
            .exists()
    );
}

async fn prepare_and_restore(dir: &Path, key: Option<Key>, server_id: u32) -> MysqlServer {
    use innoxide_agent::{prepare, restore};
    let mysqld = innoxide_testkit::mysql_prefix().unwrap().join("bin/mysqld");
    prepare::apply_log(
        &prepare::ApplyLogOptions {
            backup_dir: dir.to_owned(),
            mysqld: Some(mysqld),
            force: false,
            buffer_pool: 128 << 20,
            key,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let datadir = dir.parent().unwrap().join(format!("restored-{server_id}"));
    restore::copy_back(&restore::CopyBackOptions {
        backup_dir: dir.to_owned(),
        datadir: datadir.clone(),
        force_non_empty: false,
        new_server_uuid: true,
        move_files: false,
        layout: Default::default(),
        parallel: 4,
    })
    .await
    .unwrap();
    MysqlServer::builder()
        .server_id(server_id)
        .existing_datadir(&datadir)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_to_s3_under_load_restores_exactly_its_consistent_point() {
    let s3 = S3Server::start().await.unwrap();
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 4, 10_000).await.unwrap();
    let load = bench.run_background(4, Duration::from_secs(600)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("s3://{}/oracle", s3.bucket());
    let report = take(&options(
        &source,
        url.clone(),
        s3_options(&s3),
        compressed_and_encrypted(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop().await.unwrap();

    let backup = repo::open(&url, &s3_options(&s3))
        .unwrap()
        .child(&report.name);
    assert_restores_its_consistent_point(backup, &report, &source, &bench, 2).await;
}

/// Fetch (decrypt with key 1, decompress, verify), prepare, copy back,
/// start as server `server_id`: the consistency oracle must pass.
async fn assert_restores_its_consistent_point(
    backup: repo::Store,
    report: &BackupReport,
    source: &MysqlServer,
    bench: &Sysbench,
    server_id: u32,
) {
    let work = tempfile::tempdir().unwrap();
    let fetched = work.path().join("fetched");
    let (manifest, to) = (report.manifest.clone(), fetched.clone());
    tokio::task::spawn_blocking(move || {
        lifecycle::fetch(&backup, &manifest, Some(&key(1)), &to, &mut |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let restored = prepare_and_restore(&fetched, None, server_id).await;
    let verdict = innoxide_testkit::oracle::check(innoxide_testkit::oracle::OracleInput {
        source,
        restored: &restored,
        backup_gtid_set: &report.manifest.gtid_executed,
        tables: &bench.table_names(),
    })
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_log_decodes_a_compressed_encrypted_backup_and_needs_its_key() {
    let root = tempfile::tempdir().unwrap();
    let (server, bench) = small_server().await;
    let load = bench.run_background(2, Duration::from_secs(6)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = take(&options(
        &server,
        root.path().display().to_string(),
        RepoOptions::default(),
        compressed_and_encrypted(),
    ))
    .await
    .unwrap();
    load.wait().await.unwrap();
    let dir = root.path().join(&report.name);
    let mysqld = innoxide_testkit::mysql_prefix().unwrap().join("bin/mysqld");
    let attempt = |key: Option<Key>| innoxide_agent::prepare::ApplyLogOptions {
        backup_dir: dir.clone(),
        mysqld: Some(mysqld.clone()),
        force: false,
        buffer_pool: 128 << 20,
        key,
    };
    let err = innoxide_agent::prepare::apply_log(&attempt(Some(key(9))), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--encrypt-key-file"), "{err}");
    assert!(
        !dir.join("prepared.partial").exists(),
        "a refused key still wrote a working copy"
    );

    let restored = prepare_and_restore(&dir, Some(key(1)), 3).await;
    assert_eq!(
        restored.gtid_executed().await.unwrap(),
        report.manifest.gtid_executed
    );
    let checked: Vec<(String, String, String, String)> = restored
        .query_rows("CHECK TABLE sbtest.sbtest1, sbtest.sbtest2")
        .await
        .unwrap();
    assert!(checked.iter().all(|row| row.3 == "OK"), "{checked:?}");
    // The stored backup is still the raw, encrypted one.
    verify(
        &repo::open(&dir.display().to_string(), &RepoOptions::default()).unwrap(),
        Some(key(1)),
    )
    .await
    .unwrap();
}

fn azure_options(azurite: &AzuriteServer, key: &str) -> RepoOptions {
    RepoOptions {
        azure_account: Some(azurite::ACCOUNT.into()),
        azure_access_key: Some(innoxide_agent::secret::Secret::new(key.to_owned())),
        azure_endpoint: Some(azurite.endpoint()),
        ..RepoOptions::default()
    }
}

/// az:// end to end against Azurite (Microsoft's emulator, which checks
/// Shared Key signatures): a compressed, encrypted backup under load is
/// stored, verified, listed, refused to a wrong account key, and restored to
/// exactly its consistent point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_to_azure_blob_storage_restores_exactly_its_consistent_point() {
    let azurite = AzuriteServer::start().await.unwrap();
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 2, 10_000).await.unwrap();
    let load = bench.run_background(2, Duration::from_secs(600)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = azurite.url("prod/db1");
    let good = azure_options(&azurite, azurite::ACCOUNT_KEY);
    let report = take(&options(
        &source,
        url.clone(),
        good.clone(),
        compressed_and_encrypted(),
    ))
    .await
    .unwrap();
    load.stop().await.unwrap();

    let repository = repo::open(&url, &good).unwrap();
    let listed = lifecycle::list(&repository).await.unwrap();
    assert_eq!(
        listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        vec![report.name.as_str()]
    );
    let backup = repository.child(&report.name);
    let checked = verify(&backup, Some(key(1))).await.unwrap();
    assert_eq!(checked.files, report.manifest.files.len());

    // Another key for the same account: Azure (and Azurite) refuse the
    // signature, and the error says so without showing the key.
    let wrong_key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let refused = lifecycle::list(&repo::open(&url, &azure_options(&azurite, &wrong_key)).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(!refused.contains(&wrong_key), "{refused}");
    assert!(
        refused.contains("403") || refused.to_lowercase().contains("auth"),
        "{refused}"
    );

    assert_restores_its_consistent_point(backup, &report, &source, &bench, 3).await;
}
