//! The mini instance: the server's own mysqld, started on apply-log's
//! working copy so that its crash recovery applies the backup's redo, then
//! shut down cleanly. This module finds and checks the binary, writes the
//! instance's option file, and owns the process from spawn to exit: every
//! way out of apply-log (error, timeout, cancel, panic) kills it by PID.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::mycnf::OptionFile;
use crate::mysql::{self, ConnectOptions};

/// Unix socket paths longer than this do not fit `sockaddr_un.sun_path`.
pub const MAX_SOCKET_PATH: usize = 107;
/// Where mysqld is looked for when neither `--mysqld` nor PATH names one.
const USUAL_PLACES: &[&str] = &[
    "/usr/sbin/mysqld",
    "/usr/libexec/mysqld",
    "/usr/local/mysql/bin/mysqld",
    "/usr/local/sbin/mysqld",
];
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of backup-my.cnf that describe how the source wrote its files
/// and that the mini instance must share to read them. Everything else in
/// that file is left out: `server_uuid` goes to auto.cnf, `master_key_id`
/// and other lines are not mysqld options, and the directory options are
/// set to the working copy.
const FROM_BACKUP_CNF: &[&str] = &[
    "innodb_checksum_algorithm",
    "innodb_log_checksums",
    "innodb_data_file_path",
    "innodb_page_size",
    "lower_case_table_names",
    "server_id",
];

