//! `xtrabackup_checkpoints`: the backup's type and LSN range, as
//! `key = value` lines.

use super::Error;

const FILE: &str = super::CHECKPOINTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupType {
    /// A raw full backup, not yet prepared.
    FullBackuped,
    /// A full backup whose log has been applied: ready to copy back.
    FullPrepared,
    Incremental,
    LogApplied,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::FullBackuped => "full-backuped",
            BackupType::FullPrepared => "full-prepared",
            BackupType::Incremental => "incremental",
            BackupType::LogApplied => "log-applied",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "full-backuped" => BackupType::FullBackuped,
            "full-prepared" => BackupType::FullPrepared,
            "incremental" => BackupType::Incremental,
            "log-applied" => BackupType::LogApplied,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoints {
    pub backup_type: BackupType,
    /// 0 for a full backup; the base's to_lsn for an incremental one.
    pub from_lsn: u64,
    /// The checkpoint LSN at the consistent point.
    pub to_lsn: u64,
    /// The LSN of the consistent point: the log is applied up to here.
    pub last_lsn: u64,
    pub flushed_lsn: u64,
}

impl Checkpoints {
    pub fn render(&self) -> String {
        format!(
            "backup_type = {}\nfrom_lsn = {}\nto_lsn = {}\nlast_lsn = {}\nflushed_lsn = {}\nredo_memory = 0\nredo_frames = 0\n",
            self.backup_type.as_str(),
            self.from_lsn,
            self.to_lsn,
            self.last_lsn,
            self.flushed_lsn
        )
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut backup_type = None;
        let (mut from, mut to, mut last, mut flushed) = (None, None, None, None);
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parse_err = |problem: String| Error::Parse {
                file: FILE,
                line: index + 1,
                problem,
            };
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| parse_err(format!("expected `key = value`, found {line:?}")))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| parse_err(format!("{key} is not a number: {value:?}")))
            };
            match key {
                "backup_type" => {
                    backup_type = Some(
                        BackupType::parse(value)
                            .ok_or_else(|| parse_err(format!("unknown backup_type {value:?}")))?,
                    )
                }
                "from_lsn" => from = Some(number()?),
                "to_lsn" => to = Some(number()?),
                "last_lsn" => last = Some(number()?),
                "flushed_lsn" => flushed = Some(number()?),
                _ => {} // redo_memory, redo_frames and future keys
            }
        }
        let missing = |key: &str| Error::Invalid {
            file: FILE,
            problem: format!("{key} is missing"),
        };
        let checkpoints = Checkpoints {
            backup_type: backup_type.ok_or_else(|| missing("backup_type"))?,
            from_lsn: from.ok_or_else(|| missing("from_lsn"))?,
            to_lsn: to.ok_or_else(|| missing("to_lsn"))?,
            last_lsn: last.ok_or_else(|| missing("last_lsn"))?,
            flushed_lsn: flushed.unwrap_or(0),
        };
        if !(checkpoints.from_lsn <= checkpoints.to_lsn
            && checkpoints.to_lsn <= checkpoints.last_lsn)
        {
            return Err(Error::Invalid {
                file: FILE,
                problem: format!(
                    "LSNs out of order: from_lsn {} ≤ to_lsn {} ≤ last_lsn {} does not hold",
                    checkpoints.from_lsn, checkpoints.to_lsn, checkpoints.last_lsn
                ),
            });
        }
        Ok(checkpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_seed_format() {
        let c = Checkpoints {
            backup_type: BackupType::FullBackuped,
            from_lsn: 0,
            to_lsn: 31999744,
            last_lsn: 33489112,
            flushed_lsn: 33489112,
        };
        let text = c.render();
        assert!(text.starts_with("backup_type = full-backuped\nfrom_lsn = 0\n"));
        assert_eq!(Checkpoints::parse(&text).unwrap(), c);
    }

    #[test]
    fn lsns_out_of_order_are_refused() {
        let text = "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 10\nlast_lsn = 5\n";
        let err = Checkpoints::parse(text).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }

    #[test]
    fn garbage_names_the_line() {
        let err = Checkpoints::parse("backup_type = full-backuped\nnonsense\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
