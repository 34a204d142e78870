//! Live progress of one backup, shared by the copy threads and whoever
//! reports it (the CLI's progress bar, the agent's gRPC stream).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Connecting,
    CopyingTablespaces,
    ConsistentPoint,
    FinishingRedo,
    WritingMetadata,
    Done,
}

#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub redo_start_lsn: AtomicU64,
    pub redo_copied_lsn: AtomicU64,
    /// Torn pages that a re-read fixed.
    pub pages_reread: AtomicU64,
    phase: Mutex<Option<Phase>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub phase: Option<Phase>,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub files_total: u64,
    pub files_done: u64,
    pub redo_start_lsn: u64,
    pub redo_copied_lsn: u64,
    pub pages_reread: u64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Some(phase);
        tracing::info!(?phase, "backup phase");
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            phase: *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            bytes_total: get(&self.bytes_total),
            bytes_done: get(&self.bytes_done),
            files_total: get(&self.files_total),
            files_done: get(&self.files_done),
            redo_start_lsn: get(&self.redo_start_lsn),
            redo_copied_lsn: get(&self.redo_copied_lsn),
            pages_reread: get(&self.pages_reread),
        }
    }
}
