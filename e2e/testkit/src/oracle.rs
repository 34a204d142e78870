//! The consistency oracle: is a restored server exactly the source at the
//! backup's GTID set G? Row counts, or "replication had no errors", prove
//! nothing (re-applying a row-based transaction twice is nearly harmless);
//! this asks three things, with numbers:
//!
//! 1. the restored `@@gtid_executed` equals G exactly;
//! 2. the restored tables' `CHECKSUM TABLE` equals that of a *reference
//!    replica*: a fresh server that replicated the source with
//!    `START REPLICA UNTIL SQL_AFTER_GTIDS = G` and stopped exactly there;
//! 3. made a GTID replica of the source, the restored server catches up to
//!    the source's current `gtid_executed` with zero replication errors and
//!    then has the source's checksums.
//!
//! Call it after the write load has stopped (step 3 compares with the
//! source as it is), while the source still has all its binlogs (the
//! reference replica starts from nothing). The restored server must have
//! its own server UUID and server_id (copy-back `--new-server-uuid`, a
//! builder `server_id`): a replica with its source's UUID is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::mysql::MysqlServer;

const REPLICATION_USER: &str = "oracle_repl";
const REPLICATION_PASSWORD: &str = "oracle-Repl-1";
/// server_id of the reference replica (source and restored servers use
/// small ones).
const REFERENCE_SERVER_ID: u32 = 4_242;
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(300);

/// What to judge.
#[derive(Debug, Clone, Copy)]
pub struct OracleInput<'a> {
    pub source: &'a MysqlServer,
    pub restored: &'a MysqlServer,
    /// The backup's GTID set (manifest `gtid_executed`).
    pub backup_gtid_set: &'a str,
    /// `db.table` names to compare (the sbtest tables and any others).
    pub tables: &'a [String],
}

/// One table's checksums on two servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCompare {
    pub table: String,
    pub restored: u64,
    pub expected: u64,
}

impl TableCompare {
    pub fn equal(&self) -> bool {
        self.restored == self.expected
    }
}

/// The oracle's answer, with every number it is based on.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// G, as the backup recorded it (normalised).
    pub backup_gtid_set: String,
    pub backup_transactions: u64,
    /// (1) `@@gtid_executed` of the restored server at its first start.
    pub restored_gtid_executed: String,
    /// (2) `@@gtid_executed` of the reference replica when it stopped.
    pub reference_gtid_executed: String,
    /// (2) restored vs reference replica, both at G.
    pub at_backup_point: Vec<TableCompare>,
    /// (3) the source's `@@gtid_executed` the restored server caught up to.
    pub source_gtid_executed: String,
    /// (3) transactions the restored server applied as a replica.
    pub caught_up_transactions: u64,
    pub catch_up_time: Duration,
    /// (3) replication errors seen (number, message), receiver and applier.
    pub replication_errors: Vec<(u32, String)>,
    /// (3) restored vs source after the catch-up.
    pub after_catch_up: Vec<TableCompare>,
}

impl Verdict {
    pub fn gtid_matches(&self) -> bool {
        self.restored_gtid_executed == self.backup_gtid_set
    }

    pub fn reference_at_backup_point(&self) -> bool {
        self.reference_gtid_executed == self.backup_gtid_set
    }

    pub fn passed(&self) -> bool {
        self.gtid_matches()
            && self.reference_at_backup_point()
            && self.at_backup_point.iter().all(TableCompare::equal)
            && self.replication_errors.is_empty()
            && self.after_catch_up.iter().all(TableCompare::equal)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        writeln!(
            f,
            "consistency oracle: {}",
            if self.passed() { "PASSED" } else { "FAILED" }
        )?;
        writeln!(
            f,
            "  [{}] restored gtid_executed = backup GTID set ({} transactions)\n         backup:   {}\n         restored: {}",
            mark(self.gtid_matches()),
            self.backup_transactions,
            self.backup_gtid_set,
            self.restored_gtid_executed
        )?;
        writeln!(
            f,
            "  [{}] reference replica stopped at the backup GTID set: {}",
            mark(self.reference_at_backup_point()),
            self.reference_gtid_executed
        )?;
        for t in &self.at_backup_point {
            writeln!(
                f,
                "  [{}] {} at the backup point: restored {} / reference {}",
                mark(t.equal()),
                t.table,
                t.restored,
                t.expected
            )?;
        }
        writeln!(
            f,
            "  [{}] as a replica: caught up {} transactions in {:.1?} to {}, {} replication errors{}",
            mark(self.replication_errors.is_empty()),
            self.caught_up_transactions,
            self.catch_up_time,
            self.source_gtid_executed,
            self.replication_errors.len(),
            self.replication_errors
                .iter()
                .map(|(n, m)| format!("\n         {n}: {m}"))
                .collect::<String>()
        )?;
        for t in &self.after_catch_up {
            writeln!(
                f,
                "  [{}] {} after catching up: restored {} / source {}",
                mark(t.equal()),
                t.table,
                t.restored,
                t.expected
            )?;
        }
        Ok(())
    }
}

