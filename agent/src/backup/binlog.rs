//! The binary log at the consistent point: the current file up to the
//! position `log_status` reported, and a one-line index naming it, so the
//! restored server (and apply-log's mini instance) resolves prepared
//! transactions as the source did and continues the binlog from there.

use std::path::Path;

use super::page_copy::{self, CopyContext};
use super::{Error, entry};
use crate::backup::datafiles::DataFile;
use crate::meta::{FileEntry, FileKind};

pub fn copy_up_to(
    source: &Path,
    dir: &Path,
    position: u64,
    ctx: &CopyContext,
) -> Result<Vec<FileEntry>, Error> {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = DataFile {
        source: source.to_owned(),
        dest: name.clone(),
        kind: FileKind::Binlog,
        original_path: None,
        space: None,
    };
    let copied = page_copy::copy_plain(source, &dir.join(&name), Some(position), ctx)
        .map_err(Error::from_copy)?;
    let index_name = index_file_name(&name);
    let index = format!("./{name}\n");
    crate::meta::write_atomically(dir, &index_name, index.as_bytes())?;
    Ok(vec![
        entry(&file, &copied),
        FileEntry {
            path: index_name,
            kind: FileKind::Binlog,
            original_path: None,
            size: index.len() as u64,
            sha256: super::sha256_hex(index.as_bytes()),
            stored_size: None,
            stored_sha256: None,
        },
    ])
}

/// `binlog.000007` → `binlog.index`.
pub fn index_file_name(binlog: &str) -> String {
    let base = binlog.rsplit_once('.').map_or(binlog, |(b, _)| b);
    format!("{base}.index")
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_is_named_after_the_basename() {
        assert_eq!(super::index_file_name("binlog.000007"), "binlog.index");
        assert_eq!(super::index_file_name("my-bin.000001"), "my-bin.index");
    }
}
