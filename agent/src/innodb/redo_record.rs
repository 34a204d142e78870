//! One redo log record (MySQL 8.0.30+ and 9.x): its type, what it addresses,
//! and above all its length. Pure: bytes in, values out.
//!
//! Redo records carry no length field; the only way to find where one ends
//! is to decode its body the way the server's parser does. So every record
//! type the server can write has its layout here, including the `_8027`
//! forms of 8.0.29 and older that the server still reads. A byte sequence
//! that no layout explains is an error, never a guess: the walk over the log
//! ([`super::redo_walk`]) checks each length against the block headers.
//!
//! Layout of a record: a type byte (bit 7 = "this mini-transaction has only
//! this record"), then, for page and file records, the space id and page
//! number as compressed integers, then a type-specific body. Many bodies of
//! index pages start with a description of the index (its field lengths),
//! which we skip over.
//!
//! Sources: `include/mtr0types.h` (type codes), `mtr/mtr0log.cc` (record
//! header, index description, n-byte and string writes),
//! `log/log0recv.cc` / `log/log0redo.cc` (which parser each type uses),
//! `page/page0cur.cc`, `page/page0page.cc`, `page/page0zip.cc`,
//! `btr/btr0cur.cc`, `btr/btr0btr.cc`, `row/row0upd.cc`, `trx/trx0rec.cc`,
//! `trx/trx0undo.cc`, `fil/fil0fil.cc` (file operations),
//! `dict/dict0dict.cc` (dynamic metadata), `include/mach0data.ic`
//! (compressed integers).

use std::fmt;

/// Bit 7 of the type byte: the record is a whole mini-transaction.
pub const SINGLE_REC_FLAG: u8 = 0x80;

/// A record type code (`mlog_id_t`), without [`SINGLE_REC_FLAG`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u8);

macro_rules! record_types {
    ($($name:ident = $code:expr, $text:expr;)*) => {
        impl RecordType {
            $(pub const $name: RecordType = RecordType($code);)*

            /// The server's name for the type (`MLOG_…`), or `None` for a
            /// code no server writes.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

record_types! {
    ONE_BYTE = 1, "MLOG_1BYTE";
    TWO_BYTES = 2, "MLOG_2BYTES";
    FOUR_BYTES = 4, "MLOG_4BYTES";
    EIGHT_BYTES = 8, "MLOG_8BYTES";
    REC_INSERT_8027 = 9, "MLOG_REC_INSERT_8027";
    REC_CLUST_DELETE_MARK_8027 = 10, "MLOG_REC_CLUST_DELETE_MARK_8027";
    REC_SEC_DELETE_MARK = 11, "MLOG_REC_SEC_DELETE_MARK";
    REC_UPDATE_IN_PLACE_8027 = 13, "MLOG_REC_UPDATE_IN_PLACE_8027";
    REC_DELETE_8027 = 14, "MLOG_REC_DELETE_8027";
    LIST_END_DELETE_8027 = 15, "MLOG_LIST_END_DELETE_8027";
    LIST_START_DELETE_8027 = 16, "MLOG_LIST_START_DELETE_8027";
    LIST_END_COPY_CREATED_8027 = 17, "MLOG_LIST_END_COPY_CREATED_8027";
    PAGE_REORGANIZE_8027 = 18, "MLOG_PAGE_REORGANIZE_8027";
    PAGE_CREATE = 19, "MLOG_PAGE_CREATE";
    UNDO_INSERT = 20, "MLOG_UNDO_INSERT";
    UNDO_ERASE_END = 21, "MLOG_UNDO_ERASE_END";
    UNDO_INIT = 22, "MLOG_UNDO_INIT";
    UNDO_HDR_REUSE = 24, "MLOG_UNDO_HDR_REUSE";
    UNDO_HDR_CREATE = 25, "MLOG_UNDO_HDR_CREATE";
    REC_MIN_MARK = 26, "MLOG_REC_MIN_MARK";
    IBUF_BITMAP_INIT = 27, "MLOG_IBUF_BITMAP_INIT";
    INIT_FILE_PAGE = 29, "MLOG_INIT_FILE_PAGE";
    WRITE_STRING = 30, "MLOG_WRITE_STRING";
    MULTI_REC_END = 31, "MLOG_MULTI_REC_END";
    DUMMY_RECORD = 32, "MLOG_DUMMY_RECORD";
    FILE_CREATE = 33, "MLOG_FILE_CREATE";
    FILE_RENAME = 34, "MLOG_FILE_RENAME";
    FILE_DELETE = 35, "MLOG_FILE_DELETE";
    COMP_REC_MIN_MARK = 36, "MLOG_COMP_REC_MIN_MARK";
    COMP_PAGE_CREATE = 37, "MLOG_COMP_PAGE_CREATE";
    COMP_REC_INSERT_8027 = 38, "MLOG_COMP_REC_INSERT_8027";
    COMP_REC_CLUST_DELETE_MARK_8027 = 39, "MLOG_COMP_REC_CLUST_DELETE_MARK_8027";
    COMP_REC_SEC_DELETE_MARK = 40, "MLOG_COMP_REC_SEC_DELETE_MARK";
    COMP_REC_UPDATE_IN_PLACE_8027 = 41, "MLOG_COMP_REC_UPDATE_IN_PLACE_8027";
    COMP_REC_DELETE_8027 = 42, "MLOG_COMP_REC_DELETE_8027";
    COMP_LIST_END_DELETE_8027 = 43, "MLOG_COMP_LIST_END_DELETE_8027";
    COMP_LIST_START_DELETE_8027 = 44, "MLOG_COMP_LIST_START_DELETE_8027";
    COMP_LIST_END_COPY_CREATED_8027 = 45, "MLOG_COMP_LIST_END_COPY_CREATED_8027";
    COMP_PAGE_REORGANIZE_8027 = 46, "MLOG_COMP_PAGE_REORGANIZE_8027";
    ZIP_WRITE_NODE_PTR = 48, "MLOG_ZIP_WRITE_NODE_PTR";
    ZIP_WRITE_BLOB_PTR = 49, "MLOG_ZIP_WRITE_BLOB_PTR";
    ZIP_WRITE_HEADER = 50, "MLOG_ZIP_WRITE_HEADER";
    ZIP_PAGE_COMPRESS = 51, "MLOG_ZIP_PAGE_COMPRESS";
    ZIP_PAGE_COMPRESS_NO_DATA_8027 = 52, "MLOG_ZIP_PAGE_COMPRESS_NO_DATA_8027";
    ZIP_PAGE_REORGANIZE_8027 = 53, "MLOG_ZIP_PAGE_REORGANIZE_8027";
    PAGE_CREATE_RTREE = 57, "MLOG_PAGE_CREATE_RTREE";
    COMP_PAGE_CREATE_RTREE = 58, "MLOG_COMP_PAGE_CREATE_RTREE";
    INIT_FILE_PAGE2 = 59, "MLOG_INIT_FILE_PAGE2";
    INDEX_LOAD = 61, "MLOG_INDEX_LOAD";
    TABLE_DYNAMIC_META = 62, "MLOG_TABLE_DYNAMIC_META";
    PAGE_CREATE_SDI = 63, "MLOG_PAGE_CREATE_SDI";
    COMP_PAGE_CREATE_SDI = 64, "MLOG_COMP_PAGE_CREATE_SDI";
    FILE_EXTEND = 65, "MLOG_FILE_EXTEND";
    REC_INSERT = 67, "MLOG_REC_INSERT";
    REC_CLUST_DELETE_MARK = 68, "MLOG_REC_CLUST_DELETE_MARK";
    REC_DELETE = 69, "MLOG_REC_DELETE";
    REC_UPDATE_IN_PLACE = 70, "MLOG_REC_UPDATE_IN_PLACE";
    LIST_END_COPY_CREATED = 71, "MLOG_LIST_END_COPY_CREATED";
    PAGE_REORGANIZE = 72, "MLOG_PAGE_REORGANIZE";
    ZIP_PAGE_REORGANIZE = 73, "MLOG_ZIP_PAGE_REORGANIZE";
    ZIP_PAGE_COMPRESS_NO_DATA = 74, "MLOG_ZIP_PAGE_COMPRESS_NO_DATA";
    LIST_END_DELETE = 75, "MLOG_LIST_END_DELETE";
    LIST_START_DELETE = 76, "MLOG_LIST_START_DELETE";
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "unknown record type {}", self.0),
        }
    }
}

