//! copy-back: placeholder until the copy-back work lands.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct CopyBackOptions {
    pub backup_dir: PathBuf,
    pub datadir: PathBuf,
    pub force_non_empty: bool,
    pub new_server_uuid: bool,
    pub move_files: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("copy-back is not built yet")]
    NotBuilt,
}

pub async fn copy_back(_options: &CopyBackOptions) -> Result<(), Error> {
    Err(Error::NotBuilt)
}

pub async fn copy_back_and_apply_log(
    _options: &CopyBackOptions,
    _mysqld: Option<PathBuf>,
) -> Result<(), Error> {
    Err(Error::NotBuilt)
}
