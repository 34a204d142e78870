//! apply-log: placeholder until the apply-log work lands.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct ApplyLogOptions {
    pub backup_dir: PathBuf,
    pub mysqld: Option<PathBuf>,
    pub force: bool,
    pub buffer_pool: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("apply-log is not built yet")]
    NotBuilt,
}

pub async fn apply_log(_options: &ApplyLogOptions, _cancel: CancellationToken) -> Result<(), Error> {
    Err(Error::NotBuilt)
}