/// What a record applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A page of a tablespace (file records name the space and page 0).
    Page { space_id: u32, page_no: u32 },
    /// Dynamic metadata of a table (`MLOG_TABLE_DYNAMIC_META`).
    Table { table_id: u64, version: u64 },
    /// `MLOG_MULTI_REC_END` and `MLOG_DUMMY_RECORD`.
    Nothing,
}

/// A record whose bytes are all present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub kind: RecordType,
    /// The type byte had [`SINGLE_REC_FLAG`].
    pub single: bool,
    pub target: Target,
    /// Offset of the body from the start of the record.
    pub body_at: usize,
    /// Length of the whole record, type byte included.
    pub len: usize,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The record goes on past the end of the bytes given.
    Incomplete,
    /// No server writes these bytes: damage, or a layout we do not know.
    Corrupt(String),
}

type Step<T> = Result<T, Stop>;

fn corrupt<T>(why: impl Into<String>) -> Step<T> {
    Err(Stop::Corrupt(why.into()))
}

/// Reads one record at the start of `buf`. `page_size` (the server's
/// `innodb_page_size`) bounds page offsets and lengths, which catches a
/// misread early.
pub fn parse(buf: &[u8], page_size: usize) -> Step<Record> {
    let mut c = Cursor { buf, pos: 0 };
    let type_byte = c.u8()?;
    let single = type_byte & SINGLE_REC_FLAG != 0;
    let kind = RecordType(type_byte & !SINGLE_REC_FLAG);
    let target = match kind {
        RecordType::MULTI_REC_END | RecordType::DUMMY_RECORD => {
            if single {
                return corrupt(format!("{kind} never carries the single-record flag"));
            }
            Target::Nothing
        }
        RecordType::TABLE_DYNAMIC_META => {
            let table_id = c.much_compressed()?;
            let version = c.much_compressed()?;
            Target::Table { table_id, version }
        }
        _ => {
            if kind.name().is_none() {
                return corrupt(format!("{kind}"));
            }
            let space_id = c.compressed()?;
            let page_no = c.compressed()?;
            Target::Page { space_id, page_no }
        }
    };
    let body_at = c.pos;
    body(kind, &mut c, page_size)?;
    Ok(Record {
        kind,
        single,
        target,
        body_at,
        len: c.pos,
    })
}

