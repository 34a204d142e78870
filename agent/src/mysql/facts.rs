//! What the engine needs to know about the server before it copies anything.

use std::path::{Path, PathBuf};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use super::{Error, Result, stmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Parses `9.7.4-2` or `8.0.36-log`.
    pub fn parse(text: &str) -> Option<Version> {
        let mut numbers = text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>());
        Some(Version {
            major: numbers.next()?.ok()?,
            minor: numbers.next()?.ok()?,
            patch: numbers.next()?.ok()?,
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Server settings that decide what a backup copies and how apply-log must
/// start the mini instance. Paths are absolute (resolved against datadir).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFacts {
    pub version_string: String,
    pub version: Version,
    pub server_uuid: String,
    pub server_id: u32,
    pub datadir: PathBuf,
    pub page_size: u32,
    pub data_home_dir: PathBuf,
    pub data_file_path: String,
    pub undo_directory: PathBuf,
    pub redo_dir: PathBuf,
    pub redo_capacity: u64,
    pub checksum_algorithm: String,
    pub log_bin: bool,
    pub log_bin_basename: Option<PathBuf>,
    pub log_bin_index: Option<PathBuf>,
    pub gtid_mode: String,
    pub redo_log_encrypt: bool,
    pub undo_log_encrypt: bool,
    /// With innodb_log_checksums=OFF the server writes no block checksums,
    /// and captured redo could not be validated.
    pub log_checksums: bool,
    pub lower_case_table_names: u32,
}

pub async fn read(conn: &mut Conn) -> Result<ServerFacts> {
    let rows: Vec<(String, Option<String>)> = conn
        .query(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM performance_schema.global_variables \
             WHERE VARIABLE_NAME IN ('version', 'server_uuid', 'server_id', 'datadir', \
             'innodb_page_size', 'innodb_data_home_dir', 'innodb_data_file_path', \
             'innodb_undo_directory', 'innodb_log_group_home_dir', 'innodb_redo_log_capacity', \
             'innodb_checksum_algorithm', 'log_bin', 'log_bin_basename', 'log_bin_index', \
             'gtid_mode', 'innodb_redo_log_encrypt', 'innodb_undo_log_encrypt', \
             'innodb_log_checksums', 'lower_case_table_names')",
        )
        .await
        .map_err(stmt("read server variables"))?;
    let vars: std::collections::HashMap<String, String> = rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.unwrap_or_default()))
        .collect();
    from_variables(|name| vars.get(name).map(String::as_str))
}

/// Builds the facts from variable values. Pure, so the path rules are tested.
pub fn from_variables<'a>(var: impl Fn(&str) -> Option<&'a str>) -> Result<ServerFacts> {
    let need = |name: &'static str| {
        var(name).ok_or(Error::Unexpected {
            what: "server variables",
            detail: format!("{name} is not set"),
        })
    };
    let version_string = need("version")?.to_owned();
    let version = Version::parse(&version_string).ok_or_else(|| Error::UnsupportedVersion {
        found: version_string.clone(),
    })?;
    if version
        < (Version {
            major: 8,
            minor: 0,
            patch: 30,
        })
    {
        return Err(Error::UnsupportedVersion {
            found: version_string,
        });
    }
    let datadir = PathBuf::from(need("datadir")?);
    let under_datadir = |value: Option<&str>| -> PathBuf {
        match value {
            None | Some("") => datadir.clone(),
            Some(v) => resolve(&datadir, v),
        }
    };
    let on = |name: &str| matches!(var(name), Some("ON" | "1"));
    let log_bin = on("log_bin");
    Ok(ServerFacts {
        version,
        server_uuid: need("server_uuid")?.to_owned(),
        server_id: need("server_id")?.parse().unwrap_or(0),
        page_size: need("innodb_page_size")?.parse().unwrap_or(16384),
        data_home_dir: under_datadir(var("innodb_data_home_dir")),
        data_file_path: need("innodb_data_file_path")?.to_owned(),
        undo_directory: under_datadir(var("innodb_undo_directory")),
        redo_dir: under_datadir(var("innodb_log_group_home_dir")).join("#innodb_redo"),
        redo_capacity: var("innodb_redo_log_capacity")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        checksum_algorithm: var("innodb_checksum_algorithm")
            .unwrap_or("crc32")
            .to_owned(),
        log_bin,
        log_bin_basename: var("log_bin_basename")
            .filter(|v| log_bin && !v.is_empty())
            .map(PathBuf::from),
        log_bin_index: var("log_bin_index")
            .filter(|v| log_bin && !v.is_empty())
            .map(PathBuf::from),
        gtid_mode: var("gtid_mode").unwrap_or("OFF").to_owned(),
        redo_log_encrypt: on("innodb_redo_log_encrypt"),
        undo_log_encrypt: on("innodb_undo_log_encrypt"),
        log_checksums: !matches!(var("innodb_log_checksums"), Some("OFF" | "0")),
        lower_case_table_names: var("lower_case_table_names")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        version_string,
        datadir,
    })
}

