//! Throwaway MySQL 9.7 servers: one temp folder each (datadir, socket, logs),
//! a free loopback port, and a process that dies with the value that owns it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::{FromRow, FromValue, Queryable};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::registry::{BASE_DIR_PREFIX, RunEntry, sweep_orphans};
use crate::testbed::mysql_prefix;

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_TAIL_LINES: usize = 40;

/// Options of a [`MysqlServer`]; get one from [`MysqlServer::builder`].
#[derive(Debug, Clone)]
pub struct MysqlBuilder {
    redo_capacity: Option<u64>,
    buffer_pool: u64,
    server_id: u32,
    extra: Vec<String>,
    existing_datadir: Option<PathBuf>,
    binlog: bool,
    gtid: bool,
    keyring: bool,
}

impl Default for MysqlBuilder {
    fn default() -> Self {
        Self {
            redo_capacity: None,
            buffer_pool: 128 << 20,
            server_id: 1,
            extra: Vec::new(),
            existing_datadir: None,
            binlog: true,
            gtid: true,
            keyring: false,
        }
    }
}

impl MysqlBuilder {
    /// `innodb_redo_log_capacity` in bytes (server default: 100 MiB).
    pub fn redo_capacity(mut self, bytes: u64) -> Self {
        self.redo_capacity = Some(bytes);
        self
    }

    /// `innodb_buffer_pool_size` in bytes (default here: 128 MiB).
    pub fn buffer_pool(mut self, bytes: u64) -> Self {
        self.buffer_pool = bytes;
        self
    }

    /// `server_id` (default 1).
    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = id;
        self
    }

    /// One more line for the `[mysqld]` group of my.cnf, e.g.
    /// `"innodb_flush_log_at_trx_commit=2"`. Later lines win over earlier ones
    /// and over the settings this builder writes.
    pub fn extra(mut self, line: impl Into<String>) -> Self {
        self.extra.push(line.into());
        self
    }

    /// Start on a datadir that already exists (a restored backup): no
    /// `--initialize`, and the folder is left in place when the server goes.
    pub fn existing_datadir(mut self, path: impl Into<PathBuf>) -> Self {
        self.existing_datadir = Some(path.into());
        self
    }

    /// Binary logging (default on, as `log_bin=binlog` in the datadir).
    pub fn binlog(mut self, on: bool) -> Self {
        self.binlog = on;
        self
    }

    /// `gtid_mode` and `enforce_gtid_consistency` (default on).
    pub fn gtid(mut self, on: bool) -> Self {
        self.gtid = on;
        self
    }

    /// Loads `component_keyring_file` (a keyring in the server's temp
    /// folder), so `ENCRYPTION='Y'` tables can be made. The component is
    /// named by a manifest beside the mysqld binary; this server gets a
    /// private binary path (a symlink) and plugin folder for it, so the
    /// shared test bed is left as it is.
    pub fn keyring_file_component(mut self) -> Self {
        self.keyring = true;
        self
    }

    /// Creates the folders, initializes the datadir (a few seconds) unless it
    /// exists, starts mysqld and waits until it accepts connections.
    pub async fn start(self) -> Result<MysqlServer> {
        let prefix = tokio::task::spawn_blocking(mysql_prefix).await??;
        // Servers of test processes that died without Drop: kill them before
        // adding load of our own.
        for swept in tokio::task::spawn_blocking(sweep_orphans).await?? {
            tracing::warn!(
                ?swept,
                "removed a MySQL server left behind by a dead test process"
            );
        }

        let base = tempfile::Builder::new()
            .prefix(BASE_DIR_PREFIX)
            .tempdir()
            .context("creating the server's temp folder")?;
        // Registered before anything can leak: a kill during --initialize
        // still leaves a folder for the sweep to remove.
        let run = RunEntry::create(base.path())?;
        let b = base.path();
        let datadir = match &self.existing_datadir {
            Some(d) => {
                if !d.join("mysql.ibd").is_file() {
                    bail!(
                        "{} is not a MySQL datadir (no mysql.ibd in it)",
                        d.display()
                    );
                }
                d.canonicalize()
                    .with_context(|| format!("resolving {}", d.display()))?
            }
            None => b.join("data"),
        };
        let secure_file_priv = b.join("files");
        fs::create_dir(&secure_file_priv)
            .with_context(|| format!("creating {}", secure_file_priv.display()))?;

        let mut server = MysqlServer {
            prefix,
            datadir,
            socket: b.join("mysqld.sock"),
            port: free_port()?,
            defaults_file: b.join("my.cnf"),
            error_log: b.join("error.log"),
            pid_file: b.join("mysqld.pid"),
            secure_file_priv,
            options: self,
            child: None,
            run,
            base,
        };
        if server.options.keyring {
            server.install_keyring_component()?;
        }
        server.write_defaults_file()?;
        if server.options.existing_datadir.is_none() {
            server.initialize().await?;
        }
        // Another process may take the free port between our probe and
        // mysqld's bind: pick another one and try again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match server.spawn_and_wait().await {
                Ok(()) => break,
                Err(e) if attempts < 3 && server.error_log_tail(200).contains("already in use") => {
                    tracing::warn!(port = server.port, "port taken, retrying: {e:#}");
                    server.port = free_port()?;
                    server.write_defaults_file()?;
                }
                Err(e) => return Err(e),
            }
        }
        if server.options.existing_datadir.is_none() {
            server.allow_root_over_tcp().await?;
        }
        Ok(server)
    }
}

