//! `innoxide-agent init`: the pod's init container, run before mysqld at
//! every start. It finishes an exchange a killed run began, runs an armed
//! swap, reverts one on request, or restores a backup into a new, empty
//! volume; with none of these to do it says so and exits 0.

use std::path::{Path, PathBuf};
use std::time::Instant;

use innoxide_proto::restore_spec::RestoreSpec;
use tokio_util::sync::CancellationToken;

use super::{Error, Layout, Report};

#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// The server's datadir (in a StatefulSet: the data volume's mount point).
    #[arg(long, env = "INNOXIDE_DATADIR")]
    pub datadir: PathBuf,
    /// The agent's state dir, on the same volume [default: <datadir>/.innoxide-agent].
    #[arg(long, env = "INNOXIDE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Put back the datadir the swap of this operation replaced
    /// (`<state-dir>/previous/<ID>`); the swapped-in one goes to `<state-dir>/reverted/<ID>`.
    #[arg(long, value_name = "ID", conflicts_with = "restore_spec")]
    pub revert: Option<String>,
    /// Restore into an empty datadir from this JSON file (a RestoreSpec);
    /// a no-op when this operation's restore is done on this volume.
    #[arg(long, env = "INNOXIDE_RESTORE_SPEC", value_name = "FILE")]
    pub restore_spec: Option<PathBuf>,
    /// The mysqld that applies the log for --restore-spec: the backup's exact version
    /// (default: from PATH).
    #[arg(long, env = "INNOXIDE_MYSQLD")]
    pub mysqld: Option<PathBuf>,
}

/// Whether an error is a refusal (the situation is wrong, nothing was
/// touched) rather than a failure: `init` exits 3 for those.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Error>().is_some_and(|e| {
        !matches!(
            e,
            Error::File(_) | Error::Prepare(_) | Error::Restore(_) | Error::Backup(_)
        )
    })
}

pub async fn run(args: InitArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let layout = Layout::new(&args.datadir, args.state_dir.as_deref())?;
    let report = if let Some(id) = args.revert.clone() {
        crate::service::check_name("--revert", &id).map_err(anyhow::Error::msg)?;
        let layout = layout.clone();
        Some(blocking(move || super::revert(&layout, &id)).await?)
    } else if let Some(spec) = args.restore_spec.as_ref().filter(|spec| spec.exists()) {
        restore(&layout, spec, args.mysqld.clone()).await?
    } else if let Some(spec) = &args.restore_spec {
        // The spec Secret is mounted optionally: once the restore resource
        // (and its Secret) is deleted, pods must still start on the volume
        // it filled. An empty volume without its spec is the one case to
        // stop: mysqld would initialise an empty server in its place.
        let empty = {
            let layout = layout.clone();
            blocking(move || layout.datadir_is_empty()).await?
        };
        if empty && !super::has_begun(&layout)? {
            anyhow::bail!(
                "the restore spec {} is missing and the datadir {} is empty: the MySQLRestore \
                 that should fill it (and its spec Secret) is gone; recreate it, or remove the \
                 innoxide.dev/restore-from annotation to start an empty server",
                spec.display(),
                layout.datadir.display()
            );
        }
        let layout = layout.clone();
        blocking(move || super::run_armed(&layout)).await?
    } else {
        let layout = layout.clone();
        blocking(move || super::run_armed(&layout)).await?
    };
    let elapsed = started.elapsed();
    match report {
        None => {
            tracing::info!(datadir = %layout.datadir.display(), "init: nothing to do");
            eprintln!(
                "innoxide-agent init: nothing to do for {} (no swap armed, nothing to finish)",
                layout.datadir.display()
            );
        }
        Some(Report { done, resumed }) => {
            tracing::info!(
                kind = done.kind.as_str(),
                operation_id = %done.operation_id,
                moved_out = done.moved_out,
                moved_in = done.moved_in,
                previous = ?done.previous_datadir,
                resumed,
                seconds = elapsed.as_secs_f64(),
                "init: done"
            );
            eprintln!(
                "innoxide-agent init: {} of {} done{} in {:.1?}: {} entries moved out{}, {} moved in; gtid_executed {}",
                done.kind.as_str(),
                done.operation_id,
                if resumed {
                    " (finished an interrupted run)"
                } else {
                    ""
                },
                elapsed,
                done.moved_out,
                done.previous_datadir
                    .as_ref()
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default(),
                done.moved_in,
                if done.gtid_executed.is_empty() {
                    "(as it was)"
                } else {
                    &done.gtid_executed
                },
            );
        }
    }
    Ok(())
}

