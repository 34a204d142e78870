//! Runs the replay in the mini instance, after crash recovery has settled:
//! the relay log staged by [`super::relay`] is applied by the server's own
//! applier on a channel of its own, until `gtid_executed` holds the target;
//! then the channel is removed and the instance goes on to its clean
//! shutdown. Transactions the backup holds are skipped by GTID auto-skip.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::relay::{CHANNEL, RelayLog};
use super::stream::StreamFile;
use super::target::{Cut, Located};
use crate::binlog::GtidSet;
use crate::mysql;
use crate::prepare::mini::{MiniError, MiniInstance};

/// What the mini instance needs to replay: the staged relay log, the cut
/// and the stream (to name a failed transaction).
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    pub relay: RelayLog,
    pub cut: Cut,
    pub backup_gtid_executed: GtidSet,
    pub files: Vec<StreamFile>,
    pub workers: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Mini(#[from] MiniError),
    #[error(transparent)]
    Mysql(#[from] mysql::Error),
    #[error(
        "the recovered backup's gtid_executed is {found}, not the backup's {expected}: replay \
         would not start from the backup's point"
    )]
    WrongStart { found: String, expected: String },
    #[error(
        "replaying the binlogs failed at transaction {transaction}: {error}{log}\nThe raw backup \
         is unchanged; the working copy holds the data before that transaction"
    )]
    Failed {
        transaction: String,
        error: String,
        log: String,
    },
    #[error(
        "after the replay gtid_executed is {found}, not the target {expected}; the prepared data \
         is not used"
    )]
    WrongEnd { found: String, expected: String },
    #[error("cancelled during the replay (the mini instance was killed)")]
    Cancelled,
}

