//! `xtrabackup_binlog_info`: `file<TAB>position[<TAB>gtid_set]` on one line.

use super::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogInfo {
    pub file: String,
    pub position: u64,
    /// Empty when GTIDs are off.
    pub gtid_executed: String,
}

impl BinlogInfo {
    pub fn render(&self) -> String {
        if self.gtid_executed.is_empty() {
            format!("{}\t{}\n", self.file, self.position)
        } else {
            format!("{}\t{}\t{}\n", self.file, self.position, self.gtid_executed)
        }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let line = text.lines().next().unwrap_or_default();
        let mut fields = line.split('\t');
        let bad = |problem: &str| Error::Parse {
            file: super::BINLOG_INFO,
            line: 1,
            problem: problem.to_owned(),
        };
        let file = fields
            .next()
            .filter(|f| !f.is_empty())
            .ok_or_else(|| bad("no binlog file"))?;
        let position = fields
            .next()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| bad("no numeric position"))?;
        Ok(BinlogInfo {
            file: file.to_owned(),
            position,
            gtid_executed: fields.next().unwrap_or_default().trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_gtids() {
        for gtid in ["", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"] {
            let info = BinlogInfo {
                file: "binlog.000003".into(),
                position: 157,
                gtid_executed: gtid.into(),
            };
            assert_eq!(BinlogInfo::parse(&info.render()).unwrap(), info);
        }
        assert_eq!(
            BinlogInfo {
                file: "binlog.000003".into(),
                position: 157,
                gtid_executed: "u:1-5".into()
            }
            .render(),
            "binlog.000003\t157\tu:1-5\n"
        );
    }
}
