//! Reading binlog files by their events, parsed with mysql_common's
//! `binlog` module: the header events of a file (Format_description,
//! Previous_gtids), and where its whole transactions end, with their GTIDs
//! and commit times.
//!
//! Events are framed here by their 19-byte common header (the size at bytes
//! 9..13) before mysql_common sees them, because its reader expects whole
//! events (a growing file ends in a partly written one). Everything inside
//! an event is mysql_common's.

use mysql_common::binlog::consts::{BinlogVersion, EventType};
use mysql_common::binlog::events::{
    Event, EventData, FormatDescriptionEvent, GtidEvent, PreviousGtidsEvent,
};

use super::gtid_set::{Gtid, GtidSet, Tsid, Uuid};

/// Every binlog file starts with these four bytes.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
/// The common header of every event (v4).
pub const HEADER_LEN: usize = 19;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a binlog file (it does not start with the binlog magic bytes)")]
    NotABinlog,
    #[error("at byte {offset}: {problem}")]
    Bad { offset: u64, problem: String },
}

fn bad(offset: u64, problem: impl std::fmt::Display) -> EventError {
    EventError::Bad {
        offset,
        problem: problem.to_string(),
    }
}

/// The size of the event starting at `bytes[0]`, when its header is there.
pub fn event_size(bytes: &[u8]) -> Option<usize> {
    let size = bytes.get(9..13)?;
    Some(u32::from_le_bytes(size.try_into().ok()?) as usize)
}

/// The whole event at the start of `bytes`, parsed; None when it is not
/// all there yet.
fn read_event(
    fde: &FormatDescriptionEvent<'static>,
    bytes: &[u8],
    offset: u64,
) -> Result<Option<(Event, usize)>, EventError> {
    let Some(size) = event_size(bytes) else {
        return Ok(None);
    };
    if size < HEADER_LEN {
        return Err(bad(offset, format!("an event of {size} bytes")));
    }
    if bytes.len() < size {
        return Ok(None);
    }
    let event = Event::read(fde, &bytes[..size]).map_err(|e| bad(offset, e))?;
    Ok(Some((event, size)))
}

/// What the first events of a binlog file say.
#[derive(Debug, Clone)]
pub struct FileHeader {
    /// How the file's events are laid out (checksums): needed to parse any
    /// event of the file.
    pub fde: FormatDescriptionEvent<'static>,
    /// Every transaction the server had logged before this file.
    pub previous_gtids: GtidSet,
}

/// Reads the magic, the Format_description and the Previous_gtids events
/// from the first bytes of a file (a few hundred bytes are enough; the
/// Previous_gtids event grows with the number of source UUIDs). None when
/// `bytes` does not hold them all yet.
pub fn read_file_header(bytes: &[u8]) -> Result<Option<FileHeader>, EventError> {
    if bytes.len() < MAGIC.len() {
        return Ok(None);
    }
    if bytes[..4] != MAGIC {
        return Err(EventError::NotABinlog);
    }
    let mut fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let mut at = MAGIC.len();
    loop {
        let Some((event, size)) = read_event(&fde, &bytes[at..], at as u64)? else {
            return Ok(None);
        };
        let offset = at as u64;
        at += size;
        match event.header().event_type() {
            Ok(EventType::FORMAT_DESCRIPTION_EVENT) => {
                fde = event
                    .read_event::<FormatDescriptionEvent>()
                    .map_err(|e| bad(offset, e))?
                    .into_owned()
                    .with_footer(event.footer());
            }
            Ok(EventType::PREVIOUS_GTIDS_EVENT) => {
                let previous = event
                    .read_event::<PreviousGtidsEvent>()
                    .map_err(|e| bad(offset, e))?;
                return Ok(Some(FileHeader {
                    fde,
                    previous_gtids: previous_gtids(&previous),
                }));
            }
            // Only a Format_description may come before Previous_gtids
            // (and nothing precedes the first Format_description).
            _ => {
                return Err(bad(
                    offset,
                    "no Previous_gtids event at the start of the file (is GTID logging on?)",
                ));
            }
        }
    }
}

fn previous_gtids(event: &PreviousGtidsEvent) -> GtidSet {
    let mut set = GtidSet::new();
    for sid in event.sids() {
        let tsid = Tsid {
            uuid: Uuid(sid.uuid()),
            tag: sid
                .tag()
                .map(|t| t.as_str().to_ascii_lowercase())
                .unwrap_or_default(),
        };
        for interval in sid.intervals() {
            // mysql_common's intervals are half-open, ours inclusive.
            if interval.end() > interval.start() {
                set.add_interval(&tsid, interval.start(), interval.end() - 1);
            }
        }
    }
    set
}

