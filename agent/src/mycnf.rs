//! Reads MySQL option files (`--defaults-file`, `backup-my.cnf`).
//!
//! Hand-written rather than an INI crate because option files are not INI:
//! keys may have no value (`skip-name-resolve`), `-` and `_` are the same in
//! names, values may be quoted, and `!include` / `!includedir` pull in more
//! files. We honour all of that; later sections and files override earlier ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read option file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: option outside of any [section]")]
    NoSection { path: PathBuf, line: usize },
    #[error("option files include each other too deeply (at {0})")]
    TooDeep(PathBuf),
}

/// Options by section; names normalised to lower case with `_`.
#[derive(Debug, Default, Clone)]
pub struct OptionFile {
    sections: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl OptionFile {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let mut file = OptionFile::default();
        file.load_into(path, 0)?;
        Ok(file)
    }

    pub fn parse_str(text: &str) -> Result<Self, Error> {
        let mut file = OptionFile::default();
        file.parse_into(text, Path::new("<text>"), 0)?;
        Ok(file)
    }

    fn load_into(&mut self, path: &Path, depth: usize) -> Result<(), Error> {
        if depth > 10 {
            return Err(Error::TooDeep(path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        self.parse_into(&text, path, depth)
    }

    fn parse_into(&mut self, text: &str, path: &Path, depth: usize) -> Result<(), Error> {
        let mut section: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("!includedir") {
                let dir = resolve(path, rest.trim());
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(|source| Error::Read {
                        path: dir.clone(),
                        source,
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "cnf"))
                    .collect();
                entries.sort();
                for entry in entries {
                    self.load_into(&entry, depth + 1)?;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("!include") {
                self.load_into(&resolve(path, rest.trim()), depth + 1)?;
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.trim().to_ascii_lowercase());
                continue;
            }
            let Some(current) = &section else {
                return Err(Error::NoSection {
                    path: path.to_owned(),
                    line: index + 1,
                });
            };
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), Some(unquote(strip_comment(v.trim())))),
                None => (line, None),
            };
            self.sections
                .entry(current.clone())
                .or_default()
                .insert(normalise(key), value);
        }
        Ok(())
    }

    /// The value of `key` in the first of `sections` (in order of precedence,
    /// most specific first) that sets it.
    pub fn get(&self, sections: &[&str], key: &str) -> Option<&str> {
        let key = normalise(key);
        sections.iter().find_map(|s| {
            self.sections
                .get(*s)
                .and_then(|opts| opts.get(&key))
                .map(|v| v.as_deref().unwrap_or(""))
        })
    }

    pub fn section(&self, name: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.sections
            .get(name)
            .into_iter()
            .flat_map(|opts| opts.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
    }
}

fn normalise(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

fn strip_comment(value: &str) -> &str {
    if value.starts_with('"') || value.starts_with('\'') {
        return value;
    }
    match value.find(" #") {
        Some(at) => value[..at].trim_end(),
        None => value,
    }
}

fn unquote(value: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    value.to_owned()
}

fn resolve(including: &Path, target: &str) -> PathBuf {
    let target = Path::new(target);
    if target.is_absolute() {
        target.to_owned()
    } else {
        including.parent().unwrap_or(Path::new(".")).join(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_client_options_with_mysql_quirks() {
        let cnf = OptionFile::parse_str(
            "# comment\n[client]\nuser = backup\npassword=\"s e#cret\"\n\
             [mysqld]\nskip-name-resolve\ninnodb-page-size=16K # trailing\n\
             [client]\nsocket=/run/mysqld.sock\n",
        )
        .unwrap();
        assert_eq!(cnf.get(&["client"], "user"), Some("backup"));
        assert_eq!(cnf.get(&["client"], "password"), Some("s e#cret"));
        assert_eq!(cnf.get(&["client"], "socket"), Some("/run/mysqld.sock"));
        assert_eq!(cnf.get(&["mysqld"], "skip_name_resolve"), Some(""));
        assert_eq!(cnf.get(&["mysqld"], "innodb_page_size"), Some("16K"));
        assert_eq!(cnf.get(&["xtrabackup", "client"], "user"), Some("backup"));
        assert_eq!(cnf.get(&["mysqld"], "user"), None);
    }

    #[test]
    fn option_before_any_section_is_refused() {
        let err = OptionFile::parse_str("user=x\n").unwrap_err();
        assert!(matches!(err, Error::NoSection { line: 1, .. }), "{err}");
    }

    #[test]
    fn include_pulls_in_another_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("extra.cnf"), "[client]\nport=3307\n").unwrap();
        std::fs::write(
            dir.path().join("main.cnf"),
            "[client]\nport=3306\n!include extra.cnf\n",
        )
        .unwrap();
        let cnf = OptionFile::load(&dir.path().join("main.cnf")).unwrap();
        assert_eq!(cnf.get(&["client"], "port"), Some("3307"));
    }
}
