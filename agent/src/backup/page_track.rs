//! Changed pages from the server's page tracking: whether it can serve an
//! incremental, the list it writes (read, then removed from the datadir),
//! and the point each backup leaves for the next incremental.
//!
//! Why the list is enough. An incremental must hold every page changed at
//! or after its base's start checkpoint and before its own (later changes
//! are in its redo). Such a page is flushed before the incremental's start
//! checkpoint is written, and tracking records a page when it is flushed,
//! at least once after each reset point. So the list from a reset point
//! at or before the base's start checkpoint holds it.
//!
//! A backup that finds tracking running (or starts it, with
//! `--page-tracking`) first makes a reset point and records its LSN `T` in
//! its manifest. If that backup reads every page that may have changed (a
//! full backup, or an incremental by scan), a page flushed before `T` was
//! read by it with that flush in it, so the next incremental may ask from
//! `T` even when `T` is after the base's start checkpoint: that is what
//! lets the first incremental after `--page-tracking` use it. After a
//! page-tracked base (it read only its list) the next asks from the base's
//! start checkpoint.
//!
//! The server refuses a range it has not tracked without a gap (tracking
//! stopped since, or started later). Pages listed more than once, or
//! unchanged since the base, are filtered by their LSN as the scan does.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::Conn;

use super::Error;
use super::incremental::Base;
use crate::meta::ChangedPages;
use crate::mysql::{
    self,
    page_tracking::{self, RANGE_NOT_TRACKED, Tracking},
};

/// Where the server writes the page lists, under its datadir.
const LIST_DIR: &str = "#meb";

/// How an incremental finds its changed pages.
#[derive(Debug)]
pub enum Method {
    /// Read every page.
    FullScan,
    /// The pages the server's tracking lists, per tablespace.
    PageTracking(ChangedPageList),
}

impl Method {
    pub fn recorded(&self) -> ChangedPages {
        match self {
            Method::FullScan => ChangedPages::FullScan,
            Method::PageTracking(_) => ChangedPages::PageTracking,
        }
    }
}

/// Page numbers by tablespace id, sorted, each once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangedPageList {
    by_space: HashMap<u32, Vec<u32>>,
}

