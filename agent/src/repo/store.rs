//! Where backup objects live: a local folder (`file://` or a plain path) or
//! an object store (`s3://`, `gs://`, `az://`, through `object_store`).
//!
//! Local folders are written with plain files and fsync rather than
//! object_store's LocalFileSystem, which does not sync: a manifest must never
//! reach disk before the data it vouches for. Everything else goes through
//! object_store, one code path for every cloud.
//!
//! Copy threads are blocking threads; they write through [`Sink`], which for
//! object stores drives the async multipart upload with the runtime's handle.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::direct::DirectWriter;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {location}: {source}")]
    Io {
        what: &'static str,
        location: String,
        source: std::io::Error,
    },
    #[error("{what} {location}: {source}")]
    Object {
        what: &'static str,
        location: String,
        source: object_store::Error,
    },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            StoreError::Object { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One listed object: its path relative to the store root, size, age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
}

#[derive(Debug, Clone)]
pub enum Store {
    Local { root: PathBuf },
    Remote(Arc<Remote>),
}

#[derive(Debug)]
pub struct Remote {
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectPath,
    pub runtime: tokio::runtime::Handle,
}

impl Remote {
    fn path(&self, rel: &str) -> ObjectPath {
        let mut full = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            full = full.join(part);
        }
        full
    }
}

impl Store {
    pub fn describe(&self) -> String {
        match self {
            Store::Local { root } => root.display().to_string(),
            Store::Remote(r) => r.url.clone(),
        }
    }

    /// The folder behind a local store: lets apply-log reflink instead of copy.
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            Store::Local { root } => Some(root),
            Store::Remote(_) => None,
        }
    }

    fn local_path(root: &Path, rel: &str) -> PathBuf {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(root.to_owned(), |p, part| p.join(part))
    }

    /// Opens a writer for one object (blocking; for copy threads). The size
    /// hint chooses the multipart part size.
    pub fn create(&self, rel: &str, size_hint: u64) -> Result<Sink> {
        match self {
            Store::Local { root } => {
                let path = Self::local_path(root, rel);
                let io = |source| StoreError::Io {
                    what: "cannot create",
                    location: path.display().to_string(),
                    source,
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let writer = DirectWriter::create_new(&path).map_err(io)?;
                Ok(Sink::Local { writer, path })
            }
            Store::Remote(remote) => {
                let location = remote.path(rel);
                let writer = object_store::buffered::BufWriter::with_capacity(
                    remote.store.clone(),
                    location.clone(),
                    part_size_for(size_hint),
                )
                .with_max_concurrency(2);
                Ok(Sink::Remote {
                    writer: Box::new(writer),
                    remote: remote.clone(),
                    location,
                })
            }
        }
    }

    /// Stores a small object so that readers see all of it or nothing.
    pub async fn put(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Store::Local { root } => {
                let path = Self::local_path(root, rel);
                let dir = path.parent().unwrap_or(root).to_owned();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                    what: "cannot create",
                    location: dir.display().to_string(),
                    source,
                })?;
                crate::meta::write_atomically(&dir, &name, bytes).map_err(|e| StoreError::Io {
                    what: "cannot write",
                    location: path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
            Store::Remote(remote) => {
                let location = remote.path(rel);
                remote
                    .store
                    .put(&location, bytes.to_vec().into())
                    .await
                    .map(|_| ())
                    .map_err(|source| StoreError::Object {
                        what: "cannot write",
                        location: format!("{}/{rel}", remote.url),
                        source,
                    })
            }
        }
    }

    /// Reads a whole (small) object.
    pub async fn get(&self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Store::Local { root } => {
                let path = Self::local_path(root, rel);
                std::fs::read(&path).map_err(|source| StoreError::Io {
                    what: "cannot read",
                    location: path.display().to_string(),
                    source,
                })
            }
            Store::Remote(remote) => {
                let object_err = |source| StoreError::Object {
                    what: "cannot read",
                    location: format!("{}/{rel}", remote.url),
                    source,
                };
                let got = remote
                    .store
                    .get(&remote.path(rel))
                    .await
                    .map_err(object_err)?;
                Ok(got.bytes().await.map_err(object_err)?.to_vec())
            }
        }
    }

    /// Streams an object's bytes to `on_bytes` in pieces (blocking).
    pub fn read_stream(
        &self,
        rel: &str,
        on_bytes: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<()> {
        match self {
            Store::Local { root } => {
                use std::io::Read;
                let path = Self::local_path(root, rel);
                let io = |source| StoreError::Io {
                    what: "cannot read",
                    location: path.display().to_string(),
                    source,
                };
                let mut file = File::open(&path).map_err(io)?;
                let mut buffer = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buffer).map_err(io)?;
                    if n == 0 {
                        return Ok(());
                    }
                    on_bytes(&buffer[..n]).map_err(io)?;
                }
            }
            Store::Remote(remote) => {
                let location = format!("{}/{rel}", remote.url);
                let object_err = |source| StoreError::Object {
                    what: "cannot read",
                    location: location.clone(),
                    source,
                };
                remote.runtime.block_on(async {
                    let got = remote
                        .store
                        .get(&remote.path(rel))
                        .await
                        .map_err(object_err)?;
                    let mut stream = got.into_stream();
                    while let Some(chunk) = stream.try_next().await.map_err(object_err)? {
                        on_bytes(chunk.as_ref()).map_err(|source| StoreError::Io {
                            what: "cannot handle",
                            location: location.clone(),
                            source,
                        })?;
                    }
                    Ok(())
                })
            }
        }
    }

    /// Every object below `prefix` (relative to the store root).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        match self {
            Store::Local { root } => {
                let base = Self::local_path(root, prefix);
                let mut out = Vec::new();
                walk(root, &base, &mut out).map_err(|source| StoreError::Io {
                    what: "cannot list",
                    location: base.display().to_string(),
                    source,
                })?;
                out.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(out)
            }
            Store::Remote(remote) => {
                let base = remote.path(prefix);
                let objects: Vec<_> =
                    remote
                        .store
                        .list(Some(&base))
                        .try_collect()
                        .await
                        .map_err(|source| StoreError::Object {
                            what: "cannot list",
                            location: format!("{}/{prefix}", remote.url),
                            source,
                        })?;
                let strip = remote.prefix.as_ref().len();
                let mut out: Vec<Listed> = objects
                    .into_iter()
                    .map(|meta| Listed {
                        path: meta.location.as_ref()[strip..]
                            .trim_start_matches('/')
                            .to_owned(),
                        size: meta.size,
                        modified: Some(meta.last_modified.into()),
                    })
                    .collect();
                out.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(out)
            }
        }
    }

    /// Deletes one object; an object that is not there is no error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self {
            Store::Local { root } => {
                let path = Self::local_path(root, rel);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
                        what: "cannot delete",
                        location: path.display().to_string(),
                        source: e,
                    }),
                    _ => Ok(()),
                }
            }
            Store::Remote(remote) => match remote.store.delete(&remote.path(rel)).await {
                Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
                    Err(StoreError::Object {
                        what: "cannot delete",
                        location: format!("{}/{rel}", remote.url),
                        source: e,
                    })
                }
                _ => Ok(()),
            },
        }
    }

    /// Deletes every object below `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        match self {
            Store::Local { root } => {
                let path = Self::local_path(root, prefix);
                let count = self.list(prefix).await?.len();
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => Ok(count),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                    Err(source) => Err(StoreError::Io {
                        what: "cannot delete",
                        location: path.display().to_string(),
                        source,
                    }),
                }
            }
            Store::Remote(remote) => {
                let objects = self.list(prefix).await?;
                for object in &objects {
                    remote
                        .store
                        .delete(&remote.path(&object.path))
                        .await
                        .map_err(|source| StoreError::Object {
                            what: "cannot delete",
                            location: format!("{}/{}", remote.url, object.path),
                            source,
                        })?;
                }
                Ok(objects.len())
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Listed>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(root, &entry.path(), out)?;
        } else if meta.is_file() {
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(&entry.path())
                .to_owned();
            out.push(Listed {
                path: rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
                size: meta.len(),
                modified: meta.modified().ok(),
            });
        }
    }
    Ok(())
}

