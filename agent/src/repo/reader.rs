//! Reads one backup file back from a store, checking it against the
//! manifest as it streams: the stored bytes' size and SHA-256 first, then
//! (after decryption and decompression) the original bytes'. Nothing is
//! trusted before it is checked; a mismatch names the file and what differs.

use sha2::{Digest, Sha256};

use super::chunk::{DecodeError, Decoder, Key};
use super::store::{Store, StoreError};
use crate::meta::FileEntry;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{path}: {what} differs from the manifest ({found} instead of {expected})")]
    Mismatch {
        path: String,
        what: &'static str,
        found: String,
        expected: String,
    },
}

/// Streams `entry` from `store`, calling `out` with original bytes; fails
/// if anything differs from the manifest. `out` may have seen data of a
/// file that then fails: write into a place the caller can discard.
pub fn read_verified(
    store: &Store,
    entry: &FileEntry,
    key: Option<&Key>,
    out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), ReadError> {
    let transformed = entry.stored_sha256.is_some();
    let mut stored = (0u64, Sha256::new());
    let mut original = (0u64, Sha256::new());
    let mut decoder = transformed.then(|| Decoder::new(&entry.path, key.cloned()));
    let mut decode_error = None;
    store
        .read_stream(&entry.path, &mut |bytes| {
            stored.0 += bytes.len() as u64;
            stored.1.update(bytes);
            let mut sink = |plain: &[u8]| {
                original.0 += plain.len() as u64;
                original.1.update(plain);
                out(plain)
            };
            match &mut decoder {
                None => sink(bytes),
                Some(decoder) => decoder.push(bytes, &mut sink).map_err(|e| {
                    let message = e.to_string();
                    decode_error = Some(e);
                    std::io::Error::other(message)
                }),
            }
        })
        .map_err(|e| match decode_error.take() {
            Some(decode) => ReadError::Decode(decode),
            None => ReadError::Store(e),
        })?;
    let mismatch = |what, found: String, expected: String| ReadError::Mismatch {
        path: entry.path.clone(),
        what,
        found,
        expected,
    };
    if let (Some(size), Some(sha)) = (entry.stored_size, &entry.stored_sha256) {
        if stored.0 != size {
            return Err(mismatch(
                "stored size",
                stored.0.to_string(),
                size.to_string(),
            ));
        }
        let found = hex::encode(stored.1.finalize());
        if &found != sha {
            return Err(mismatch("stored SHA-256", found, sha.clone()));
        }
    }
    if let Some(decoder) = decoder {
        decoder.finish()?;
    }
    if original.0 != entry.size {
        return Err(mismatch(
            "size",
            original.0.to_string(),
            entry.size.to_string(),
        ));
    }
    let found = hex::encode(original.1.finalize());
    if found != entry.sha256 {
        return Err(mismatch("SHA-256", found, entry.sha256.clone()));
    }
    Ok(())
}
