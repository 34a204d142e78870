//! Incremental chains in one repository: from a backup back to the full
//! one it continues. Each manifest names its base by the location it had
//! when the incremental was taken and by its backup id; the base is looked
//! up by its name (the location's last segment) in the same repository and
//! must have that id, so a backup deleted and taken again under the same
//! name never slips into a chain.

use tonic::Code;

use super::record::{ChainLink, Failure};
use crate::meta::Manifest;
use crate::repo::{self, RepoOptions, lifecycle};

/// Longer chains are refused: a loop in damaged manifests must end, and a
/// chain this long is a schedule without fulls.
pub const MAX_CHAIN: usize = 1000;

/// One backup of a chain, as found in the repository.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Where it is: a folder or an object store URL.
    pub location: String,
    pub manifest: Manifest,
}

impl Member {
    pub fn link(&self) -> ChainLink {
        ChainLink::from_manifest(self.name.clone(), &self.manifest)
    }
}

/// The name a base was stored under: the last segment of its location.
pub fn name_in(location: &str) -> &str {
    location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// The chain that ends with backup `name`, the full first. `locate` gives
/// a backup's location in the repository from its name.
pub async fn walk(
    name: &str,
    locate: impl Fn(&str) -> String,
    options: &RepoOptions,
) -> Result<Vec<Member>, Failure> {
    let mut chain: Vec<Member> = Vec::new();
    let mut next = (name.to_owned(), None::<String>);
    loop {
        let (name, expected_id) = next;
        let member = read(&name, &locate, options, chain.last()).await?;
        if let Some(expected) = expected_id
            && member.manifest.backup_id() != expected
        {
            let dependant = chain.last().map(|m| m.name.as_str()).unwrap_or_default();
            return Err(broken(format!(
                "{} is not the backup {dependant} continues (its backup id differs: it was \
                 deleted and taken again under that name); the chain cannot be restored",
                member.location
            )));
        }
        next = match &member.manifest.incremental {
            Some(incremental) => {
                let base = name_in(&incremental.base.location).to_owned();
                if super::check_name("base", &base).is_err() {
                    return Err(broken(format!(
                        "{} continues {}, which is not a backup name in a repository",
                        member.location, incremental.base.location
                    )));
                }
                (base, Some(incremental.base.backup_id.clone()))
            }
            None => {
                chain.push(member);
                chain.reverse();
                return Ok(chain);
            }
        };
        chain.push(member);
        if chain.len() >= MAX_CHAIN {
            return Err(broken(format!(
                "the chain of {name} is longer than {MAX_CHAIN} backups (or loops); take a full backup"
            )));
        }
    }
}

async fn read(
    name: &str,
    locate: &impl Fn(&str) -> String,
    options: &RepoOptions,
    dependant: Option<&Member>,
) -> Result<Member, Failure> {
    let location = locate(name);
    let missing = |e: &dyn std::fmt::Display| match dependant {
        None => Failure::new(
            Code::FailedPrecondition,
            "BACKUP_INVALID",
            format!("{e}; check backup_name and the repository URL"),
        ),
        Some(d) => broken(format!(
            "{} is an incremental backup and its base {name} cannot be read from the same \
             repository: {e}",
            d.location
        )),
    };
    let store = repo::open(&location, options).map_err(|e| missing(&e))?;
    let manifest = lifecycle::read_manifest(&store)
        .await
        .map_err(|e| missing(&e))?;
    Ok(Member {
        name: name.to_owned(),
        location,
        manifest,
    })
}

fn broken(message: String) -> Failure {
    Failure::new(
        Code::FailedPrecondition,
        "BACKUP_INVALID",
        format!("{message}; restore a backup whose chain is whole"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_is_named_by_the_last_segment_of_its_location() {
        assert_eq!(name_in("/backups/full-1a2b"), "full-1a2b");
        assert_eq!(name_in("s3://bucket/db/full-1a2b/"), "full-1a2b");
        assert_eq!(name_in("full"), "full");
    }
}