/// Multipart part size for an object of about `size` bytes: at least 8 MiB,
/// and large enough that the object needs at most ~9,000 parts (S3 allows
/// 10,000), so no object size hits the part ceiling. Files grow while they
/// are copied, hence the margin.
pub fn part_size_for(size: u64) -> usize {
    const MIB: u64 = 1 << 20;
    let needed = size.saturating_mul(5) / 4 / 9_000;
    let part = needed.div_ceil(MIB).max(8) * MIB;
    part.min(5 << 30) as usize
}

/// A writer for one object.
pub enum Sink {
    Local {
        path: PathBuf,
        /// Direct I/O: a backup's bytes do not pass through the page cache.
        writer: DirectWriter,
    },
    Remote {
        remote: Arc<Remote>,
        location: ObjectPath,
        writer: Box<object_store::buffered::BufWriter>,
    },
}

impl Sink {
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Local { writer, .. } => writer.write_all(bytes),
            Sink::Remote { remote, writer, .. } => remote.runtime.block_on(writer.write_all(bytes)),
        }
    }

    /// Completes the object: synced to disk, or the multipart upload completed.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Local { writer, .. } => writer.finish().map(drop),
            Sink::Remote {
                remote, mut writer, ..
            } => remote.runtime.block_on(writer.shutdown()),
        }
    }

    /// Gives up: removes what was written, aborts the multipart upload.
    pub fn abort(self) {
        match self {
            Sink::Local { path, writer } => {
                drop(writer);
                let _ = std::fs::remove_file(path);
            }
            Sink::Remote {
                remote,
                mut writer,
                location,
            } => {
                let _ = remote.runtime.block_on(writer.abort());
                tracing::debug!(%location, "aborted upload");
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Local { path, .. } => path.display().to_string(),
            Sink::Remote {
                remote, location, ..
            } => format!("{} ({location})", remote.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_keep_every_object_under_ten_thousand_parts() {
        assert_eq!(part_size_for(0), 8 << 20);
        assert_eq!(part_size_for(1 << 30), 8 << 20);
        for size in [100u64 << 30, 1 << 40, 5 << 40] {
            let part = part_size_for(size) as u64;
            assert!(
                size.div_ceil(part) <= 9_000,
                "{size} needs {} parts",
                size.div_ceil(part)
            );
        }
    }
}