impl ChangedPageList {
    /// Parses the server's list: 8 bytes per page, the space id then the
    /// page number, big-endian.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(8) {
            return Err(format!(
                "{} bytes is not a whole number of 8-byte page ids",
                bytes.len()
            ));
        }
        let mut by_space: HashMap<u32, Vec<u32>> = HashMap::new();
        for id in bytes.chunks_exact(8) {
            let space = u32::from_be_bytes(id[..4].try_into().expect("4 bytes"));
            let page = u32::from_be_bytes(id[4..].try_into().expect("4 bytes"));
            by_space.entry(space).or_default().push(page);
        }
        for pages in by_space.values_mut() {
            pages.sort_unstable();
            pages.dedup();
        }
        Ok(Self { by_space })
    }

    /// The listed pages of one tablespace (tablespace page numbers).
    pub fn pages(&self, space_id: u32) -> &[u32] {
        self.by_space.get(&space_id).map_or(&[], Vec::as_slice)
    }

    /// Pages listed in all, each once.
    pub fn len(&self) -> usize {
        self.by_space.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// With `--page-tracking`: installs the component if needed and starts
/// tracking (or marks a new point when it runs). Without it, marks a new
/// point only when tracking already runs, so the next incremental reads
/// the pages since this backup instead of since an older one; a server
/// without tracking is left as it is. Returns the LSN to record.
pub async fn mark(conn: &mut Conn, start_tracking: bool) -> Result<Option<u64>, Error> {
    let state = match page_tracking::state(conn).await {
        Ok(state) => state,
        // Only a convenience for the next incremental: never a reason to
        // fail this backup.
        Err(e) if !start_tracking => {
            tracing::warn!(error = %e, "cannot ask the server about page tracking; the next incremental may scan");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    match state {
        Tracking::NoComponent if start_tracking => {
            page_tracking::install_component(conn).await?;
            tracing::info!(
                component = page_tracking::COMPONENT,
                "installed for --page-tracking"
            );
        }
        Tracking::NoComponent | Tracking::Stopped if !start_tracking => return Ok(None),
        _ => {}
    }
    match page_tracking::start(conn).await {
        Ok(lsn) => {
            tracing::info!(
                lsn,
                "page tracking runs; the next incremental can read from here"
            );
            Ok(Some(lsn))
        }
        Err(e) if start_tracking => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "page tracking runs but this user cannot mark a point in it; the next incremental may scan");
            Ok(None)
        }
    }
}

/// Decides how the incremental finds its pages and, for page tracking,
/// fetches the list. Call it once the redo copy has started (its start
/// checkpoint written, so every page the incremental needs from the list
/// has been flushed and recorded) and before any page is read.
/// `required` is `--incremental=page-track`: then anything that keeps the
/// list from being used is an error naming why; by default it is logged
/// and the incremental scans. `--incremental=full-scan` never asks.
pub async fn choose(
    conn: &mut Conn,
    datadir: &Path,
    base: &Base,
    requested: Option<ChangedPages>,
) -> Result<Method, Error> {
    if requested == Some(ChangedPages::FullScan) {
        return Ok(Method::FullScan);
    }
    let required = requested == Some(ChangedPages::PageTracking);
    let fetched = match fetch(conn, datadir, base).await {
        Ok(fetched) => fetched,
        Err(e) if required => return Err(e),
        Err(e) => Err(e.to_string()),
    };
    match fetched {
        Ok(list) => {
            tracing::info!(
                pages = list.len(),
                "incremental by page tracking: reading only the pages the server listed"
            );
            Ok(Method::PageTracking(list))
        }
        Err(why) if required => Err(Error::Unsupported(format!(
            "--incremental=page-track: {why}; take this incremental with --incremental=full-scan \
             (or without a method, which falls back to it)"
        ))),
        Err(why) => {
            tracing::info!(reason = %why, "incremental by full scan: page tracking cannot serve it");
            Ok(Method::FullScan)
        }
    }
}

/// The LSN from which to ask for the pages: the base's start checkpoint,
/// or the point the base marked before its copy when that is later and
/// the base read every page that could have changed (a full backup, or an
/// incremental by full scan); see the module's comment. That lets the
/// first incremental after `--page-tracking` use it.
/// `base_method`: how the base found its pages (`None`: a full backup).
pub fn list_from(since: u64, base_mark: Option<u64>, base_method: Option<ChangedPages>) -> u64 {
    let read_every_page = base_method.is_none_or(|m| m == ChangedPages::FullScan);
    match base_mark {
        Some(mark) if read_every_page => since.max(mark),
        _ => since,
    }
}

/// The list, or why tracking cannot give it (the inner error).
async fn fetch(
    conn: &mut Conn,
    datadir: &Path,
    base: &Base,
) -> Result<Result<ChangedPageList, String>, Error> {
    let from = list_from(
        base.since_lsn(),
        base.manifest.page_tracking_lsn,
        base.manifest.incremental.as_ref().map(|i| i.method),
    );
    let tracked_from = match page_tracking::state(conn).await? {
        Tracking::NoComponent => {
            return Ok(Err(format!(
                "the server has no page tracking ({} is not installed); a backup taken with \
                 --page-tracking installs and starts it for the incrementals after it",
                page_tracking::COMPONENT
            )));
        }
        Tracking::Stopped => {
            return Ok(Err(
                "page tracking is not running on the server; a backup taken with \
                           --page-tracking starts it for the incrementals after it"
                    .into(),
            ));
        }
        Tracking::Since(lsn) => lsn,
    };
    if tracked_from > from {
        return Ok(Err(format!(
            "the server's page tracking started at LSN {tracked_from}, after the base {} began \
             (pages from LSN {from} are needed): it does not cover the base. Take the base again \
             with --page-tracking, or a full backup, to start a chain it covers",
            base.reference.location
        )));
    }
    // Tracking records a page when the server flushes it, so it answers
    // only up to the server's last checkpoint: an incremental taken seconds
    // after its base can ask before the server has checkpointed past the
    // base's start, and is then told "not tracked". It waits for that
    // checkpoint (a little), then asks once more.
    let mut answer = read_from(conn, datadir, from, tracked_from).await?;
    if matches!(answer, Err(RANGE_NOT_TRACKED)) {
        let checkpoint = mysql::checkpoint_lsn(conn).await?;
        if checkpoint <= from {
            tracing::info!(
                from,
                checkpoint,
                "page tracking lists pages up to the server's last checkpoint: waiting for it to pass"
            );
            if !checkpoint_passes(conn, from).await? {
                return Ok(Err(format!(
                    "the server has not checkpointed past LSN {from}, where the pages are needed \
                     from, in {} s (its checkpoint was at LSN {checkpoint}); page tracking \
                     records a page when the server flushes it, so it cannot list them yet",
                    CHECKPOINT_WAIT.as_secs()
                )));
            }
            answer = read_from(conn, datadir, from, tracked_from).await?;
        }
    }
    match answer {
        Ok(list) => Ok(Ok(list)),
        // Not tracked with the checkpoint past `from`: a real gap.
        Err(RANGE_NOT_TRACKED) => Ok(Err(format!(
            "the server's page tracking does not cover LSN {from} to now without a gap \
             (was it stopped and started again?)"
        ))),
        Err(code) => Ok(Err(format!(
            "mysqlbackup_page_track_get_changed_pages() answered {code}"
        ))),
    }
}

/// How long an incremental waits for the server's checkpoint to pass the
/// LSN its pages are needed from.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);

/// Whether the server's checkpoint passes `lsn` within [`CHECKPOINT_WAIT`].
async fn checkpoint_passes(conn: &mut Conn, lsn: u64) -> Result<bool, Error> {
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    loop {
        if mysql::checkpoint_lsn(conn).await? > lsn {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The list from `from`, or, when tracking has recorded nothing since
/// `from` (answered as "not tracked" too), from where tracking began:
/// still exact, a longer list filtered by LSN. `Err` is the server's
/// answer to the last of them.
async fn read_from(
    conn: &mut Conn,
    datadir: &Path,
    from: u64,
    tracked_from: u64,
) -> Result<Result<ChangedPageList, i64>, Error> {
    match read_list(conn, datadir, from).await? {
        Err(code) if code == RANGE_NOT_TRACKED && from != tracked_from => {
            read_list(conn, datadir, tracked_from).await
        }
        answer => Ok(answer),
    }
}

/// Has the server write the list from `from_lsn`, reads it and removes it
/// (and `#meb`, when the server created it for us). `Err` is the server's
/// answer when it wrote nothing.
async fn read_list(
    conn: &mut Conn,
    datadir: &Path,
    from_lsn: u64,
) -> Result<Result<ChangedPageList, i64>, Error> {
    let dir = datadir.join(LIST_DIR);
    let dir_existed = dir.exists();
    let id = list_id();
    let answer = page_tracking::write_changed_pages(conn, &id, from_lsn).await;
    let file = dir.join(format!("{id}.idx"));
    let read = match answer {
        Ok(0) => std::fs::read(&file).map_err(|e| {
            Error::Unsupported(format!(
                "cannot read the server's page list {}: {e} (the agent must read the server's \
                 datadir)",
                file.display()
            ))
        }),
        Ok(code) => {
            remove_list(conn, &file, &dir, dir_existed).await;
            return Ok(Err(code));
        }
        Err(e) => Err(e.into()),
    };
    remove_list(conn, &file, &dir, dir_existed).await;
    let list = ChangedPageList::parse(&read?).map_err(|why| {
        Error::Unsupported(format!("the server's page list {}: {why}", file.display()))
    })?;
    Ok(Ok(list))
}

/// Removes the list from the datadir: by hand, else by pointing the
/// server's backup id elsewhere (it then deletes its last list itself).
async fn remove_list(conn: &mut Conn, file: &Path, dir: &Path, dir_existed: bool) {
    match std::fs::remove_file(file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::debug!(error = %e, file = %file.display(), "asking the server to remove its page list");
            if let Err(e) = page_tracking::forget_changed_pages(conn, &list_id()).await {
                tracing::warn!(error = %e, file = %file.display(), "could not remove the server's page list");
            }
        }
    }
    if !dir_existed {
        // Only when empty: another tool's lists stay.
        let _ = std::fs::remove_dir(dir);
    }
}

/// A fresh id for the server's list file: digits only (the component
/// refuses anything else), unique per call.
fn list_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}{}", std::process::id())
}

/// The file-relative page runs to read of a file holding tablespace pages
/// `first_page ..` (`whole_pages` of them): the listed pages it holds,
/// less `skip` (tablespace page numbers never validated), consecutive
/// pages joined so they are read in one go.
pub fn runs_in_file(
    listed: &[u32],
    first_page: u64,
    whole_pages: u64,
    skip: &std::ops::Range<u64>,
) -> Vec<std::ops::Range<u64>> {
    let mut runs: Vec<std::ops::Range<u64>> = Vec::new();
    let end = first_page + whole_pages;
    for &page in listed {
        let page = u64::from(page);
        if page < first_page || page >= end || skip.contains(&page) {
            continue;
        }
        let in_file = page - first_page;
        match runs.last_mut() {
            Some(run) if run.end == in_file => run.end += 1,
            _ => runs.push(in_file..in_file + 1),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(space: u32, page: u32) -> Vec<u8> {
        [space.to_be_bytes(), page.to_be_bytes()].concat()
    }

    #[test]
    fn the_servers_list_is_read_by_space_sorted_and_once() {
        let bytes = [id(5, 9), id(0, 3), id(5, 2), id(5, 9), id(u32::MAX - 1, 7)].concat();
        let list = ChangedPageList::parse(&bytes).unwrap();
        assert_eq!(list.pages(5), &[2, 9]);
        assert_eq!(list.pages(0), &[3]);
        assert_eq!(list.pages(u32::MAX - 1), &[7]);
        assert_eq!(list.pages(6), &[] as &[u32]);
        assert_eq!(list.len(), 4);
    }

    #[test]
    fn a_torn_list_is_refused() {
        let err = ChangedPageList::parse(&[0u8; 12]).unwrap_err();
        assert!(err.contains("12 bytes"), "{err}");
    }

    #[test]
    fn the_list_starts_at_the_bases_mark_only_when_the_base_read_every_page() {
        use ChangedPages::{FullScan, PageTracking};
        assert_eq!(list_from(100, Some(150), None), 150);
        assert_eq!(list_from(100, Some(150), Some(FullScan)), 150);
        assert_eq!(list_from(100, Some(150), Some(PageTracking)), 100);
        assert_eq!(list_from(100, Some(80), None), 100);
        assert_eq!(list_from(100, None, None), 100);
    }

    #[test]
    fn runs_join_neighbours_and_keep_to_the_file() {
        // A later file of the system tablespace: pages 100..150.
        let runs = runs_in_file(&[3, 100, 101, 102, 140, 142, 143, 150], 100, 50, &(0..0));
        assert_eq!(runs, vec![0..3, 40..41, 42..44]);
        // The old doublewrite area is left out, as the scan leaves it out.
        let runs = runs_in_file(&[1, 63, 64, 65, 191, 192, 193], 0, 1000, &(64..192));
        assert_eq!(runs, vec![1..2, 63..64, 192..194]);
    }
}