/// A restore into a new volume: stage (fetch, verify, apply-log) under the
/// state dir, then place it with the swap's machinery.
async fn restore(
    layout: &Layout,
    spec_file: &Path,
    mysqld: Option<PathBuf>,
) -> anyhow::Result<Option<Report>> {
    let text = std::fs::read_to_string(spec_file).map_err(|e| {
        anyhow::anyhow!("cannot read the restore spec {}: {e}", spec_file.display())
    })?;
    let spec = RestoreSpec::from_json(&text)
        .map_err(|e| anyhow::anyhow!("the restore spec {}: {e}", spec_file.display()))?;
    let id = spec.operation_id.clone();
    crate::service::check_name("operation_id", &id).map_err(anyhow::Error::msg)?;

    // A run killed while placing files finishes first, whatever else.
    if super::has_begun(layout)? {
        let finish = layout.clone();
        return blocking(move || super::run_armed(&finish)).await;
    }
    if !layout.datadir_is_empty()? {
        if let Some(done) = super::restore_done(layout, &id)? {
            tracing::info!(operation_id = %id, "the restore is done on this volume already");
            eprintln!(
                "innoxide-agent init: restore {id} was done on this volume already (gtid_executed {}); nothing to do",
                done.gtid_executed
            );
            return Ok(None);
        }
        return Err(Error::NotEmpty(layout.datadir.clone()).into());
    }

    let staging = layout.state_dir.join("staging");
    let backup_dir = staging.join(&id).join("backup");
    let prepared = crate::prepare::prepared_dir(&backup_dir);
    let gtid_executed = if crate::prepare::is_prepared(&prepared)? {
        // Staged by a run killed before it placed anything: use it.
        tracing::info!(dir = %prepared.display(), "the backup is staged already");
        crate::verify::read_manifest(&backup_dir)?.gtid_executed
    } else {
        tracing::info!(operation_id = %id, backup_name = %spec.backup_name, "staging the backup");
        let staged = crate::service::stage_without_service(
            &spec.stage_request(),
            &staging,
            mysqld,
            CancellationToken::new(),
        )
        .await?;
        anyhow::ensure!(
            staged.prepared_dir == prepared,
            "the staged backup is at {}, not {}: this is a bug",
            staged.prepared_dir.display(),
            prepared.display()
        );
        staged.gtid_executed
    };
    let layout = layout.clone();
    let report =
        blocking(move || super::place_restore(&layout, &id, &prepared, &gtid_executed)).await?;
    Ok(Some(report))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Command {
        #[command(flatten)]
        init: InitArgs,
    }

    fn parse(args: &[&str]) -> Result<InitArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("init").chain(args.iter().copied())).map(|c| c.init)
    }

    #[test]
    fn init_takes_a_datadir_and_at_most_one_of_revert_and_restore_spec() {
        let plain = parse(&["--datadir=/var/lib/mysql"]).unwrap();
        assert_eq!(plain.datadir, Path::new("/var/lib/mysql"));
        assert_eq!((plain.revert, plain.restore_spec), (None, None));
        let revert = parse(&["--datadir=/d", "--state-dir=/d/.s", "--revert", "uid-1"]).unwrap();
        assert_eq!(revert.revert.as_deref(), Some("uid-1"));
        assert!(parse(&["--revert=a", "--datadir=/d", "--restore-spec=/f"]).is_err());
        assert!(parse(&["--revert=a"]).is_err(), "--datadir is required");
    }
}
