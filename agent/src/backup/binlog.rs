//! The binary log at the consistent point: the current file is copied up to
//! the position `log_status` reported (by the engine's plain copy), and a
//! one-line index names it, so the restored server (and apply-log's mini
//! instance) resolves prepared transactions as the source did and continues
//! the binlog from there.

/// The index file for a copied binlog: its name (`binlog.000007` →
/// `binlog.index`) and contents.
pub fn index_for(binlog: &str) -> (String, String) {
    let base = binlog.rsplit_once('.').map_or(binlog, |(b, _)| b);
    (format!("{base}.index"), format!("./{binlog}\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_is_named_after_the_basename() {
        assert_eq!(
            super::index_for("binlog.000007"),
            ("binlog.index".to_owned(), "./binlog.000007\n".to_owned())
        );
        assert_eq!(super::index_for("my-bin.000001").0, "my-bin.index");
    }
}