/// A running MySQL 9.7 server. Dropping it kills the process (SIGKILL) if it
/// still runs and deletes its temp folder.
#[derive(Debug)]
pub struct MysqlServer {
    prefix: PathBuf,
    datadir: PathBuf,
    socket: PathBuf,
    port: u16,
    defaults_file: PathBuf,
    error_log: PathBuf,
    pid_file: PathBuf,
    secure_file_priv: PathBuf,
    options: MysqlBuilder,
    child: Option<Child>,
    run: RunEntry,
    base: TempDir,
}

impl MysqlServer {
    pub fn builder() -> MysqlBuilder {
        MysqlBuilder::default()
    }

    /// A server with the default options.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The my.cnf the server runs with. Its `[client]` group points at the
    /// socket as root, so `--defaults-file=` works for the client tools too.
    pub fn defaults_file(&self) -> &Path {
        &self.defaults_file
    }

    pub fn error_log(&self) -> &Path {
        &self.error_log
    }

    /// The folder holding everything of this server except an existing datadir.
    pub fn base_dir(&self) -> &Path {
        self.base.path()
    }

    /// The folder `secure_file_priv` points at (for `SELECT ... INTO OUTFILE`).
    pub fn secure_file_priv(&self) -> &Path {
        &self.secure_file_priv
    }