/// Skips the body of a record of type `kind`.
fn body(kind: RecordType, c: &mut Cursor, page_size: usize) -> Step<()> {
    type T = RecordType;
    match kind {
        T::MULTI_REC_END | T::DUMMY_RECORD => Ok(()),
        T::ONE_BYTE | T::TWO_BYTES | T::FOUR_BYTES => {
            c.page_offset(page_size)?;
            let value = c.compressed()?;
            let max = match kind {
                T::ONE_BYTE => 0xFF,
                T::TWO_BYTES => 0xFFFF,
                _ => u32::MAX,
            };
            if value > max {
                return corrupt(format!("{kind} writes {value}, which does not fit"));
            }
            Ok(())
        }
        T::EIGHT_BYTES => {
            c.page_offset(page_size)?;
            c.u64_compressed()
        }
        // No body: the page is (re)initialised from its type alone.
        T::PAGE_CREATE
        | T::COMP_PAGE_CREATE
        | T::PAGE_CREATE_RTREE
        | T::COMP_PAGE_CREATE_RTREE
        | T::PAGE_CREATE_SDI
        | T::COMP_PAGE_CREATE_SDI
        | T::INIT_FILE_PAGE
        | T::INIT_FILE_PAGE2
        | T::IBUF_BITMAP_INIT
        | T::UNDO_ERASE_END => Ok(()),
        T::WRITE_STRING => {
            let offset = c.page_offset(page_size)?;
            let len = usize::from(c.u16()?);
            if offset + len > page_size {
                return corrupt(format!(
                    "{kind} of {len} bytes at offset {offset} runs past the page"
                ));
            }
            c.skip(len)
        }
        T::UNDO_INSERT => {
            let len = usize::from(c.u16()?);
            c.skip(len)
        }
        T::UNDO_INIT => c.compressed().map(drop),
        T::UNDO_HDR_CREATE | T::UNDO_HDR_REUSE => c.u64_compressed(),
        T::REC_MIN_MARK | T::COMP_REC_MIN_MARK => c.page_offset(page_size).map(drop),
        T::REC_SEC_DELETE_MARK => sec_delete_mark(c, page_size),
        T::INDEX_LOAD => c.skip(8),
        T::FILE_CREATE => {
            c.skip(4)?;
            c.file_name().map(drop)
        }
        T::FILE_DELETE => c.file_name().map(drop),
        T::FILE_RENAME => {
            c.file_name()?;
            c.file_name().map(drop)
        }
        // The offset and length of the zero-filled extension.
        T::FILE_EXTEND => c.skip(16),
        T::TABLE_DYNAMIC_META => dynamic_metadata(c),
        T::ZIP_WRITE_NODE_PTR => c.skip(2 + 2 + 4),
        // Offset, offset on the compressed page, the 20-byte BLOB pointer.
        T::ZIP_WRITE_BLOB_PTR => c.skip(2 + 2 + 20),
        T::ZIP_WRITE_HEADER => {
            let offset = usize::from(c.u8()?);
            let len = usize::from(c.u8()?);
            // Writes of the page header only (below PAGE_DATA = 38 + 56).
            if len == 0 || offset + len >= 94 {
                return corrupt(format!("{kind} of {len} bytes at {offset}"));
            }
            c.skip(len)
        }
        T::ZIP_PAGE_COMPRESS => {
            let size = usize::from(c.u16()?);
            let trailer = usize::from(c.u16()?);
            if size + trailer > page_size {
                return corrupt(format!(
                    "{kind} of {size} + {trailer} bytes is larger than a page"
                ));
            }
            // FIL_PAGE_PREV and FIL_PAGE_NEXT, then the page image.
            c.skip(8 + size + trailer)
        }
        // Current forms: the index description, then the operation.
        T::REC_INSERT => {
            c.index()?;
            insert(c, page_size)
        }
        T::REC_CLUST_DELETE_MARK => {
            c.index()?;
            clust_delete_mark(c, page_size)
        }
        T::REC_UPDATE_IN_PLACE => {
            c.index()?;
            update_in_place(c, page_size)
        }
        T::REC_DELETE | T::LIST_END_DELETE | T::LIST_START_DELETE => {
            c.index()?;
            c.page_offset(page_size).map(drop)
        }
        T::LIST_END_COPY_CREATED => {
            c.index()?;
            copy_created(c)
        }
        T::PAGE_REORGANIZE => c.index(),
        // The compression level follows.
        T::ZIP_PAGE_REORGANIZE | T::ZIP_PAGE_COMPRESS_NO_DATA => {
            c.index()?;
            c.skip(1)
        }
        // The forms of 8.0.29 and older; REDUNDANT ones log no index.
        T::REC_INSERT_8027 | T::COMP_REC_INSERT_8027 => {
            c.index_8027(kind == T::COMP_REC_INSERT_8027)?;
            insert(c, page_size)
        }
        T::REC_CLUST_DELETE_MARK_8027 | T::COMP_REC_CLUST_DELETE_MARK_8027 => {
            c.index_8027(kind == T::COMP_REC_CLUST_DELETE_MARK_8027)?;
            clust_delete_mark(c, page_size)
        }
        T::COMP_REC_SEC_DELETE_MARK => {
            c.index_8027(true)?;
            sec_delete_mark(c, page_size)
        }
        T::REC_UPDATE_IN_PLACE_8027 | T::COMP_REC_UPDATE_IN_PLACE_8027 => {
            c.index_8027(kind == T::COMP_REC_UPDATE_IN_PLACE_8027)?;
            update_in_place(c, page_size)
        }
        T::REC_DELETE_8027
        | T::COMP_REC_DELETE_8027
        | T::LIST_END_DELETE_8027
        | T::LIST_START_DELETE_8027
        | T::COMP_LIST_END_DELETE_8027
        | T::COMP_LIST_START_DELETE_8027 => {
            let comp = matches!(
                kind,
                T::COMP_REC_DELETE_8027
                    | T::COMP_LIST_END_DELETE_8027
                    | T::COMP_LIST_START_DELETE_8027
            );
            c.index_8027(comp)?;
            c.page_offset(page_size).map(drop)
        }
        T::LIST_END_COPY_CREATED_8027 | T::COMP_LIST_END_COPY_CREATED_8027 => {
            c.index_8027(kind == T::COMP_LIST_END_COPY_CREATED_8027)?;
            copy_created(c)
        }
        T::PAGE_REORGANIZE_8027 => c.index_8027(false),
        T::COMP_PAGE_REORGANIZE_8027 => c.index_8027(true),
        T::ZIP_PAGE_REORGANIZE_8027 | T::ZIP_PAGE_COMPRESS_NO_DATA_8027 => {
            c.index_8027(true)?;
            c.skip(1)
        }
        other => corrupt(format!("{other} has no known layout")),
    }
}