/// One file of the system tablespace as `innodb_data_file_path` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDataFile {
    /// As written: a name under `innodb_data_home_dir`, or an absolute path.
    pub path: String,
    /// The size given for it; only the last file may grow past it.
    pub bytes: u64,
}

impl SystemDataFile {
    /// The file's own name, without any folder.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The files of `innodb_data_file_path`
/// (`ibdata_a:12M;ibdata_b:12M:autoextend:max:1G`), in order. Sizes are
/// bytes without a suffix, or K, M, G. Pure.
pub fn system_data_files(spec: &str) -> Vec<SystemDataFile> {
    spec.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let mut parts = entry.split(':');
            let path = parts.next().unwrap_or_default().to_owned();
            let bytes = parts.next().map_or(0, size_in_bytes);
            SystemDataFile { path, bytes }
        })
        .collect()
}

fn size_in_bytes(text: &str) -> u64 {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, ' '),
    };
    let number: u64 = number.parse().unwrap_or(0);
    match unit {
        'K' => number << 10,
        'M' => number << 20,
        'G' => number << 30,
        _ => number,
    }
}

fn resolve(base: &Path, value: &str) -> PathBuf {
    let path = Path::new(value);
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    // "./" and "." are the server's way of saying "the datadir itself".
    let mut clean = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(overrides: &[(&str, &str)]) -> Result<ServerFacts> {
        let base = [
            ("version", "9.7.4-2"),
            ("server_uuid", "u"),
            ("server_id", "7"),
            ("datadir", "/var/lib/mysql/"),
            ("innodb_page_size", "16384"),
            ("innodb_data_file_path", "ibdata1:12M:autoextend"),
            ("innodb_undo_directory", "./"),
            ("innodb_log_group_home_dir", "./"),
            ("log_bin", "ON"),
            ("log_bin_basename", "/var/lib/mysql/binlog"),
        ];
        let lookup = move |name: &str| {
            overrides
                .iter()
                .chain(base.iter())
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        };
        from_variables(lookup)
    }

    #[test]
    fn relative_innodb_dirs_resolve_under_datadir() {
        let f = facts(&[("innodb_undo_directory", "undo")]).unwrap();
        assert_eq!(f.undo_directory, Path::new("/var/lib/mysql/undo"));
        assert_eq!(f.redo_dir, Path::new("/var/lib/mysql/#innodb_redo"));
        assert_eq!(f.data_home_dir, Path::new("/var/lib/mysql"));
        assert_eq!(f.version.to_string(), "9.7.4");
        assert!(f.log_bin);
    }

    #[test]
    fn system_data_files_are_listed_in_order_with_their_sizes() {
        let files = system_data_files("ibdata_a:12M;/sys/ibdata_b:1G:autoextend:max:2G;");
        assert_eq!(
            files,
            vec![
                SystemDataFile {
                    path: "ibdata_a".into(),
                    bytes: 12 << 20
                },
                SystemDataFile {
                    path: "/sys/ibdata_b".into(),
                    bytes: 1 << 30
                },
            ]
        );
        assert_eq!(files[1].file_name(), "ibdata_b");
        assert_eq!(
            system_data_files("ibdata1:10240K:autoextend")[0].bytes,
            10 << 20
        );
        assert_eq!(system_data_files("ibdata1:4096")[0].bytes, 4096);
    }

    #[test]
    fn servers_before_8_0_30_are_refused_with_the_reason() {
        let err = facts(&[("version", "8.0.28")]).unwrap_err();
        assert!(err.to_string().contains("8.0.30"), "{err}");
    }
}
