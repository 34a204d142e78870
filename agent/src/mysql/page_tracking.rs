//! The statements of the server's page tracking (`component_mysqlbackup`,
//! MySQL 8.0.18+): the server records the id of every page it flushes,
//! bulk-loads or recovers while tracking runs, and writes the ids recorded
//! between two LSNs to `<datadir>/#meb/<backupid>.idx` on request. The
//! functions need SUPER or BACKUP_ADMIN; they answer with a number, not an
//! error, so every answer is checked here.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::{Error, Result, stmt};

/// The component as `INSTALL COMPONENT` names it.
pub const COMPONENT: &str = "file://component_mysqlbackup";

/// `ER_SP_DOES_NOT_EXIST`: calling a function of a component not installed.
const ER_SP_DOES_NOT_EXIST: u16 = 1305;
/// `ER_NO_DB_ERROR`: the same, in a session without a default database (the
/// server then looks for a stored function in no database).
const ER_NO_DB_ERROR: u16 = 1046;
/// `ER_PAGE_TRACKING_RANGE_NOT_TRACKED`, as the functions answer it.
pub const RANGE_NOT_TRACKED: i64 = 3803;

/// Whether and since when the server tracks pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    /// `component_mysqlbackup` is not installed.
    NoComponent,
    /// Installed, not tracking.
    Stopped,
    /// Tracking, without a gap, since this LSN (a server restart keeps it;
    /// stopping and starting again begins a new LSN).
    Since(u64),
}

/// Where the server's page tracking stands.
pub async fn state(conn: &mut Conn) -> Result<Tracking> {
    match conn
        .query_first::<i64, _>("SELECT mysqlbackup_page_track_get_start_lsn()")
        .await
    {
        Ok(Some(lsn)) if lsn > 0 => Ok(Tracking::Since(lsn as u64)),
        Ok(_) => Ok(Tracking::Stopped),
        Err(mysql_async::Error::Server(e))
            if e.code == ER_SP_DOES_NOT_EXIST || e.code == ER_NO_DB_ERROR =>
        {
            Ok(Tracking::NoComponent)
        }
        Err(e) => Err(stmt("mysqlbackup_page_track_get_start_lsn()")(e)),
    }
}

/// Installs the component (it stays installed across restarts, as a row
/// of `mysql.component`). Needs INSERT on `mysql.component`.
pub async fn install_component(conn: &mut Conn) -> Result<()> {
    conn.query_drop(format!("INSTALL COMPONENT '{COMPONENT}'"))
        .await
        .map_err(stmt("INSTALL COMPONENT 'file://component_mysqlbackup'"))
}

/// Starts tracking, or, when it runs, marks a new point to read from (the
/// server skips that when few pages were recorded since the last one).
/// Returns the LSN from which pages are tracked without a gap.
pub async fn start(conn: &mut Conn) -> Result<u64> {
    let answer: Option<i64> = conn
        .query_first("SELECT mysqlbackup_page_track_set(1)")
        .await
        .map_err(stmt("mysqlbackup_page_track_set(1)"))?;
    match answer {
        Some(lsn) if lsn > 0 => Ok(lsn as u64),
        other => Err(Error::Unexpected {
            what: "mysqlbackup_page_track_set(1)",
            detail: format!(
                "answered {other:?} (a negative answer is the server's error number; \
                 the function needs SUPER or BACKUP_ADMIN)"
            ),
        }),
    }
}

/// Asks the server to write the ids of the pages tracked from `from_lsn`
/// to now into `<datadir>/#meb/<backup_id>.idx` (`backup_id`: digits only,
/// as the component requires; the file must not exist). Returns the
/// function's answer: 0 when written, [`RANGE_NOT_TRACKED`] when tracking
/// does not reach back to `from_lsn` or has recorded nothing since it, any
/// other number the server's error.
pub async fn write_changed_pages(conn: &mut Conn, backup_id: &str, from_lsn: u64) -> Result<i64> {
    debug_assert!(backup_id.bytes().all(|b| b.is_ascii_digit()));
    conn.query_drop(format!("SET GLOBAL mysqlbackup.backupid = '{backup_id}'"))
        .await
        .map_err(stmt("SET GLOBAL mysqlbackup.backupid"))?;
    // Stop LSN 0: up to the last checkpoint the tracking has recorded, and
    // the pages recorded after it.
    // A literal, not a parameter: the function insists on integer
    // arguments, and a parameter's type is the server's guess.
    let answer: Option<i64> = conn
        .query_first(format!(
            "SELECT mysqlbackup_page_track_get_changed_pages({from_lsn}, 0)"
        ))
        .await
        .map_err(stmt("mysqlbackup_page_track_get_changed_pages()"))?;
    answer.ok_or(Error::Unexpected {
        what: "mysqlbackup_page_track_get_changed_pages()",
        detail: "no answer".into(),
    })
}

/// Points `mysqlbackup.backupid` elsewhere: the server then deletes the
/// page list it wrote for the old id (our own removal is the first try;
/// this works where the agent may not delete in the datadir).
pub async fn forget_changed_pages(conn: &mut Conn, next_id: &str) -> Result<()> {
    conn.query_drop(format!("SET GLOBAL mysqlbackup.backupid = '{next_id}'"))
        .await
        .map_err(stmt("SET GLOBAL mysqlbackup.backupid"))
}