/// `page_cur_parse_insert_rec`: the record before which to insert, then the
/// end of the new record that differs from it (with, when bit 0 of the
/// length is set, the header bits and how much of the old record to reuse).
fn insert(c: &mut Cursor, page_size: usize) -> Step<()> {
    c.page_offset(page_size)?;
    let end_seg = c.compressed()? as usize;
    if end_seg >= 2 * page_size {
        return corrupt(format!("insert of a {}-byte record", end_seg >> 1));
    }
    if end_seg & 1 != 0 {
        c.skip(1)?;
        c.compressed()?;
        c.compressed()?;
    }
    c.skip(end_seg >> 1)
}

/// `btr_cur_parse_del_mark_set_clust_rec`: flags, the mark, the system
/// columns, the record's offset.
fn clust_delete_mark(c: &mut Cursor, page_size: usize) -> Step<()> {
    c.skip(2)?;
    system_columns(c)?;
    c.page_offset(page_size).map(drop)
}

/// `btr_cur_parse_del_mark_set_sec_rec`: the mark, the record's offset.
fn sec_delete_mark(c: &mut Cursor, page_size: usize) -> Step<()> {
    c.skip(1)?;
    c.page_offset(page_size).map(drop)
}

/// `btr_cur_parse_update_in_place` and `row_upd_index_parse`: flags, the
/// system columns, the record's offset, info bits, then each changed field
/// as (field number, length, bytes); a length of `UNIV_SQL_NULL` has no bytes.
fn update_in_place(c: &mut Cursor, page_size: usize) -> Step<()> {
    c.skip(1)?;
    system_columns(c)?;
    c.page_offset(page_size)?;
    c.skip(1)?;
    let fields = c.compressed()?;
    for _ in 0..fields {
        c.compressed()?;
        let len = c.compressed()?;
        if len != u32::MAX {
            c.skip(len as usize)?;
        }
    }
    Ok(())
}

/// `row_upd_parse_sys_vals`: DB_TRX_ID's position, DB_ROLL_PTR (7 bytes),
/// DB_TRX_ID.
fn system_columns(c: &mut Cursor) -> Step<()> {
    c.compressed()?;
    c.skip(7)?;
    c.u64_compressed()
}

/// `page_parse_copy_rec_list_to_created_page`: a 4-byte length and that
/// many bytes of short-form inserts.
fn copy_created(c: &mut Cursor) -> Step<()> {
    let len = c.u32()? as usize;
    c.skip(len)
}

/// The body of `MLOG_TABLE_DYNAMIC_META`: a persister type, then its data
/// (`CorruptedIndexPersister`, `AutoIncPersister`).
fn dynamic_metadata(c: &mut Cursor) -> Step<()> {
    const PM_INDEX_CORRUPTED: u8 = 1;
    const PM_TABLE_AUTO_INC: u8 = 2;
    match c.u8()? {
        PM_INDEX_CORRUPTED => {
            // (space id, index id) of each corrupted index.
            let count = usize::from(c.u8()?);
            c.skip(count * (4 + 8))
        }
        PM_TABLE_AUTO_INC => c.much_compressed().map(drop),
        other => corrupt(format!("dynamic metadata of unknown kind {other}")),
    }
}

/// Index description flags of `INDEX_LOG_VERSION` 1 (8.0.30 and later).
const INDEX_COMPACT: u8 = 0x01;
const INDEX_VERSIONED: u8 = 0x02;
const INDEX_INSTANT: u8 = 0x04;
/// The one index description version of format 6 redo.
const INDEX_LOG_VERSION: u8 = 1;

