//! A schedule's binlog archive as the agent's requests: pure, from the
//! schedule and the Secret values the controller read. The archive uses
//! the backup template's storage (one folder down), compression,
//! encryption key and MySQL login.

use innoxide_proto::agent::v1 as pb;
use kube::ResourceExt;

use crate::api::{BINLOG_ARCHIVE_FOLDER, BackupStorage, Compression, MySQLBackupSchedule};
use crate::backup::request::{self, Credentials, Unusable};

/// The archive's storage: the template's + `/binlogs`.
pub fn archive_storage(schedule: &MySQLBackupSchedule) -> BackupStorage {
    schedule
        .spec
        .backup_template
        .spec
        .storage
        .child(BINLOG_ARCHIVE_FOLDER)
}

/// The archive's key on the agent: the schedule's UID (a schedule deleted
/// and made again under the same name continues the same archive folder,
/// under a new key).
pub fn archive_id(schedule: &MySQLBackupSchedule) -> String {
    schedule.uid().unwrap_or_default()
}

pub fn start_request(
    schedule: &MySQLBackupSchedule,
    credentials: &Credentials,
) -> Result<pb::StartBinlogArchiveRequest, Unusable> {
    let template = &schedule.spec.backup_template.spec;
    let mysql = template
        .mysql_credentials
        .as_ref()
        .map(|c| pb::MysqlCredentials {
            user: c.user.clone(),
            password: request::secret(&credentials.mysql_password),
        });
    Ok(pb::StartBinlogArchiveRequest {
        archive_id: archive_id(schedule),
        repository: Some(request::repository(
            &archive_storage(schedule),
            credentials,
        )?),
        mysql,
        compression: match template.compression {
            Compression::None => pb::Compression::None,
            Compression::Zstd => pb::Compression::Zstd,
        } as i32,
        encryption_key: request::secret(&credentials.encryption_key),
        upload_interval_seconds: schedule
            .spec
            .binlog_archive
            .as_ref()
            .and_then(|a| a.upload_interval_seconds)
            .unwrap_or(0),
    })
}

pub fn prune_request(
    schedule: &MySQLBackupSchedule,
    credentials: &Credentials,
    covered_by: &str,
) -> Result<pb::PruneBinlogArchiveRequest, Unusable> {
    Ok(pb::PruneBinlogArchiveRequest {
        repository: Some(request::repository(
            &archive_storage(schedule),
            credentials,
        )?),
        encryption_key: request::secret(&credentials.encryption_key),
        covered_by: covered_by.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BinlogArchiveSpec;
    use crate::fixtures::ScheduleBuilder;

    #[test]
    fn the_archive_goes_beside_the_backups_with_their_keys_and_settings() {
        let mut schedule = ScheduleBuilder::cron("0 3 * * *").build();
        schedule.spec.backup_template.spec.compression = Compression::Zstd;
        schedule.spec.binlog_archive = Some(BinlogArchiveSpec {
            enabled: true,
            upload_interval_seconds: Some(15),
        });
        let credentials = Credentials {
            encryption_key: Some("ab".repeat(32)),
            ..Credentials::default()
        };
        let request = start_request(&schedule, &credentials).unwrap();
        assert_eq!(request.archive_id, "uid-schedule");
        assert_eq!(request.repository.unwrap().url, "s3://bk/binlogs");
        assert_eq!(request.compression, pb::Compression::Zstd as i32);
        assert_eq!(request.upload_interval_seconds, 15);
        assert!(request.encryption_key.is_some());
        assert!(!format!("{:?}", start_request(&schedule, &credentials)).contains("abab"));
        let prune = prune_request(&schedule, &credentials, "u:1-9").unwrap();
        assert_eq!(prune.covered_by, "u:1-9");
    }
}
