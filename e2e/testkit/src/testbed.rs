//! Where the test bed lives, and installing it on first use: MySQL 9.7 and
//! sysbench (`scripts/testbed.sh`), the Kubernetes API server and etcd
//! (`scripts/kube-apiserver.sh`), podman and buildah (`scripts/containers.sh`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The cache folder of the test bed: `$INNOXIDE_CACHE`, else `~/.cache/innoxide`
/// (the same rule as `scripts/testbed.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("INNOXIDE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/innoxide")
}

/// The MySQL 9.7 prefix (`PREFIX/bin/mysqld`, `PREFIX/root/usr/...`).
///
/// Runs `scripts/testbed.sh` once per process when the prefix is not installed
/// yet (or sysbench is missing): about 30 s on a fresh machine, nothing after.
pub fn mysql_prefix() -> Result<PathBuf> {
    let prefix = cache_dir().join("mysql-9.7");
    if prefix.join(".installed").is_file() && sysbench_on_path() {
        return Ok(prefix);
    }
    static INSTALL: Installed = OnceLock::new();
    install_once(&INSTALL, "testbed.sh", "bin/mysqld")
}

/// The Kubernetes API prefix (`PREFIX/bin/apiextensions-apiserver`,
/// `PREFIX/bin/etcd`).
///
/// Runs `scripts/kube-apiserver.sh` once per process when the prefix is not
/// installed yet: about 10 min on a fresh machine (a Go build), nothing after.
pub fn kube_api_prefix() -> Result<PathBuf> {
    let prefix = cache_dir().join("kube-api");
    if prefix.join(".installed").is_file() && prefix.join(crate::mirror::SCHEMA_FILE).is_file() {
        return Ok(prefix);
    }
    static INSTALL: Installed = OnceLock::new();
    install_once(&INSTALL, "kube-apiserver.sh", "bin/apiextensions-apiserver")
}

/// The Azurite prefix (`PREFIX/node_modules/.bin/azurite-blob`).
///
/// Runs `scripts/azurite.sh` once per process when it is not installed yet:
/// about 25 s on a fresh machine (npm), nothing after.
pub fn azurite_prefix() -> Result<PathBuf> {
    let prefix = cache_dir().join("azurite");
    if prefix.join(AZURITE_BIN).is_file() {
        return Ok(prefix);
    }
    static INSTALL: Installed = OnceLock::new();
    install_once(&INSTALL, "azurite.sh", AZURITE_BIN)
}

/// The container tools' folder: Debian's podman, buildah and runc installed
/// and `PREFIX/containers.conf` written by `scripts/containers.sh` (once per
/// process when missing; podman must be run with `CONTAINERS_CONF` set to it).
pub fn containers_prefix() -> Result<PathBuf> {
    let prefix = cache_dir().join("containers");
    if prefix.join(CONTAINERS_CONF).is_file() && std::path::Path::new("/usr/bin/podman").is_file() {
        return Ok(prefix);
    }
    static INSTALL: Installed = OnceLock::new();
    install_once(&INSTALL, "containers.sh", CONTAINERS_CONF)
}

pub(crate) const CONTAINERS_CONF: &str = "containers.conf";

pub(crate) const AZURITE_BIN: &str = "node_modules/.bin/azurite-blob";

fn sysbench_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("sysbench").is_file()))
}

/// One install script's outcome in this process (an error kept as text).
type Installed = OnceLock<Result<PathBuf, String>>;

/// Runs `scripts/<name>` at most once per process (see [`run_install_script`]).
fn install_once(outcome: &'static Installed, name: &str, expect: &str) -> Result<PathBuf> {
    outcome
        .get_or_init(|| run_install_script(name, expect).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs `scripts/<name>`, which prints its prefix on its last line, and checks
/// that the prefix holds `expect`.
fn run_install_script(name: &str, expect: &str) -> Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name);
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); its stderr:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .with_context(|| format!("{} printed no prefix", script.display()))?;
    if !prefix.join(expect).is_file() {
        bail!(
            "{} reported prefix {} but it has no {expect}",
            script.display(),
            prefix.display()
        );
    }
    Ok(prefix)
}