/// A read position in a record.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline]
    fn take(&mut self, n: usize) -> Step<&[u8]> {
        let end = self.pos.checked_add(n).ok_or(Stop::Incomplete)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Stop::Incomplete)?;
        self.pos = end;
        Ok(bytes)
    }

    #[inline]
    fn skip(&mut self, n: usize) -> Step<()> {
        self.take(n).map(drop)
    }

    #[inline]
    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    fn u16(&mut self) -> Step<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A 2-byte offset into a page.
    #[inline]
    fn page_offset(&mut self, page_size: usize) -> Step<usize> {
        let offset = usize::from(self.u16()?);
        if offset >= page_size {
            return corrupt(format!(
                "page offset {offset} is past a {page_size}-byte page"
            ));
        }
        Ok(offset)
    }

    /// `mach_parse_compressed`: a u32 in 1 to 5 bytes, the length given by
    /// the high bits of the first byte. First bytes 0xF8 and up encode
    /// values near 2^32 (such as FIL_NULL) in fewer bytes.
    #[inline]
    fn compressed(&mut self) -> Step<u32> {
        let first = *self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
        let (len, value) = match first {
            0x00..=0x7F => (1, u32::from(first)),
            0x80..=0xBF => {
                let b = self.peek::<2>()?;
                (2, u32::from(u16::from_be_bytes(b)) & 0x3FFF)
            }
            0xC0..=0xDF => {
                let b = self.peek::<3>()?;
                (3, be24(b) & 0x1F_FFFF)
            }
            0xE0..=0xEF => {
                let b = self.peek::<4>()?;
                (4, u32::from_be_bytes(b) & 0x0FFF_FFFF)
            }
            0xF0..=0xF7 => {
                let b = self.peek::<5>()?;
                (5, u32::from_be_bytes([b[1], b[2], b[3], b[4]]))
            }
            0xF8..=0xFB => {
                let b = self.peek::<2>()?;
                (2, (u32::from(u16::from_be_bytes(b)) & 0x3FF) | 0xFFFF_FC00)
            }
            0xFC..=0xFD => {
                let b = self.peek::<3>()?;
                (3, (be24(b) & 0x1_FFFF) | 0xFFFE_0000)
            }
            0xFE..=0xFF => {
                let b = self.peek::<4>()?;
                (4, be24([b[1], b[2], b[3]]) | 0xFF00_0000)
            }
        };
        self.pos += len;
        Ok(value)
    }

    #[inline]
    fn peek<const N: usize>(&self) -> Step<[u8; N]> {
        self.buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
            .copied()
            .ok_or(Stop::Incomplete)
    }

    /// `mach_u64_parse_compressed`: the high half compressed, then the low
    /// half as 4 plain bytes.
    #[inline]
    fn u64_compressed(&mut self) -> Step<()> {
        self.compressed()?;
        self.skip(4)
    }

    /// `mach_parse_u64_much_compressed`: a compressed u32, or 0xFF followed
    /// by the high and low halves, each compressed.
    fn much_compressed(&mut self) -> Step<u64> {
        if *self.buf.get(self.pos).ok_or(Stop::Incomplete)? != 0xFF {
            return self.compressed().map(u64::from);
        }
        self.pos += 1;
        let high = u64::from(self.compressed()?);
        let low = u64::from(self.compressed()?);
        Ok(high << 32 | low)
    }

    /// A NUL-terminated file name with its 2-byte length.
    fn file_name(&mut self) -> Step<&[u8]> {
        let len = usize::from(self.u16()?);
        // The shortest name the server accepts is "a.ibd" (fil0fil.cc).
        if len < 5 {
            return corrupt(format!("file name of {len} bytes"));
        }
        self.take(len)
    }

    /// `mlog_parse_index` (`INDEX_LOG_VERSION` 1): version, flags, then the
    /// field counts and lengths unless the index is REDUNDANT and
    /// unversioned, then the fields added or dropped by INSTANT DDL.
    fn index(&mut self) -> Step<()> {
        let version = self.u8()?;
        if version != INDEX_LOG_VERSION {
            return corrupt(format!("index description of version {version}"));
        }
        let flags = self.u8()?;
        if flags & !(INDEX_COMPACT | INDEX_VERSIONED | INDEX_INSTANT) != 0 {
            return corrupt(format!("index description flags {flags:#04x}"));
        }
        let compact = flags & INDEX_COMPACT != 0;
        let versioned = flags & INDEX_VERSIONED != 0;
        if !compact && !versioned {
            return Ok(());
        }
        let fields = usize::from(self.u16()?);
        if compact {
            if flags & INDEX_INSTANT != 0 {
                self.skip(2)?;
            }
            // n_uniq, then a 2-byte length per field.
            self.skip(2)?;
            self.skip(2 * fields)?;
        }
        if versioned {
            let changed = self.u16()?;
            for _ in 0..changed {
                self.skip(2)?;
                let physical = self.u16()?;
                // Bit 15: the version that added it follows; bit 14: the
                // version that dropped it.
                if physical & 0x8000 != 0 {
                    self.skip(1)?;
                }
                if physical & 0x4000 != 0 {
                    self.skip(1)?;
                }
            }
        }
        Ok(())
    }

    /// `mlog_parse_index_8027`: nothing for REDUNDANT; for COMPACT the field
    /// count (bit 15: INSTANT, the real count follows), n_uniq and a 2-byte
    /// length per field.
    fn index_8027(&mut self, compact: bool) -> Step<()> {
        if !compact {
            return Ok(());
        }
        let mut fields = self.u16()?;
        if fields & 0x8000 != 0 {
            fields = self.u16()?;
        }
        self.skip(2)?;
        self.skip(2 * usize::from(fields))
    }
}