/// How often progress is logged while the applier runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Replays `plan` in `instance`, whose error log is `error_log`; returns
/// how many seconds the applier took.
pub async fn run(
    instance: &MiniInstance,
    plan: &ReplayPlan,
    error_log: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<f64, ReplayError> {
    let mut conn = instance.connect().await?;
    let start = parse(&mysql::replay::gtid_executed(&mut conn).await?);
    if start != plan.backup_gtid_executed {
        return Err(ReplayError::WrongStart {
            found: start.to_string(),
            expected: plan.backup_gtid_executed.to_string(),
        });
    }
    let log_before = std::fs::metadata(error_log).map_or(0, |m| m.len());
    mysql::replay::prepare_applier(&mut conn, free_server_id(&plan.files), plan.workers).await?;
    let first = plan.relay.files[0].display().to_string();
    mysql::replay::point_channel(&mut conn, CHANNEL, &first).await?;
    mysql::replay::start_applier(&mut conn, CHANNEL).await?;
    tracing::info!(
        transactions = plan.cut.transactions,
        workers = plan.workers,
        target = %plan.cut.gtid_executed,
        "replaying the binlogs with the server's applier"
    );

    let target = plan.cut.gtid_executed.to_string();
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        if cancel.is_cancelled() {
            return Err(ReplayError::Cancelled);
        }
        if mysql::replay::wait_for_gtids(&mut conn, &target, 1).await? {
            break;
        }
        let status = mysql::replay::applier_status(&mut conn, CHANNEL).await?;
        if status.errno != 0 || !status.running {
            let executed = parse(&mysql::replay::gtid_executed(&mut conn).await?);
            return Err(failure(plan, &status, &executed, error_log, log_before));
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            let executed = parse(&mysql::replay::gtid_executed(&mut conn).await?);
            let done = executed.subtract(&plan.backup_gtid_executed).count();
            tracing::info!(
                done,
                of = plan.cut.transactions,
                seconds = started.elapsed().as_secs(),
                "replaying"
            );
            reported = Instant::now();
        }
    }
    mysql::replay::remove_channel(&mut conn, CHANNEL).await?;
    let end = parse(&mysql::replay::gtid_executed(&mut conn).await?);
    if end != plan.cut.gtid_executed {
        return Err(ReplayError::WrongEnd {
            found: end.to_string(),
            expected: target,
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        transactions = plan.cut.transactions,
        seconds,
        per_second = plan.cut.transactions as f64 / seconds.max(0.001),
        "replay reached the target"
    );
    let _ = conn.disconnect().await;
    Ok(seconds)
}

/// The server writes its sets in canonical form; a set it wrote that does
/// not parse is compared as empty, which then fails as a wrong set.
fn parse(text: &str) -> GtidSet {
    text.parse().unwrap_or_default()
}

/// A server_id that no replayed transaction carries, so the applier skips
/// none of them as its own: the largest ids first, which servers rarely use.
fn free_server_id(files: &[StreamFile]) -> u32 {
    let used: std::collections::HashSet<u32> = files
        .iter()
        .flat_map(|f| f.transactions.iter().map(|t| t.server_id))
        .collect();
    (1..=u32::MAX)
        .rev()
        .find(|id| !used.contains(id))
        .unwrap_or(u32::MAX)
}

/// Names the transaction the applier stopped at: the GTID its message
/// quotes, else the first target transaction not executed, with the
/// applier's lines of the error log (the worker's own error is there).
fn failure(
    plan: &ReplayPlan,
    status: &mysql::replay::ApplierStatus,
    executed: &GtidSet,
    error_log: &std::path::Path,
    log_before: u64,
) -> ReplayError {
    let quoted = quoted_gtid(&status.error);
    let transaction = plan
        .files
        .iter()
        .flat_map(|f| f.transactions.iter().map(move |t| (f, t)))
        .find(|(_, t)| match &quoted {
            Some(q) => t.gtid.to_string() == *q,
            None => plan.cut.replayed.contains(&t.gtid) && !executed.contains(&t.gtid),
        })
        .map(|(f, t)| {
            Located {
                file: f.name.clone(),
                txn: t.clone(),
            }
            .to_string()
        })
        .or(quoted)
        .unwrap_or_else(|| "(unknown)".into());
    let error = if status.errno != 0 {
        format!("error {}: {}", status.errno, status.error)
    } else {
        "the applier stopped without an error".to_owned()
    };
    ReplayError::Failed {
        transaction,
        error,
        log: applier_log_lines(error_log, log_before),
    }
}

/// The first `'uuid:N'` (or `'uuid:tag:N'`) in an applier message.
fn quoted_gtid(message: &str) -> Option<String> {
    message.split('\'').skip(1).step_by(2).find_map(|q| {
        let gtid: GtidSet = q.parse().ok()?;
        (gtid.count() == 1).then(|| gtid.to_string())
    })
}

/// The error log's replication errors written since the replay started.
fn applier_log_lines(path: &std::path::Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let new = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = new
        .lines()
        .filter(|l| l.contains("[ERROR]") && l.contains("[Repl]"))
        .take(5)
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(
            "\nthe mini instance's error log says:\n{}",
            lines.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_gtid_is_read_from_the_applier_message() {
        let message = "Coordinator stopped because there were error(s) in the worker(s). The most \
            recent failure being: Worker 1 failed executing transaction \
            '127fd24f-f1b1-11f1-ad48-02fc00000001:5' at source log , end_log_pos 707. See error log";
        assert_eq!(
            quoted_gtid(message).as_deref(),
            Some("127fd24f-f1b1-11f1-ad48-02fc00000001:5")
        );
        assert_eq!(quoted_gtid("Error 'Duplicate entry' on query"), None);
    }

    #[test]
    fn the_applier_gets_a_server_id_no_event_has() {
        use super::super::stream::tests::file;
        let mut files = vec![file("b.000001", "", 1..=3, 0)];
        assert_eq!(free_server_id(&files), u32::MAX);
        files[0].transactions[1].server_id = u32::MAX;
        assert_eq!(free_server_id(&files), u32::MAX - 1);
    }
}
