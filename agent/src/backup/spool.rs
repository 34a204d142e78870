//! Where the redo copier writes: straight into a plain local backup, or a
//! local spool that is stored (compressed, encrypted, uploaded) at the end,
//! so the copier is never slowed by the repository.
//!
//! When the backup is encrypted, so is its spool: AES-256-CTR under a key
//! made for this one backup that never leaves memory. The captured log never
//! lies on disk in clear, and a spool left behind by a killed agent is
//! noise. CTR keeps every byte where it was, so the copier's appends and
//! syncs (and what "durable" means to the redo consumer) do not change.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

use super::Error;
use crate::meta;
use crate::repo::{Store, Transform};

pub struct Spool {
    pub path: PathBuf,
    /// Set when the spool must be stored after capture and then removed.
    temporary: Option<tempfile::TempDir>,
    /// Set when the spool is encrypted.
    pub cipher: Option<SpoolCipher>,
}

impl Spool {
    pub fn new(
        store: &Store,
        transform: &Transform,
        spool_dir: Option<&Path>,
    ) -> Result<Spool, Error> {
        if let (Some(root), true) = (store.local_root(), transform.is_plain()) {
            return Ok(Spool {
                path: root.join(meta::LOGFILE),
                temporary: None,
                cipher: None,
            });
        }
        let base = spool_dir
            .map(Path::to_owned)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("innoxide-redo-")
            .tempdir_in(&base)
            .map_err(|e| Error::Target {
                path: base.clone(),
                reason: format!("cannot create the redo spool: {e}"),
            })?;
        Ok(Spool {
            path: dir.path().join(meta::LOGFILE),
            temporary: Some(dir),
            cipher: transform.key.as_ref().map(|_| SpoolCipher::random()),
        })
    }

    /// Whether the log is written into the backup itself (nothing to store).
    pub fn in_place(&self) -> bool {
        self.temporary.is_none()
    }

    pub fn remove(&self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

/// The spool's cipher: a random key and nonce, in memory only.
#[derive(Clone)]
pub struct SpoolCipher {
    key: [u8; 32],
    nonce: [u8; 16],
}

impl std::fmt::Debug for SpoolCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolCipher(..)")
    }
}

impl SpoolCipher {
    pub fn random() -> SpoolCipher {
        SpoolCipher {
            key: rand::random(),
            nonce: rand::random(),
        }
    }

    /// Encrypts or decrypts (the same operation) `bytes` found at `offset`
    /// of the spool.
    pub fn apply(&self, offset: u64, bytes: &mut [u8]) {
        let mut cipher = ctr::Ctr128BE::<Aes256>::new(&self.key.into(), &self.nonce.into());
        cipher.seek(offset);
        cipher.apply_keystream(bytes);
    }
}

/// The spool file as the copier writes it: appends, encrypted on the way
/// when the spool has a cipher.
pub struct SpoolFile {
    file: File,
    offset: u64,
    cipher: Option<SpoolCipher>,
    scratch: Vec<u8>,
}

impl SpoolFile {
    pub fn create_new(path: &Path, cipher: Option<SpoolCipher>) -> std::io::Result<SpoolFile> {
        Ok(SpoolFile {
            file: File::create_new(path)?,
            offset: 0,
            cipher,
            scratch: Vec::new(),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &self.cipher {
            None => self.file.write_all(bytes)?,
            Some(cipher) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(bytes);
                cipher.apply(self.offset, &mut self.scratch);
                self.file.write_all(&self.scratch)?;
            }
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    pub fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_spool_holds_no_clear_text_and_reads_back_at_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let cipher = SpoolCipher::random();
        let mut file = SpoolFile::create_new(&path, Some(cipher.clone())).unwrap();
        let clear: Vec<u8> = (0..5000u32).flat_map(|i| i.to_be_bytes()).collect();
        for piece in clear.chunks(512) {
            file.write_all(piece).unwrap();
        }
        file.sync_data().unwrap();
        let mut on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), clear.len());
        assert!(
            !on_disk
                .windows(16)
                .any(|w| clear.windows(16).take(64).any(|c| c == w)),
            "clear text on disk"
        );
        // Decrypting a range in the middle, as a reader with an offset does.
        let mut middle = on_disk[1000..3000].to_vec();
        cipher.apply(1000, &mut middle);
        assert_eq!(middle, clear[1000..3000]);
        cipher.apply(0, &mut on_disk);
        assert_eq!(on_disk, clear);
        assert_eq!(format!("{cipher:?}"), "SpoolCipher(..)");
    }
}