fn be24(b: [u8; 3]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// What a file operation record says, decoded from its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// `MLOG_FILE_CREATE`: a tablespace file was created.
    Create { path: String, flags: u32 },
    /// `MLOG_FILE_RENAME`.
    Rename { from: String, to: String },
    /// `MLOG_FILE_DELETE`.
    Delete { path: String },
}

/// Decodes the body of a file operation record (`record` as returned by
/// [`parse`] for `bytes`); `None` for other types.
pub fn file_op(record: &Record, bytes: &[u8]) -> Option<FileOp> {
    let mut c = Cursor {
        buf: bytes.get(..record.len)?,
        pos: record.body_at,
    };
    let name = |c: &mut Cursor| -> Option<String> {
        let raw = c.file_name().ok()?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        Some(String::from_utf8_lossy(raw).into_owned())
    };
    match record.kind {
        RecordType::FILE_CREATE => {
            let flags = c.u32().ok()?;
            Some(FileOp::Create {
                path: name(&mut c)?,
                flags,
            })
        }
        RecordType::FILE_RENAME => Some(FileOp::Rename {
            from: name(&mut c)?,
            to: name(&mut c)?,
        }),
        RecordType::FILE_DELETE => Some(FileOp::Delete {
            path: name(&mut c)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: usize = 16384;

    /// `mach_write_compressed`, the writer side, for building records.
    fn compressed(n: u32) -> Vec<u8> {
        match n {
            0..0x80 => vec![n as u8],
            0x80..0x4000 => ((n | 0x8000) as u16).to_be_bytes().to_vec(),
            0x4000..0x20_0000 => (n | 0xC0_0000).to_be_bytes()[1..].to_vec(),
            0x20_0000..0x1000_0000 => (n | 0xE000_0000).to_be_bytes().to_vec(),
            0xFFFF_FC00.. => (((n & 0x3FF) | 0xF800) as u16).to_be_bytes().to_vec(),
            0xFFFE_0000.. => ((n & 0x1_FFFF) | 0xFC_0000).to_be_bytes()[1..].to_vec(),
            0xFF00_0000.. => {
                let mut v = vec![0xFE];
                v.extend_from_slice(&n.to_be_bytes()[1..]);
                v
            }
            _ => {
                let mut v = vec![0xF0];
                v.extend_from_slice(&n.to_be_bytes());
                v
            }
        }
    }

    fn header(kind: RecordType, single: bool, space: u32, page: u32) -> Vec<u8> {
        let mut v = vec![kind.0 | if single { SINGLE_REC_FLAG } else { 0 }];
        v.extend(compressed(space));
        v.extend(compressed(page));
        v
    }

    fn whole(bytes: &[u8]) -> Record {
        let record = parse(bytes, PAGE).expect("parses");
        assert_eq!(record.len, bytes.len(), "length of {:?}", record.kind);
        // Every proper prefix is incomplete, never corrupt or complete.
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut], PAGE),
                Err(Stop::Incomplete),
                "{:?} cut at {cut}",
                record.kind
            );
        }
        record
    }

    #[test]
    fn compressed_integers_read_every_width() {
        for n in [
            0,
            0x7F,
            0x80,
            0x3FFF,
            0x4000,
            0x1F_FFFF,
            0x20_0000,
            0x0FFF_FFFF,
            0x1000_0000,
            0xFEFF_FFFF,
            0xFF00_0000,
            0xFFFE_0000,
            0xFFFF_FC00,
            u32::MAX,
        ] {
            let bytes = compressed(n);
            let mut c = Cursor {
                buf: &bytes,
                pos: 0,
            };
            assert_eq!(c.compressed(), Ok(n), "{n:#x}");
            assert_eq!(c.pos, bytes.len(), "{n:#x}");
        }
    }

    #[test]
    fn nbytes_and_string_writes() {
        let mut r = header(RecordType::FOUR_BYTES, true, 7, 3);
        r.extend(38u16.to_be_bytes());
        r.extend(compressed(0xFFFF_FFFF));
        let record = whole(&r);
        assert!(record.single);
        assert_eq!(
            record.target,
            Target::Page {
                space_id: 7,
                page_no: 3
            }
        );

        let mut r = header(RecordType::EIGHT_BYTES, false, 0, 5);
        r.extend(100u16.to_be_bytes());
        r.extend(compressed(3));
        r.extend(7u32.to_be_bytes());
        whole(&r);

        let mut r = header(RecordType::WRITE_STRING, false, 1, 0);
        r.extend(200u16.to_be_bytes());
        r.extend(5u16.to_be_bytes());
        r.extend(b"hello");
        whole(&r);

        // A value that does not fit the width is corrupt, not skipped.
        let mut r = header(RecordType::ONE_BYTE, false, 1, 0);
        r.extend(10u16.to_be_bytes());
        r.extend(compressed(300));
        assert!(matches!(parse(&r, PAGE), Err(Stop::Corrupt(_))));
        // So is a write past the page.
        let mut r = header(RecordType::WRITE_STRING, false, 1, 0);
        r.extend(16380u16.to_be_bytes());
        r.extend(10u16.to_be_bytes());
        r.extend([0; 10]);
        assert!(matches!(parse(&r, PAGE), Err(Stop::Corrupt(_))));
    }

    #[test]
    fn insert_with_a_compact_index() {
        let mut r = header(RecordType::REC_INSERT, false, 12, 4);
        r.extend([INDEX_LOG_VERSION, INDEX_COMPACT]);
        r.extend(3u16.to_be_bytes()); // fields
        r.extend(1u16.to_be_bytes()); // n_uniq
        r.extend([0x80, 4, 0x80, 6, 0x7F, 0xFF]);
        r.extend(99u16.to_be_bytes()); // cursor record
        r.extend(compressed(2 * 20 + 1));
        r.extend([0x00]);
        r.extend(compressed(5));
        r.extend(compressed(0));
        r.extend([0xAB; 20]);
        whole(&r);
    }

    #[test]
    fn versioned_and_instant_index_descriptions() {
        let mut r = header(RecordType::REC_DELETE, false, 12, 4);
        r.extend([
            INDEX_LOG_VERSION,
            INDEX_COMPACT | INDEX_VERSIONED | INDEX_INSTANT,
        ]);
        r.extend(4u16.to_be_bytes()); // fields
        r.extend(3u16.to_be_bytes()); // instant cols
        r.extend(1u16.to_be_bytes()); // n_uniq
        r.extend([0; 8]);
        r.extend(2u16.to_be_bytes()); // changed fields
        r.extend(3u16.to_be_bytes());
        r.extend((0x8000u16 | 3).to_be_bytes());
        r.extend([1]);
        r.extend(2u16.to_be_bytes());
        r.extend((0xC000u16 | 2).to_be_bytes());
        r.extend([1, 2]);
        r.extend(120u16.to_be_bytes());
        whole(&r);

        // REDUNDANT and versioned: no field lengths, only the changes.
        let mut r = header(RecordType::PAGE_REORGANIZE, false, 12, 4);
        r.extend([INDEX_LOG_VERSION, INDEX_VERSIONED]);
        r.extend(5u16.to_be_bytes());
        r.extend(1u16.to_be_bytes());
        r.extend(4u16.to_be_bytes());
        r.extend((0x4000u16 | 4).to_be_bytes());
        r.extend([2]);
        whole(&r);

        // REDUNDANT, unversioned: the version and flags only.
        let mut r = header(RecordType::ZIP_PAGE_COMPRESS_NO_DATA, false, 12, 4);
        r.extend([INDEX_LOG_VERSION, 0, 6]);
        whole(&r);

        let mut bad = header(RecordType::REC_DELETE, false, 12, 4);
        bad.extend([0, INDEX_COMPACT]);
        assert!(matches!(parse(&bad, PAGE), Err(Stop::Corrupt(_))));
    }

    #[test]
    fn update_in_place_and_delete_marks() {
        let mut sys = compressed(2);
        sys.extend([1, 2, 3, 4, 5, 6, 7]);
        sys.extend(compressed(0));
        sys.extend(12345u32.to_be_bytes());

        let mut r = header(RecordType::REC_UPDATE_IN_PLACE, true, 30, 9);
        r.extend([INDEX_LOG_VERSION, 0]);
        r.extend([0]); // flags
        r.extend(&sys);
        r.extend(500u16.to_be_bytes());
        r.extend([0]); // info bits
        r.extend(compressed(2));
        r.extend(compressed(4));
        r.extend(compressed(3));
        r.extend(b"abc");
        r.extend(compressed(5));
        r.extend(compressed(u32::MAX)); // SQL NULL: no bytes
        whole(&r);

        let mut r = header(RecordType::REC_CLUST_DELETE_MARK, false, 30, 9);
        r.extend([INDEX_LOG_VERSION, INDEX_COMPACT]);
        r.extend(1u16.to_be_bytes());
        r.extend(1u16.to_be_bytes());
        r.extend([0x80, 4]);
        r.extend([0, 1]);
        r.extend(&sys);
        r.extend(500u16.to_be_bytes());
        whole(&r);

        let mut r = header(RecordType::REC_SEC_DELETE_MARK, false, 30, 9);
        r.extend([1]);
        r.extend(77u16.to_be_bytes());
        whole(&r);
    }

    #[test]
    fn legacy_8027_forms() {
        let mut r = header(RecordType::COMP_REC_INSERT_8027, false, 3, 3);
        r.extend((0x8000u16 | 2).to_be_bytes()); // instant: count follows
        r.extend(3u16.to_be_bytes());
        r.extend(1u16.to_be_bytes());
        r.extend([0; 6]);
        r.extend(99u16.to_be_bytes());
        r.extend(compressed(2 * 4));
        r.extend([1; 4]);
        whole(&r);

        // REDUNDANT forms carry no index description at all.
        let mut r = header(RecordType::REC_DELETE_8027, false, 3, 3);
        r.extend(99u16.to_be_bytes());
        whole(&r);
        whole(&header(RecordType::PAGE_REORGANIZE_8027, false, 3, 3));

        let mut r = header(RecordType::ZIP_PAGE_REORGANIZE_8027, false, 3, 3);
        r.extend(1u16.to_be_bytes());
        r.extend(1u16.to_be_bytes());
        r.extend([0x80, 4]);
        r.extend([6]);
        whole(&r);
    }

    #[test]
    fn undo_and_page_creation() {
        let mut r = header(RecordType::UNDO_INSERT, false, 2, 9);
        r.extend(3u16.to_be_bytes());
        r.extend([1, 2, 3]);
        whole(&r);
        let mut r = header(RecordType::UNDO_INIT, false, 2, 9);
        r.extend(compressed(2));
        whole(&r);
        let mut r = header(RecordType::UNDO_HDR_CREATE, false, 2, 9);
        r.extend(compressed(1));
        r.extend([0; 4]);
        whole(&r);
        for kind in [
            RecordType::COMP_PAGE_CREATE,
            RecordType::INIT_FILE_PAGE2,
            RecordType::UNDO_ERASE_END,
            RecordType::PAGE_CREATE_SDI,
        ] {
            whole(&header(kind, false, 5, 1));
        }
    }

    #[test]
    fn compressed_page_records() {
        let mut r = header(RecordType::ZIP_PAGE_COMPRESS, false, 8, 3);
        r.extend(100u16.to_be_bytes());
        r.extend(10u16.to_be_bytes());
        r.extend([0; 8 + 110]);
        whole(&r);
        let mut r = header(RecordType::ZIP_WRITE_HEADER, false, 8, 3);
        r.extend([38, 2, 0, 1]);
        whole(&r);
        let mut r = header(RecordType::ZIP_WRITE_BLOB_PTR, false, 8, 3);
        r.extend([0; 24]);
        whole(&r);
        let mut r = header(RecordType::ZIP_WRITE_NODE_PTR, false, 8, 3);
        r.extend([0; 8]);
        whole(&r);
    }

    #[test]
    fn file_operations_decode_their_names() {
        let mut r = header(RecordType::FILE_CREATE, false, 1034, 0);
        r.extend(0x4021u32.to_be_bytes());
        r.extend(11u16.to_be_bytes());
        r.extend(b"./db/t.ibd\0");
        let record = whole(&r);
        assert_eq!(
            file_op(&record, &r),
            Some(FileOp::Create {
                path: "./db/t.ibd".into(),
                flags: 0x4021
            })
        );

        let mut r = header(RecordType::FILE_RENAME, false, 1034, 0);
        r.extend(11u16.to_be_bytes());
        r.extend(b"./db/t.ibd\0");
        r.extend(11u16.to_be_bytes());
        r.extend(b"./db/u.ibd\0");
        let record = whole(&r);
        assert_eq!(
            file_op(&record, &r),
            Some(FileOp::Rename {
                from: "./db/t.ibd".into(),
                to: "./db/u.ibd".into()
            })
        );

        let mut r = header(RecordType::FILE_DELETE, false, 1034, 0);
        r.extend(11u16.to_be_bytes());
        r.extend(b"./db/u.ibd\0");
        let record = whole(&r);
        assert_eq!(
            file_op(&record, &r),
            Some(FileOp::Delete {
                path: "./db/u.ibd".into()
            })
        );

        let mut r = header(RecordType::INDEX_LOAD, false, 1034, 0);
        r.extend(77u64.to_be_bytes());
        let record = whole(&r);
        assert_eq!(file_op(&record, &r), None);
    }

    #[test]
    fn grouping_records_and_dynamic_metadata() {
        let end = whole(&[RecordType::MULTI_REC_END.0]);
        assert_eq!(end.target, Target::Nothing);
        whole(&[RecordType::DUMMY_RECORD.0]);
        assert!(matches!(
            parse(&[RecordType::MULTI_REC_END.0 | SINGLE_REC_FLAG], PAGE),
            Err(Stop::Corrupt(_))
        ));

        let mut r = vec![RecordType::TABLE_DYNAMIC_META.0 | SINGLE_REC_FLAG, 0xFF];
        r.extend(compressed(1));
        r.extend(compressed(5));
        r.extend(compressed(9)); // version
        r.extend([2]); // auto-increment
        r.extend([0xFF]);
        r.extend(compressed(0));
        r.extend(compressed(1000));
        let record = whole(&r);
        assert_eq!(
            record.target,
            Target::Table {
                table_id: (1 << 32) | 5,
                version: 9
            }
        );

        let mut r = vec![RecordType::TABLE_DYNAMIC_META.0];
        r.extend(compressed(1066));
        r.extend(compressed(2));
        r.extend([1, 2]); // two corrupted indexes
        r.extend([0; 24]);
        whole(&r);
    }

    #[test]
    fn unknown_types_are_corrupt() {
        for code in [0u8, 3, 12, 23, 28, 47, 54, 60, 66, 77, 127] {
            assert!(
                matches!(parse(&[code, 0, 0, 0, 0], PAGE), Err(Stop::Corrupt(_))),
                "{code}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(record) = parse(&bytes, PAGE) {
                prop_assert!(record.len <= bytes.len());
                prop_assert!(record.len >= 1);
            }
        }
    }
}