    /// The MySQL prefix this server runs from.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `PREFIX/bin/<tool>`: a wrapper that runs sid's binary with sid's libraries.
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.prefix.join("bin").join(tool)
    }

    /// The pid of mysqld while it runs (or until [`Self::kill`] / [`Self::stop`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the mysqld process exists (it may still be starting or
    /// shutting down).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `mysql://root@127.0.0.1:PORT`: root over TCP with an empty password
    /// (created at initialize as `root@127.0.0.1`; servers on an existing
    /// datadir only have it if the source server had it).
    pub fn tcp_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Connection options for root over the unix socket.
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .socket(Some(self.socket.to_string_lossy().into_owned()))
            .user(Some("root"))
            .into()
    }

    /// A new connection as root over the unix socket.
    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        mysql_async::Conn::new(self.opts())
            .await
            .with_context(|| format!("connecting to mysqld at {}", self.socket.display()))
    }

    /// Runs one or more statements (`;`-separated), discarding results.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        let result = conn.query_drop(sql).await;
        let _ = conn.disconnect().await;
        result.with_context(|| format!("running {}", abbreviate(sql)))
    }

    /// Runs one statement and gives back the rows it changed (a row an
    /// UPDATE writes back unchanged does not count).
    pub async fn exec_affected(&self, sql: &str) -> Result<u64> {
        let mut conn = self.conn().await?;
        let result = conn.query_drop(sql).await.map(|()| conn.affected_rows());
        let _ = conn.disconnect().await;
        result.with_context(|| format!("running {}", abbreviate(sql)))
    }

    /// Waits (at most a minute) until the server's checkpoint reaches its LSN
    /// of now: the pages changed before are flushed, so page tracking, which
    /// records a page when it is flushed, has recorded them, as an
    /// incremental taken hours later finds them.
    pub async fn checkpoint_passes_now(&self) -> Result<()> {
        let status = |name: &str| {
            format!(
                "SELECT VARIABLE_VALUE FROM performance_schema.global_status \
                 WHERE VARIABLE_NAME = '{name}'"
            )
        };
        let now: u64 = self
            .query_scalar(&status("Innodb_redo_log_current_lsn"))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let checkpoint: u64 = self
                .query_scalar(&status("Innodb_redo_log_checkpoint_lsn"))
                .await?;
            if checkpoint >= now {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the checkpoint stayed at {checkpoint}, before {now}, for a minute");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The first column of the first row; an error when there is no row.
    pub async fn query_scalar<T: FromValue + Send + 'static>(&self, sql: &str) -> Result<T> {
        let mut conn = self.conn().await?;
        let result = conn.query_first::<mysql_async::Row, _>(sql).await;
        let _ = conn.disconnect().await;
        let mut row = result
            .with_context(|| format!("running {}", abbreviate(sql)))?
            .with_context(|| format!("{} returned no rows", abbreviate(sql)))?;
        row.take_opt::<T, _>(0)
            .with_context(|| format!("{} returned no columns", abbreviate(sql)))?
            .with_context(|| format!("reading the result of {}", abbreviate(sql)))
    }

    /// All rows, each converted to `T` (a tuple, or `mysql_async::Row`).
    pub async fn query_rows<T: FromRow + Send + 'static>(&self, sql: &str) -> Result<Vec<T>> {
        let mut conn = self.conn().await?;
        let result = conn.query::<T, _>(sql).await;
        let _ = conn.disconnect().await;
        result.with_context(|| format!("running {}", abbreviate(sql)))
    }

    /// The current binary log file and position (`SHOW BINARY LOG STATUS`).
    pub async fn binlog_position(&self) -> Result<(String, u64)> {
        let rows: Vec<(String, u64, String, String, String)> =
            self.query_rows("SHOW BINARY LOG STATUS").await?;
        rows.into_iter()
            .map(|r| (r.0, r.1))
            .next()
            .context("SHOW BINARY LOG STATUS returned no rows: is binary logging off?")
    }

    /// `@@GLOBAL.gtid_executed` without the line breaks MySQL puts in long sets.
    pub async fn gtid_executed(&self) -> Result<String> {
        let set: String = self.query_scalar("SELECT @@GLOBAL.gtid_executed").await?;
        Ok(set.chars().filter(|c| !c.is_whitespace()).collect())
    }

    /// `SELECT VERSION()`, e.g. `9.7.4-1`.
    pub async fn version(&self) -> Result<String> {
        self.query_scalar("SELECT VERSION()").await
    }

    /// `CHECKSUM TABLE` of each table, keyed by the name as given. Names are
    /// `db.table`; a missing table is an error.
    pub async fn checksum_tables(&self, tables: &[&str]) -> Result<BTreeMap<String, u64>> {
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let list: Vec<String> = tables.iter().map(|t| quote_table(t)).collect();
        let sql = format!("CHECKSUM TABLE {}", list.join(", "));
        let rows: Vec<(String, Option<u64>)> = self.query_rows(&sql).await?;
        if rows.len() != tables.len() {
            bail!(
                "CHECKSUM TABLE returned {} rows for {} tables",
                rows.len(),
                tables.len()
            );
        }
        tables
            .iter()
            .zip(rows)
            .map(|(name, (reported, sum))| {
                let sum = sum.with_context(|| format!("table {reported} does not exist"))?;
                Ok((name.to_string(), sum))
            })
            .collect()
    }

    /// Creates (or resets the password of) `name@'%'` with
    /// `caching_sha2_password` and all privileges. Such a user logs in over the
    /// socket at once; over TCP without TLS only after one socket login has
    /// cached the password (see TESTBED.md).
    pub async fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let user = format!("{}@'%'", sql_string(name));
        let pass = sql_string(password);
        self.exec(&format!(
            "CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH caching_sha2_password BY {pass}; \
             ALTER USER {user} IDENTIFIED WITH caching_sha2_password BY {pass}; \
             GRANT ALL ON *.* TO {user} WITH GRANT OPTION"
        ))
        .await
        .with_context(|| format!("creating user {name}"))
    }

    /// The 9.7 `mysql` client by its full path (MariaDB's may be first on
    /// PATH), connected as root over the socket. Add `-e SQL`, `-N`, `-E`
    /// (the 9.7 client rejects `\G` in `-e`).
    pub fn mysql_client(&self) -> Command {
        self.client_tool("mysql")
    }

    /// Any client tool of the prefix (`mysqladmin`, `mysqldump`,
    /// `mysqlbinlog`, ...) with `--defaults-file=` pointing at this server.
    pub fn client_tool(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin(tool));
        cmd.arg(format!("--defaults-file={}", self.defaults_file.display()));
        cmd
    }

    /// Clean shutdown (`SHUTDOWN`, SIGTERM if no connection can be made), then
    /// waits until the process has exited. A no-op when it is not running.
    pub async fn stop(&mut self) -> Result<()> {
        if !self.is_running() {
            self.reap();
            return Ok(());
        }
        let asked = match self.conn().await {
            Ok(mut conn) => {
                let r = conn.query_drop("SHUTDOWN").await;
                drop(conn);
                r.is_ok()
            }
            Err(_) => false,
        };
        if !asked && let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if !self.wait_exit(SHUTDOWN_TIMEOUT).await {
            self.kill();
            bail!(
                "mysqld did not shut down within {SHUTDOWN_TIMEOUT:?} (killed it); error log:\n{}",
                self.error_log_tail(LOG_TAIL_LINES)
            );
        }
        self.reap();
        Ok(())
    }

    /// SIGKILL, as in a crash; returns once the process is gone. The datadir
    /// stays as the crash left it, so [`Self::restart`] runs crash recovery.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.run.clear_mysqld();
    }

    /// Stops the server if it runs, then starts it again on the same datadir,
    /// port and my.cnf.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    /// The last `lines` lines of the error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.error_log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn write_defaults_file(&self) -> Result<()> {
        let usr = self.prefix.join("root/usr");
        let o = &self.options;
        let mut cnf = String::from("[mysqld]\n");
        let mut set = |key: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(cnf, "{key}={value}");
        };
        set("basedir", &usr.display());
        let plugin_dir = if o.keyring {
            self.base.path().join("plugin")
        } else {
            usr.join("lib/mysql/plugin")
        };
        set("plugin_dir", &plugin_dir.display());
        set("lc_messages_dir", &usr.join("share/mysql").display());
        set(
            "character_sets_dir",
            &usr.join("share/mysql/charsets").display(),
        );
        set("datadir", &self.datadir.display());
        set("socket", &self.socket.display());
        set("port", &self.port);
        set("bind_address", &"127.0.0.1");
        set("pid_file", &self.pid_file.display());
        set("log_error", &self.error_log.display());
        set("secure_file_priv", &self.secure_file_priv.display());
        set("mysqlx", &"OFF");
        if nix::unistd::Uid::effective().is_root() {
            set("user", &"root");
        }
        set("server_id", &o.server_id);
        if o.binlog {
            set("log_bin", &"binlog");
        } else {
            set("disable_log_bin", &"ON");
        }
        let gtid = if o.gtid { "ON" } else { "OFF" };
        set("gtid_mode", &gtid);
        set("enforce_gtid_consistency", &gtid);
        set("innodb_buffer_pool_size", &o.buffer_pool);
        if let Some(bytes) = o.redo_capacity {
            set("innodb_redo_log_capacity", &bytes);
        }
        set("skip_name_resolve", &"ON");
        for line in &o.extra {
            let _ = writeln!(cnf, "{line}");
        }
        let _ = write!(
            cnf,
            "\n[client]\nsocket={}\nuser=root\n",
            self.socket.display()
        );
        fs::write(&self.defaults_file, cnf)
            .with_context(|| format!("writing {}", self.defaults_file.display()))
    }

    /// A private `bin/mysqld` (a symlink: mysqld reads its global component
    /// manifest `mysqld.my` beside the path it was started by) and a
    /// private plugin folder (links to the test bed's) holding the keyring
    /// component's configuration.
    fn install_keyring_component(&self) -> Result<()> {
        let base = self.base.path();
        let (bin, plugin) = (base.join("bin"), base.join("plugin"));
        fs::create_dir(&bin)?;
        fs::create_dir(&plugin)?;
        let usr = self.prefix.join("root/usr");
        std::os::unix::fs::symlink(usr.join("sbin/mysqld"), bin.join("mysqld"))?;
        fs::write(
            bin.join("mysqld.my"),
            r#"{"components": "file://component_keyring_file"}"#,
        )?;
        for entry in fs::read_dir(usr.join("lib/mysql/plugin"))? {
            let entry = entry?;
            std::os::unix::fs::symlink(entry.path(), plugin.join(entry.file_name()))?;
        }
        let config = serde_json::json!({
            "path": base.join("keyring").display().to_string(),
            "read_only": false,
        });
        fs::write(
            plugin.join("component_keyring_file.cnf"),
            config.to_string(),
        )?;
        Ok(())
    }

    /// mysqld as the test bed's wrapper runs it, or through the private
    /// path of [`MysqlBuilder::keyring_file_component`].
    fn mysqld_command(&self) -> Command {
        if !self.options.keyring {
            return Command::new(self.bin("mysqld"));
        }
        let libs = self.prefix.join("root/usr/lib/x86_64-linux-gnu");
        let mut cmd = Command::new(libs.join("ld-linux-x86-64.so.2"));
        cmd.arg("--library-path")
            .arg(&libs)
            .arg(self.base.path().join("bin/mysqld"));
        cmd
    }

    async fn initialize(&self) -> Result<()> {
        let out = tokio::process::Command::from(self.mysqld_command())
            .arg(format!("--defaults-file={}", self.defaults_file.display()))
            .arg("--initialize-insecure")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running mysqld --initialize-insecure")?;
        if !out.status.success() {
            bail!(
                "mysqld --initialize-insecure failed ({}): {}\nerror log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.error_log_tail(LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        // Early failures of the loader or of mysqld before it opens its log
        // go to stderr: keep them next to the log.
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.path().join("mysqld.stderr"))
            .context("opening mysqld.stderr")?;
        let child = self
            .mysqld_command()
            .arg(format!("--defaults-file={}", self.defaults_file.display()))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.bin("mysqld").display()))?;
        let pid = child.id();
        self.child = Some(child);
        self.run.record_mysqld(pid as i32)?;

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.reap();
                bail!(
                    "mysqld exited during startup ({status}); error log:\n{}{}",
                    self.error_log_tail(LOG_TAIL_LINES),
                    self.stderr_text()
                );
            }
            if self.socket.exists() {
                let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut conn = self.conn().await?;
                    conn.query_drop("SELECT 1").await?;
                    let _ = conn.disconnect().await;
                    anyhow::Ok(())
                })
                .await;
                if let Ok(Ok(())) = attempt {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "mysqld did not accept connections within {READY_TIMEOUT:?} (killed it); error log:\n{}",
                    self.error_log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Root has no TCP account after `--initialize` (`root@localhost` only
    /// matches the socket with skip_name_resolve). Created outside the binlog so
    /// `gtid_executed` of a new server stays empty.
    async fn allow_root_over_tcp(&self) -> Result<()> {
        self.exec(
            "SET sql_log_bin = 0; \
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED WITH caching_sha2_password BY ''; \
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; \
             SET sql_log_bin = 1",
        )
        .await
    }

    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => return true,
            }
        }
        false
    }

    /// Forgets an exited child (already waited for by `try_wait`).
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.run.clear_mysqld();
    }

    fn stderr_text(&self) -> String {
        let text = fs::read_to_string(self.base.path().join("mysqld.stderr")).unwrap_or_default();
        if text.trim().is_empty() {
            String::new()
        } else {
            format!("\nstderr:\n{}", text.trim())
        }
    }
}

impl Drop for MysqlServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- error log of the MySQL server on port {} (tail) ---\n{}\n---",
                self.port,
                self.error_log_tail(LOG_TAIL_LINES)
            );
            if std::env::var_os("INNOXIDE_KEEP_FAILED").is_some() {
                self.base.disable_cleanup(true);
                eprintln!("kept {}", self.base.path().display());
            }
        }
        self.run.clear_mysqld();
    }
}

/// A port nobody listens on right now (the kernel's pick for 127.0.0.1:0).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `'text'` with quotes and backslashes escaped.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `db.table` → `` `db`.`table` ``.
fn quote_table(name: &str) -> String {
    name.split('.')
        .map(|part| format!("`{}`", part.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

fn abbreviate(sql: &str) -> String {
    const MAX: usize = 120;
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}…", &one_line[..i]),
        None => format!("{one_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_names_are_quoted() {
        assert_eq!(sql_string(r"it's\"), r"'it\'s\\'");
        assert_eq!(quote_table("sbtest.sbtest1"), "`sbtest`.`sbtest1`");
        assert_eq!(quote_table("a`b"), "`a``b`");
    }
}