/// One whole transaction found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Byte offsets in the file: where its GTID event starts and where the
    /// transaction ends.
    pub start: u64,
    pub end: u64,
    /// None for an anonymous transaction (logged with GTIDs off).
    pub gtid: Option<Gtid>,
    /// When it committed on this server, microseconds since the epoch.
    pub commit_micros: u64,
    /// When it committed on the server that first ran it (the source of a
    /// replica; this server for its own transactions), microseconds.
    pub original_commit_micros: u64,
    /// The server_id of its GTID event: the server that first ran it.
    pub server_id: u32,
}

/// What a run of bytes of a file holds, up to its last whole transaction.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Offset after the last whole transaction or event outside one; the
    /// bytes up to it can be stored as they are.
    pub end: u64,
    pub transactions: Vec<Transaction>,
    /// A Rotate or Stop event was seen: the server writes nothing more to
    /// this file.
    pub closed: bool,
}

impl Scan {
    pub fn gtids(&self) -> GtidSet {
        let mut set = GtidSet::new();
        for gtid in self.transactions.iter().filter_map(|t| t.gtid.as_ref()) {
            set.insert(gtid);
        }
        set
    }
}

/// Walks the events of `bytes`, the file's contents from byte `start` (an
/// event boundary at or after the header events), and says where its last
/// whole transaction ends. A transaction's extent comes from its GTID
/// event's `transaction_length`, so its other events are skipped, not parsed.
pub fn scan(
    fde: &FormatDescriptionEvent<'static>,
    bytes: &[u8],
    start: u64,
) -> Result<Scan, EventError> {
    let mut scan = Scan {
        end: start,
        ..Scan::default()
    };
    let mut at = 0usize;
    while let Some((event, size)) = read_event(fde, &bytes[at..], start + at as u64)? {
        let offset = start + at as u64;
        let kind = event.header().event_type_raw();
        let gtid_event = match event.read_data().map_err(|e| bad(offset, e))? {
            Some(EventData::GtidEvent(e)) => Some((e, true)),
            Some(EventData::AnonymousGtidEvent(e)) => Some((e.0, false)),
            Some(EventData::RotateEvent(_) | EventData::StopEvent) => {
                scan.closed = true;
                None
            }
            _ => None,
        };
        let advance = match gtid_event {
            Some((gtid_event, has_gtid)) => {
                let length = gtid_event.tx_length() as usize;
                if length < size {
                    return Err(bad(
                        offset,
                        format!(
                            "a GTID event (type {kind}) without its transaction's length: \
                             binlogs of servers before 8.0.2 cannot be archived"
                        ),
                    ));
                }
                if bytes.len() - at < length {
                    break;
                }
                scan.transactions.push(Transaction {
                    start: offset,
                    end: offset + length as u64,
                    gtid: has_gtid.then(|| gtid_of(&gtid_event)),
                    commit_micros: gtid_event.immediate_commit_timestamp(),
                    original_commit_micros: gtid_event.original_commit_timestamp(),
                    server_id: event.header().server_id(),
                });
                length
            }
            None => size,
        };
        at += advance;
        scan.end = start + at as u64;
    }
    Ok(scan)
}

fn gtid_of(event: &GtidEvent) -> Gtid {
    Gtid {
        tsid: Tsid {
            uuid: Uuid(event.sid()),
            tag: event
                .tag()
                .map(|t| t.as_str().to_ascii_lowercase())
                .unwrap_or_default(),
        },
        gno: event.gno(),
    }
}

/// Reads a whole local binlog file's transactions (for tests and replay
/// planning): its header and every whole transaction in it.
pub fn read_file(bytes: &[u8]) -> Result<(FileHeader, Scan), EventError> {
    let header = read_file_header(bytes)?.ok_or_else(|| bad(0, "the file ends in its header"))?;
    let start = header_end(bytes)?;
    let scan = scan(&header.fde, &bytes[start as usize..], start)?;
    Ok((header, scan))
}

/// The offset right after the Previous_gtids event.
pub fn header_end(bytes: &[u8]) -> Result<u64, EventError> {
    let mut at = MAGIC.len();
    loop {
        let size = event_size(&bytes[at..]).ok_or_else(|| bad(at as u64, "truncated header"))?;
        let kind = bytes[at + 4];
        at += size;
        if kind == EventType::PREVIOUS_GTIDS_EVENT as u8 {
            return Ok(at as u64);
        }
        if at >= bytes.len() {
            return Err(bad(at as u64, "no Previous_gtids event"));
        }
    }
}