/// Runs the three checks. Errors are for things that kept the oracle from
/// answering (a server that would not start, a timeout); a wrong restore
/// is a [`Verdict`] that did not pass.
pub async fn check(input: OracleInput<'_>) -> Result<Verdict> {
    let tables: Vec<&str> = input.tables.iter().map(String::as_str).collect();
    let backup_set = GtidSet::parse(input.backup_gtid_set)?;
    ensure_replication_user(input.source).await?;

    // (1) Before anything replicates into it.
    let restored_gtid = GtidSet::parse(&input.restored.gtid_executed().await?)?;

    // (2) The reference replica, stopped exactly at G.
    let reference = MysqlServer::builder()
        .server_id(REFERENCE_SERVER_ID)
        .start()
        .await
        .context("starting the reference replica")?;
    replicate(&reference, input.source, Some(&backup_set.to_string())).await?;
    wait_applier_stopped(&reference).await?;
    let reference_errors = replication_errors(&reference).await?;
    if !reference_errors.is_empty() {
        bail!("the reference replica failed to replicate the source: {reference_errors:?}");
    }
    let reference_gtid = GtidSet::parse(&reference.gtid_executed().await?)?;
    let reference_sums = reference.checksum_tables(&tables).await?;
    let restored_sums = input.restored.checksum_tables(&tables).await?;
    let at_backup_point = compare(&restored_sums, &reference_sums);
    drop(reference);

    // (3) The restored server as a replica of the source.
    let source_gtid = GtidSet::parse(&input.source.gtid_executed().await?)?;
    let started = Instant::now();
    replicate(input.restored, input.source, None).await?;
    let caught_up = wait_for_gtids(input.restored, &source_gtid.to_string()).await;
    let catch_up_time = started.elapsed();
    let errors = replication_errors(input.restored).await?;
    if let Err(e) = caught_up
        && errors.is_empty()
    {
        return Err(e);
    }
    let after_sums = input.restored.checksum_tables(&tables).await?;
    let source_sums = input.source.checksum_tables(&tables).await?;
    input
        .restored
        .exec("STOP REPLICA")
        .await
        .context("stopping replication on the restored server")?;
    Ok(Verdict {
        backup_transactions: backup_set.count(),
        caught_up_transactions: source_gtid.count().saturating_sub(restored_gtid.count()),
        backup_gtid_set: backup_set.to_string(),
        restored_gtid_executed: restored_gtid.to_string(),
        reference_gtid_executed: reference_gtid.to_string(),
        at_backup_point,
        source_gtid_executed: source_gtid.to_string(),
        catch_up_time,
        replication_errors: errors,
        after_catch_up: compare(&after_sums, &source_sums),
    })
}

fn compare(
    restored: &BTreeMap<String, u64>,
    expected: &BTreeMap<String, u64>,
) -> Vec<TableCompare> {
    restored
        .iter()
        .map(|(table, &sum)| TableCompare {
            table: table.clone(),
            restored: sum,
            expected: expected.get(table).copied().unwrap_or(u64::MAX),
        })
        .collect()
}

/// A user the replicas log in to the source with. Created outside the
/// binlog so the source's GTID history is not touched.
async fn ensure_replication_user(source: &MysqlServer) -> Result<()> {
    source
        .exec(&format!(
            "SET sql_log_bin = 0; \
             CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'%' IDENTIFIED WITH caching_sha2_password BY '{REPLICATION_PASSWORD}'; \
             GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'%'; \
             SET sql_log_bin = 1"
        ))
        .await
        .context("creating the replication user on the source")
}

