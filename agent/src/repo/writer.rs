//! Writes one backup file to a store: plain, or chunked with compression
//! and/or encryption, hashing both the original and the stored bytes so the
//! manifest can vouch for each.

use sha2::{Digest, Sha256};

use super::chunk::{self, CHUNK_SIZE, Transform};
use super::store::{Sink, Store, StoreError};

/// What the manifest records of a stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub size: u64,
    pub sha256: String,
    /// Set when the stored bytes differ from the original.
    pub stored: Option<(u64, String)>,
}

pub struct StoredWriter {
    sink: Sink,
    transform: Transform,
    encoder: chunk::Encoder,
    /// The file's path inside the backup: bound into each encrypted chunk.
    path: String,
    pending: Vec<u8>,
    chunk_index: u64,
    original: (u64, Sha256),
    stored: (u64, Sha256),
}

impl StoredWriter {
    pub fn create(
        store: &Store,
        path: &str,
        size_hint: u64,
        transform: &Transform,
    ) -> Result<StoredWriter, StoreError> {
        Ok(StoredWriter {
            sink: store.create(path, size_hint)?,
            transform: transform.clone(),
            encoder: chunk::Encoder::new(transform),
            path: path.to_owned(),
            pending: Vec::new(),
            chunk_index: 0,
            original: (0, Sha256::new()),
            stored: (0, Sha256::new()),
        })
    }

    pub fn describe(&self) -> String {
        self.sink.describe()
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.original.0 += bytes.len() as u64;
        self.original.1.update(bytes);
        if self.transform.is_plain() {
            return self.sink.write(bytes);
        }
        self.pending.extend_from_slice(bytes);
        // Keep at least one byte back: the last chunk must carry the last flag.
        while self.pending.len() > CHUNK_SIZE {
            let rest = self.pending.split_off(CHUNK_SIZE);
            let full = std::mem::replace(&mut self.pending, rest);
            self.emit(&full, false)?;
        }
        Ok(())
    }

    fn emit(&mut self, data: &[u8], last: bool) -> std::io::Result<()> {
        let frame = self
            .encoder
            .encode(&self.path, self.chunk_index, data, last);
        self.chunk_index += 1;
        self.stored.0 += frame.len() as u64;
        self.stored.1.update(&frame);
        self.sink.write(&frame)
    }

    pub fn finish(mut self) -> std::io::Result<StoredFile> {
        let transformed = !self.transform.is_plain();
        if transformed {
            let last = std::mem::take(&mut self.pending);
            self.emit(&last, true)?;
        }
        self.sink.finish()?;
        let sha256 = hex::encode(self.original.1.finalize());
        Ok(StoredFile {
            size: self.original.0,
            stored: transformed.then(|| (self.stored.0, hex::encode(self.stored.1.finalize()))),
            sha256,
        })
    }

    pub fn abort(self) {
        self.sink.abort();
    }
}