#[derive(Debug, thiserror::Error)]
pub enum MiniError {
    #[error(
        "no mysqld found (looked in PATH and {}); pass --mysqld (or set INNOXIDE_MYSQLD) to the \
         server binary of the source's exact version",
        USUAL_PLACES.join(", ")
    )]
    NotFound,
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path} {args}` did not answer as mysqld does ({detail})")]
    Probe {
        path: PathBuf,
        args: &'static str,
        detail: String,
    },
    #[error(
        "{path} is MySQL {found}, but the backup was taken from MySQL {wanted}: apply-log needs \
         the source's exact version (pass it with --mysqld)"
    )]
    VersionMismatch {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error(
        "the socket path {0} is longer than {MAX_SOCKET_PATH} bytes; set TMPDIR to a shorter folder"
    )]
    SocketPathTooLong(PathBuf),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "the mini instance exited during startup ({status}); its error log {log} ends with:\n{tail}"
    )]
    DiedStarting {
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the mini instance did not accept connections within {timeout:?} (killed it); its error log {log} ends with:\n{tail}"
    )]
    StartTimeout {
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the mini instance did not shut down within {timeout:?} (killed it); its error log {log} ends with:\n{tail}"
    )]
    ShutdownTimeout {
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the mini instance exited with {status} on shutdown; its error log {log} ends with:\n{tail}"
    )]
    BadExit {
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(transparent)]
    Mysql(#[from] mysql::Error),
    #[error("cancelled (the mini instance was killed)")]
    Cancelled,
}

/// A mysqld binary and what it says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mysqld {
    pub path: PathBuf,
    /// As `SELECT VERSION()` would say, e.g. `9.7.4-2`.
    pub version: String,
    pub dirs: ServerDirs,
}

/// Where this mysqld finds its own files, as it computes them from its
/// location (`--help --verbose` without option files). Written into the
/// mini instance's option file so that it is complete on its own, and so a
/// binary unpacked outside /usr (the test bed's) works with no more flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerDirs {
    pub basedir: Option<PathBuf>,
    pub plugin_dir: Option<PathBuf>,
    pub lc_messages_dir: Option<PathBuf>,
    pub character_sets_dir: Option<PathBuf>,
}

/// `explicit`, else `mysqld` on PATH, else the usual install locations.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, MiniError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("mysqld"));
    on_path
        .chain(USUAL_PLACES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or(MiniError::NotFound)
}

/// Runs `mysqld --version` and `mysqld --no-defaults --help --verbose`.
pub async fn probe(path: &Path) -> Result<Mysqld, MiniError> {
    let version_text = run_probe(path, &["--version"], "--version").await?;
    let version = parse_version(&version_text).ok_or_else(|| MiniError::Probe {
        path: path.to_owned(),
        args: "--version",
        detail: format!("no `Ver <version>` in {:?}", version_text.trim()),
    })?;
    let help = run_probe(
        path,
        &["--no-defaults", "--help", "--verbose"],
        "--no-defaults --help --verbose",
    )
    .await?;
    Ok(Mysqld {
        path: path.to_owned(),
        version,
        dirs: parse_dirs(&help),
    })
}

async fn run_probe(path: &Path, args: &[&str], shown: &'static str) -> Result<String, MiniError> {
    let run = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(MiniError::Spawn {
                path: path.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(MiniError::Probe {
                path: path.to_owned(),
                args: shown,
                detail: format!("no answer within {PROBE_TIMEOUT:?}"),
            });
        }
    };
    if !out.status.success() {
        return Err(MiniError::Probe {
            path: path.to_owned(),
            args: shown,
            detail: format!(
                "{}: {}",
                out.status,
                tail_lines(&String::from_utf8_lossy(&out.stderr), 5)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version in `mysqld --version` output:
/// `/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))` → `9.7.4-2`.
pub fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Ver")?;
    words
        .next()
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// Whether the binary's version is the source's. Exact, except that a
/// `-log` suffix (which `VERSION()` adds when logging is on in old
/// servers) does not count.
pub fn same_version(binary: &str, source: &str) -> bool {
    let strip = |v: &str| v.trim().trim_end_matches("-log").to_owned();
    strip(binary) == strip(source)
}

/// The four directories in `--help --verbose`'s table of variables.
pub fn parse_dirs(help: &str) -> ServerDirs {
    let value = |name: &str| {
        help.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(name))
                .then(|| words.next())
                .flatten()
                .filter(|v| v.starts_with('/'))
                .map(PathBuf::from)
        })
    };
    ServerDirs {
        basedir: value("basedir"),
        plugin_dir: value("plugin-dir"),
        lc_messages_dir: value("lc-messages-dir"),
        character_sets_dir: value("character-sets-dir"),
    }
}

/// Everything the mini instance's option file says.
#[derive(Debug, Clone)]
pub struct MiniConfig {
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    /// An existing folder; import/export are not used.
    pub secure_file_priv: PathBuf,
    pub dirs: ServerDirs,
    /// backup-my.cnf's `[mysqld]` options (only [`FROM_BACKUP_CNF`] are used).
    pub backup_cnf: Vec<(String, String)>,
    pub redo_capacity: u64,
    pub buffer_pool: u64,
    /// The binlog basename and index file name, relative to the datadir,
    /// when the backup holds a binlog.
    pub binlog: Option<(String, String)>,
    pub gtid_mode: bool,
    /// Extra folders where tablespaces outside the datadir were put.
    pub innodb_directories: Vec<PathBuf>,
    /// `user=root`: mysqld refuses to run as root without it.
    pub running_as_root: bool,
    /// Point-in-time replay: the folder of the relay log its applier reads.
    pub relay_dir: Option<PathBuf>,
}

/// backup-my.cnf's `[mysqld]` section as name/value pairs.
pub fn backup_cnf_options(cnf: &OptionFile) -> Vec<(String, String)> {
    cnf.section("mysqld")
        .filter(|(name, _)| FROM_BACKUP_CNF.contains(name))
        .map(|(name, value)| (name.to_owned(), value.unwrap_or_default().to_owned()))
        .collect()
}

/// The option file of the mini instance (read with `--defaults-file`, so
/// no other option file is read). Pure.
pub fn render_defaults(c: &MiniConfig) -> String {
    let mut out = String::from(
        "# The apply-log mini instance, written by innoxide-agent: mysqld runs crash\n\
         # recovery over the working copy of a backup, then shuts down cleanly.\n[mysqld]\n",
    );
    let mut set = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{name}={value}");
    };
    let dirs = [
        ("basedir", &c.dirs.basedir),
        ("plugin_dir", &c.dirs.plugin_dir),
        ("lc_messages_dir", &c.dirs.lc_messages_dir),
        ("character_sets_dir", &c.dirs.character_sets_dir),
    ];
    for (name, dir) in dirs {
        if let Some(dir) = dir {
            set(name, &dir.display());
        }
    }
    if c.running_as_root {
        set("user", &"root");
    }
    // The backup's files, where the working copy has them.
    set("datadir", &c.datadir.display());
    set("innodb_data_home_dir", &c.datadir.display());
    set("innodb_log_group_home_dir", &c.datadir.display());
    set("innodb_undo_directory", &c.datadir.display());
    for (name, value) in &c.backup_cnf {
        set(name, value);
    }
    set("innodb_redo_log_capacity", &c.redo_capacity);
    if !c.innodb_directories.is_empty() {
        let dirs: Vec<String> = c
            .innodb_directories
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        set("innodb_directories", &dirs.join(";"));
    }
    set("innodb_buffer_pool_size", &c.buffer_pool);
    // A clean shutdown that skips the full purge and change-buffer merge:
    // every page is flushed and ibdata1 stamped with the shutdown LSN, so
    // the result needs no redo (what copy-back relies on; MySQL documents
    // any mode but 2 as safe to remove the redo after). The history left
    // to purge is ordinary undo that the restored server purges in the
    // background; a slow shutdown would purge all of it first, which was
    // most of apply-log's time under a write load.
    set("innodb_fast_shutdown", &1);
    // Recovery's page flushes need no torn-write protection here: a mini
    // instance that dies leaves `prepared.partial`, which is never used
    // and is rebuilt from the raw backup by the rerun. Without the
    // doublewrite buffer every flushed page is written once, not twice.
    set("innodb_doublewrite", &"OFF");
    // Buffered I/O, not the server's default O_DIRECT: apply-log has just
    // written the working copy, so every page recovery reads is in the page
    // cache, and a direct read would instead wait for that range to be
    // written back and then read it from the disk again. The shutdown's
    // page flushes land in the page cache and are fsynced, and the seal
    // then reads them back from memory. Durability is the same: InnoDB
    // fsyncs every file it wrote before the shutdown completes.
    set("innodb_flush_method", &"fsync");
    // Binlog recovery commits the internally prepared (2PC) transactions
    // whose XIDs the copied binlog holds and rolls back the rest, exactly as
    // the source would have after a crash at the consistent point. Without
    // a binlog, mysqld would roll them all back.
    match &c.binlog {
        Some((basename, index)) => {
            set("log_bin", basename);
            set("log_bin_index", index);
            // Never purge the copied binlog, however old its file looks.
            set("binlog_expire_logs_seconds", &0);
        }
        None => set("disable_log_bin", &"ON"),
    }
    if let Some(dir) = &c.relay_dir {
        // The replay channel's relay log (the source's binlogs, staged by
        // prepare::pitr::relay) is in its own folder, never in the datadir.
        let relay = crate::prepare::pitr::relay::RelayLog::basename(dir);
        set("relay_log", &relay.display());
        set(
            "relay_log_index",
            &crate::prepare::pitr::relay::RelayLog::index(dir).display(),
        );
        // Keep the staged files at startup (the default, said outright).
        set("relay_log_recovery", &"OFF");
    }
    let gtid = if c.gtid_mode { "ON" } else { "OFF" };
    set("gtid_mode", &gtid);
    set("enforce_gtid_consistency", &gtid);
    // Private and inert: nobody but us connects, nothing starts by itself.
    set("socket", &c.socket.display());
    set("pid_file", &c.pid_file.display());
    set("skip_networking", &"ON");
    set("mysqlx", &"OFF");
    set("skip_grant_tables", &"ON");
    set("skip_replica_start", &"ON");
    set("event_scheduler", &"OFF");
    set("performance_schema", &"OFF");
    set("secure_file_priv", &c.secure_file_priv.display());
    // Leave nothing of this throwaway process in the datadir that the
    // restored server would take for its own: no TLS certificates or RSA
    // keys (the restored server makes its own at first start), no buffer
    // pool dump. `loose-`: not every version has every one of them.
    set("auto_generate_certs", &"OFF");
    set("loose-caching_sha2_password_auto_generate_rsa_keys", &"OFF");
    set("loose-sha256_password_auto_generate_rsa_keys", &"OFF");
    set("innodb_buffer_pool_dump_at_shutdown", &"OFF");
    set("innodb_buffer_pool_load_at_startup", &"OFF");
    // Recovery's notes ("Starting crash recovery", "Apply batch completed")
    // are what proves it ran; they are information-level messages.
    set("log_error_verbosity", &3);
    out
}

/// A running mini instance. Dropping it kills the process.
pub struct MiniInstance {
    child: Child,
    pid: u32,
    socket: PathBuf,
    error_log: PathBuf,
}

impl MiniInstance {
    /// Spawns `mysqld --defaults-file=..`, stdout and stderr to files (the
    /// error log is stderr: no `log_error` is set).
    pub fn spawn(
        mysqld: &Path,
        defaults_file: &Path,
        socket: &Path,
        stdout: &Path,
        stderr: &Path,
    ) -> Result<Self, MiniError> {
        let open = |path: &Path| {
            std::fs::File::create(path).map_err(|source| MiniError::Io {
                what: format!("create {}", path.display()),
                source,
            })
        };
        let child = Command::new(mysqld)
            .arg(format!("--defaults-file={}", defaults_file.display()))
            .stdin(Stdio::null())
            .stdout(open(stdout)?)
            .stderr(open(stderr)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| MiniError::Spawn {
                path: mysqld.to_owned(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, mysqld = %mysqld.display(), "mini instance started");
        Ok(Self {
            child,
            pid,
            socket: socket.to_owned(),
            error_log: stderr.to_owned(),
        })
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            socket: Some(self.socket.clone()),
            user: Some("root".into()),
            ..ConnectOptions::default()
        }
    }

    pub async fn connect(&self) -> Result<mysql_async::Conn, MiniError> {
        Ok(mysql::connect(&self.connect_options()).await?)
    }

    /// Waits until the socket accepts a session: recovery is over and the
    /// server is up. Fails early when the process dies.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), MiniError> {
        let deadline = Instant::now() + timeout;
        loop {
            if cancel.is_cancelled() {
                self.kill().await;
                return Err(MiniError::Cancelled);
            }
            if let Some(status) = self.try_status()? {
                return Err(MiniError::DiedStarting {
                    status,
                    log: self.error_log.clone(),
                    tail: self.log_tail(),
                });
            }
            if self.socket.exists() {
                let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut conn = self.connect().await?;
                    mysql_async::prelude::Queryable::query_drop(&mut conn, "SELECT 1")
                        .await
                        .map_err(|e| mysql::Error::Statement {
                            what: "SELECT 1",
                            source: e,
                        })?;
                    let _ = conn.disconnect().await;
                    Ok::<_, MiniError>(())
                })
                .await;
                if let Ok(Ok(())) = attempt {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill().await;
                return Err(MiniError::StartTimeout {
                    timeout,
                    log: self.error_log.clone(),
                    tail: self.log_tail(),
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    /// `SHUTDOWN`, then waits for the process to exit with status 0.
    pub async fn shutdown(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), MiniError> {
        {
            let mut conn = self.connect().await?;
            mysql::recovery::shutdown(&mut conn).await?;
            drop(conn);
        }
        let waited = tokio::select! {
            status = tokio::time::timeout(timeout, self.child.wait()) => status,
            _ = cancel.cancelled() => {
                self.kill().await;
                return Err(MiniError::Cancelled);
            }
        };
        match waited {
            Ok(Ok(status)) if status.success() => {
                tracing::info!(pid = self.pid, "mini instance shut down");
                Ok(())
            }
            Ok(Ok(status)) => Err(MiniError::BadExit {
                status,
                log: self.error_log.clone(),
                tail: self.log_tail(),
            }),
            Ok(Err(source)) => Err(MiniError::Io {
                what: format!("wait for mysqld (pid {})", self.pid),
                source,
            }),
            Err(_) => {
                self.kill().await;
                Err(MiniError::ShutdownTimeout {
                    timeout,
                    log: self.error_log.clone(),
                    tail: self.log_tail(),
                })
            }
        }
    }

    /// SIGKILL to our own process (by the PID we spawned), then reaps it.
    pub async fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            tracing::warn!(pid = self.pid, "killing the mini instance");
            let _ = self.child.kill().await;
        }
    }

    fn try_status(&mut self) -> Result<Option<ExitStatus>, MiniError> {
        self.child.try_wait().map_err(|source| MiniError::Io {
            what: format!("check on mysqld (pid {})", self.pid),
            source,
        })
    }

    fn log_tail(&self) -> String {
        tail_lines(
            &std::fs::read_to_string(&self.error_log).unwrap_or_default(),
            25,
        )
    }
}

impl Drop for MiniInstance {
    fn drop(&mut self) {
        // kill_on_drop sends the SIGKILL; say so, since it means a path out
        // of apply-log that did not stop the server on purpose.
        if let Ok(None) = self.child.try_wait() {
            tracing::warn!(
                pid = self.pid,
                "mini instance still running on drop: killing it"
            );
            let _ = self.child.start_kill();
        }
    }
}

/// Processes started with `--defaults-file=<cnf>`: a mini instance that
/// outlived the apply-log that started it (killed with SIGKILL, say).
/// Linux only (reads /proc); elsewhere it finds none.
pub fn processes_using(cnf: &Path) -> Vec<u32> {
    let wanted = format!("--defaults-file={}", cnf.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == wanted.as_bytes())
                .then_some(pid)
        })
        .collect()
}

pub fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_the_banner() {
        let banner = "/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))\n";
        assert_eq!(parse_version(banner).as_deref(), Some("9.7.4-2"));
        assert_eq!(
            parse_version("mysqld  Ver 8.0.36-28 for Linux on x86_64 (Percona Server (GPL))")
                .as_deref(),
            Some("8.0.36-28")
        );
        assert_eq!(parse_version("command not found"), None);
        assert!(same_version("9.7.4-2", "9.7.4-2"));
        assert!(same_version("8.0.36", "8.0.36-log"));
        assert!(!same_version("9.7.4-1", "9.7.4-2"));
        assert!(!same_version("9.6.0", "9.7.4-2"));
    }

    #[test]
    fn dirs_from_help_verbose() {
        let help = "\
Variables (--variable-name=value)
and boolean options {FALSE|TRUE}                             Value (after reading options)
------------------------------------------------------------ -------------
basedir                                                      /opt/m/root/usr/
character-sets-dir                                           /opt/m/root/usr/share/mysql/charsets/
datadir                                                      /var/lib/mysql/
lc-messages                                                  en_US
lc-messages-dir                                              /opt/m/root/usr/share/mysql/
plugin-dir                                                   /opt/m/root/usr/lib/mysql/plugin/
";
        let dirs = parse_dirs(help);
        assert_eq!(dirs.basedir.as_deref(), Some(Path::new("/opt/m/root/usr/")));
        assert_eq!(
            dirs.plugin_dir.as_deref(),
            Some(Path::new("/opt/m/root/usr/lib/mysql/plugin/"))
        );
        assert_eq!(
            dirs.lc_messages_dir.as_deref(),
            Some(Path::new("/opt/m/root/usr/share/mysql/"))
        );
        assert_eq!(
            dirs.character_sets_dir.as_deref(),
            Some(Path::new("/opt/m/root/usr/share/mysql/charsets/"))
        );
        assert_eq!(parse_dirs("nothing here"), ServerDirs::default());
    }

    fn config() -> MiniConfig {
        let cnf = OptionFile::parse_str(
            "[mysqld]\ninnodb_checksum_algorithm=crc32\ninnodb_data_file_path=ibdata1:12M:autoextend\n\
             innodb_page_size=16384\ninnodb_undo_directory=./\nserver_id=7\n\
             server_uuid=3909c015-e5ed-11f1-ac8f-02fc00000001\nmaster_key_id=0\n\
             innodb_redo_log_capacity=16777216\nlower_case_table_names=0\n",
        )
        .unwrap();
        MiniConfig {
            datadir: "/b/prepared.partial".into(),
            socket: "/tmp/x/mysqld.sock".into(),
            pid_file: "/tmp/x/mysqld.pid".into(),
            secure_file_priv: "/tmp/x".into(),
            dirs: ServerDirs {
                basedir: Some("/usr/".into()),
                ..ServerDirs::default()
            },
            backup_cnf: backup_cnf_options(&cnf),
            redo_capacity: 16 << 20,
            buffer_pool: 256 << 20,
            binlog: Some(("binlog".into(), "binlog.index".into())),
            gtid_mode: true,
            innodb_directories: vec![],
            running_as_root: true,
            relay_dir: None,
        }
    }

    #[test]
    fn the_option_file_filters_backup_cnf_and_isolates_the_instance() {
        let text = render_defaults(&config());
        let parsed = OptionFile::parse_str(&text).unwrap();
        let get = |k: &str| parsed.get(&["mysqld"], k).map(str::to_owned);
        // Not mysqld options: they would stop it from starting.
        assert_eq!(get("server_uuid"), None);
        assert_eq!(get("master_key_id"), None);
        // The source's file formats.
        assert_eq!(
            get("innodb_data_file_path").as_deref(),
            Some("ibdata1:12M:autoextend")
        );
        assert_eq!(get("innodb_page_size").as_deref(), Some("16384"));
        assert_eq!(get("server_id").as_deref(), Some("7"));
        // Directories are the working copy, whatever backup-my.cnf said.
        assert_eq!(
            get("innodb_undo_directory").as_deref(),
            Some("/b/prepared.partial")
        );
        assert_eq!(get("datadir").as_deref(), Some("/b/prepared.partial"));
        assert_eq!(get("basedir").as_deref(), Some("/usr/"));
        assert_eq!(get("plugin_dir"), None);
        // Isolated and inert.
        for (k, v) in [
            ("skip_networking", "ON"),
            ("skip_grant_tables", "ON"),
            ("skip_replica_start", "ON"),
            ("event_scheduler", "OFF"),
            ("mysqlx", "OFF"),
            ("innodb_fast_shutdown", "1"),
            ("innodb_doublewrite", "OFF"),
            ("innodb_flush_method", "fsync"),
            ("log_bin", "binlog"),
            ("gtid_mode", "ON"),
            ("user", "root"),
            ("innodb_buffer_pool_size", "268435456"),
        ] {
            assert_eq!(get(k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(
            get("log_error"),
            None,
            "the error log goes to stderr (mysql-stderr)"
        );
    }

    #[test]
    fn no_binlog_means_binlog_disabled() {
        let mut c = config();
        c.binlog = None;
        c.gtid_mode = false;
        let parsed = OptionFile::parse_str(&render_defaults(&c)).unwrap();
        assert_eq!(parsed.get(&["mysqld"], "disable_log_bin"), Some("ON"));
        assert_eq!(parsed.get(&["mysqld"], "log_bin"), None);
        assert_eq!(parsed.get(&["mysqld"], "gtid_mode"), Some("OFF"));
    }

    #[test]
    fn an_explicit_mysqld_is_taken_as_given() {
        assert_eq!(
            locate(Some(Path::new("/opt/x/mysqld"))).unwrap(),
            Path::new("/opt/x/mysqld")
        );
    }
}