/// Points `replica` at `source` with GTID auto-positioning and starts it,
/// up to and including `until` when given.
async fn replicate(replica: &MysqlServer, source: &MysqlServer, until: Option<&str>) -> Result<()> {
    // caching_sha2_password over TCP without TLS needs the source's RSA key.
    replica
        .exec(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
             SOURCE_USER='{REPLICATION_USER}', SOURCE_PASSWORD='{REPLICATION_PASSWORD}', \
             SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1",
            source.port()
        ))
        .await
        .context("CHANGE REPLICATION SOURCE")?;
    let start = match until {
        Some(set) => format!("START REPLICA UNTIL SQL_AFTER_GTIDS = '{set}'"),
        None => "START REPLICA".to_owned(),
    };
    replica.exec(&start).await.with_context(|| start.clone())
}

/// Waits until the applier of the reference replica stopped at its UNTIL.
async fn wait_applier_stopped(replica: &MysqlServer) -> Result<()> {
    let deadline = Instant::now() + REPLICATION_TIMEOUT;
    loop {
        let state: String = replica
            .query_scalar("SELECT SERVICE_STATE FROM performance_schema.replication_applier_status")
            .await?;
        if state == "OFF" {
            return Ok(());
        }
        let errors = replication_errors(replica).await?;
        if !errors.is_empty() {
            bail!("the reference replica failed: {errors:?}");
        }
        if Instant::now() > deadline {
            bail!(
                "the reference replica did not reach the backup's GTID set within {REPLICATION_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `replica` has executed `set`.
async fn wait_for_gtids(replica: &MysqlServer, set: &str) -> Result<()> {
    let deadline = Instant::now() + REPLICATION_TIMEOUT;
    loop {
        // WAIT_FOR_EXECUTED_GTID_SET returns 0 when done, 1 on timeout.
        let timed_out: i64 = replica
            .query_scalar(&format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', 1)"))
            .await?;
        if timed_out == 0 {
            return Ok(());
        }
        if !replication_errors(replica).await?.is_empty() {
            bail!("replication stopped with errors");
        }
        if Instant::now() > deadline {
            bail!("the restored server did not catch up to {set} within {REPLICATION_TIMEOUT:?}");
        }
    }
}

/// Errors the receiver and the applier (coordinator and workers) report.
async fn replication_errors(replica: &MysqlServer) -> Result<Vec<(u32, String)>> {
    let rows: Vec<(u32, String)> = replica
        .query_rows(
            "SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM performance_schema.replication_connection_status WHERE LAST_ERROR_NUMBER <> 0 \
             UNION ALL SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM performance_schema.replication_applier_status_by_coordinator WHERE LAST_ERROR_NUMBER <> 0 \
             UNION ALL SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM performance_schema.replication_applier_status_by_worker WHERE LAST_ERROR_NUMBER <> 0",
        )
        .await?;
    Ok(rows)
}

/// A reference replica for several points of one source's history: it
/// receives the whole binlog stream at once, then applies up to one GTID
/// set after another (`START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS`),
/// so a point-in-time restore can be compared with the source as it was at
/// each point, also after the source has purged its binlogs.
pub struct ReferenceReplica {
    server: MysqlServer,
}

impl ReferenceReplica {
    /// Starts a fresh server replicating `source` from its first
    /// transaction; only the receiver runs until [`Self::stop_at`].
    pub async fn start(source: &MysqlServer) -> Result<Self> {
        ensure_replication_user(source).await?;
        let server = MysqlServer::builder()
            .server_id(REFERENCE_SERVER_ID)
            .start()
            .await
            .context("starting the reference replica")?;
        server
            .exec(&format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
                 SOURCE_USER='{REPLICATION_USER}', SOURCE_PASSWORD='{REPLICATION_PASSWORD}', \
                 SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1; START REPLICA IO_THREAD",
                source.port()
            ))
            .await
            .context("starting the reference replica's receiver")?;
        Ok(Self { server })
    }

    /// Waits until the receiver holds every transaction of `set`.
    pub async fn wait_received(&self, set: &str) -> Result<()> {
        let deadline = Instant::now() + REPLICATION_TIMEOUT;
        loop {
            let received: String = self
                .server
                .query_scalar(
                    "SELECT RECEIVED_TRANSACTION_SET FROM performance_schema.replication_connection_status",
                )
                .await?;
            let subset: i64 = self
                .server
                .query_scalar(&format!("SELECT GTID_SUBSET('{set}', '{received}')"))
                .await?;
            if subset == 1 {
                return Ok(());
            }
            let errors = replication_errors(&self.server).await?;
            if !errors.is_empty() {
                bail!("the reference replica failed: {errors:?}");
            }
            if Instant::now() > deadline {
                bail!("the reference replica did not receive {set} within {REPLICATION_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Applies up to exactly `set` (which must hold what was applied
    /// before) and returns the tables' checksums there; fails unless its
    /// `gtid_executed` is then exactly `set`.
    pub async fn stop_at(&self, set: &str, tables: &[&str]) -> Result<BTreeMap<String, u64>> {
        self.wait_received(set).await?;
        self.server
            .exec(&format!(
                "START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS = '{set}'"
            ))
            .await?;
        wait_applier_stopped(&self.server).await?;
        let errors = replication_errors(&self.server).await?;
        if !errors.is_empty() {
            bail!("the reference replica failed: {errors:?}");
        }
        let executed = GtidSet::parse(&self.server.gtid_executed().await?)?;
        let wanted = GtidSet::parse(set)?;
        if executed != wanted {
            bail!("the reference replica stopped at {executed}, not at {wanted}");
        }
        self.server.checksum_tables(tables).await
    }
}

/// A GTID set in a canonical form: server UUIDs (with their tags) in
/// lower case and sorted, intervals merged and sorted. Two sets are equal
/// exactly when their canonical texts are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    members: BTreeMap<String, Vec<(u64, u64)>>,
}

impl GtidSet {
    /// Parses MySQL's text form (`uuid:1-5:7,uuid2:tag:1-3`, whitespace and
    /// line breaks ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut set = GtidSet::default();
        for member in compact.split(',').filter(|m| !m.is_empty()) {
            let mut parts = member.split(':');
            let uuid = parts.next().unwrap_or_default().to_ascii_lowercase();
            if uuid.len() != 36 {
                bail!("GTID set member {member:?} does not start with a server UUID");
            }
            let mut key = uuid.clone();
            for part in parts {
                if part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    key = format!("{uuid}:{}", part.to_ascii_lowercase());
                    continue;
                }
                let (first, last) = part.split_once('-').unwrap_or((part, part));
                let first: u64 = first
                    .parse()
                    .with_context(|| format!("bad interval {part:?} in {member:?}"))?;
                let last: u64 = last
                    .parse()
                    .with_context(|| format!("bad interval {part:?} in {member:?}"))?;
                if last < first || first == 0 {
                    bail!("bad interval {part:?} in GTID set member {member:?}");
                }
                set.members
                    .entry(key.clone())
                    .or_default()
                    .push((first, last));
            }
        }
        for intervals in set.members.values_mut() {
            intervals.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
            for &(a, b) in intervals.iter() {
                match merged.last_mut() {
                    Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            *intervals = merged;
        }
        set.members.retain(|_, v| !v.is_empty());
        Ok(set)
    }

    /// Number of transactions.
    pub fn count(&self) -> u64 {
        self.members
            .values()
            .flatten()
            .map(|(a, b)| b - a + 1)
            .sum()
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|(key, intervals)| {
                let parts: Vec<String> = intervals
                    .iter()
                    .map(|&(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                format!("{key}:{}", parts.join(":"))
            })
            .collect();
        f.write_str(&members.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
    const B: &str = "4f22fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn sets_are_normalised() {
        let set = GtidSet::parse(&format!("{B}:5-6,\n{A}:3-4:1-2:9")).unwrap();
        assert_eq!(
            set.to_string(),
            format!("{}:1-4:9,{B}:5-6", A.to_ascii_lowercase())
        );
        assert_eq!(set.count(), 7);
        assert_eq!(
            GtidSet::parse(&format!("{A}:1-10")).unwrap(),
            GtidSet::parse(&format!("{}:1-4:5-10", A.to_ascii_lowercase())).unwrap()
        );
        assert_ne!(
            GtidSet::parse(&format!("{A}:1-10")).unwrap(),
            GtidSet::parse(&format!("{A}:1-9")).unwrap()
        );
        assert_eq!(GtidSet::parse("").unwrap().to_string(), "");
    }

    #[test]
    fn tags_are_separate_members() {
        let set = GtidSet::parse(&format!("{B}:1-3:Backup:1-2")).unwrap();
        assert_eq!(set.to_string(), format!("{B}:1-3,{B}:backup:1-2"));
        assert_eq!(set.count(), 5);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(GtidSet::parse("nonsense:1").is_err());
        assert!(GtidSet::parse(&format!("{B}:5-1")).is_err());
    }
}
