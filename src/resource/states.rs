//! Typed states: the values `status` and Events can hold, as enums rather than strings, so a
//! misspelt phase or reason is a compile error instead of a silent mismatch.
//!
//! Status enums deserialize an unknown value (written by a newer version of the operator during
//! an upgrade) as `Unknown` instead of failing, so one object from a newer writer never stops an
//! older reader from reconciling everything else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Names the string form of a state once, for `Display` and for the wire.
macro_rules! state_names {
    ($type:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// The name as written in status and Events.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Where a run is: `Pending` (Job created, Pod not running yet), `Running`, `Succeeded` (file
/// delivered, watermark moved) or `Failed` (nothing moved; see `error` and the Exported condition).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// A phase this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

state_names!(RunPhase {
    Pending => "Pending",
    Running => "Running",
    Succeeded => "Succeeded",
    Failed => "Failed",
    Unknown => "Unknown",
});

impl RunPhase {
    /// Whether the run has ended one way or the other.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed)
    }
}

/// What the last recheck of the delivered file found: `present` (in the export directory),
/// `moved` (found by name in a sub-directory: picked up, so checks stop), `recopied` (it was gone
/// and was copied again from the artifact store), `unreachable` (the server could not be asked;
/// checked again next interval) or `missing` (gone, and copying it again failed).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    Present,
    Moved,
    Recopied,
    Unreachable,
    Missing,
    /// A result this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

state_names!(CheckResult {
    Present => "present",
    Moved => "moved",
    Recopied => "recopied",
    Unreachable => "unreachable",
    Missing => "missing",
    Unknown => "unknown",
});

/// The condition types of a ScheduledExport.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The schedule is valid and running (or deliberately suspended).
    Ready,
    /// The last run exported its rows.
    Exported,
    /// The last delivered file is on the server.
    Delivered,
    /// What the next run needs (database, SFTP server, encryption key, Secrets) was checked and
    /// works.
    Preflight,
}

state_names!(ConditionType {
    Ready => "Ready",
    Exported => "Exported",
    Delivered => "Delivered",
    Preflight => "Preflight",
});

/// The `reason` of a condition. On the wire a reason stays a plain string (the Kubernetes
/// condition convention), so a reason added by a newer version is kept as it is; the code only
/// ever writes these.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionReason {
    // Ready
    Scheduled,
    Suspended,
    WaitingForRun,
    InvalidSchedule,
    SecretNotFound,
    // Exported, and Delivered after a run
    Exported,
    /// Exported, every row: the watermark was taken in another database.
    SourceChanged,
    /// Exported, every row: the database's transaction ids were behind the watermark.
    SourceRewound,
    /// Exported, every row: the full-export annotation asked for it.
    FullExportRequested,
    Delivered,
    JobFailed,
    // Delivered, after a recheck
    Present,
    PickedUp,
    Recopied,
    RecopyFailed,
    ServerUnreachable,
    // Why an export failed (Exported=False), or why a recheck could not reach the file
    // (Delivered=False): one per failure the adapters tell apart.
    NotFound,
    SecretInvalid,
    ArtifactStoreFailed,
    DatabaseFailed,
    DatabaseTlsFailed,
    EncryptionKeyInvalid,
    RecoveryConflict,
    /// `spec.source.view` names no view, or one without a `txid xid8` column.
    ViewInvalid,
    SpoolFailed,
    KubernetesApiFailed,
    DestinationInvalid,
    KnownHostsInvalid,
    HostUnresolvable,
    Timeout,
    ConnectionRefused,
    ConnectionFailed,
    HandshakeFailed,
    NoCommonAlgorithm,
    HostKeyMismatch,
    HostKeyUnknown,
    HostKeyRevoked,
    AuthenticationFailed,
    PrivateKeyUnreadable,
    SftpUnavailable,
    DirectoryMissing,
    DirectoryNotWritable,
    SearchIncomplete,
    FileExists,
    RenameFailed,
    SizeMismatch,
    RemoteError,
    LocalFileError,
    InvalidFileName,
    SessionError,
    // Preflight: `Passed`, or why the check failed (with the SFTP, Secret and key reasons above).
    Passed,
    /// Nothing answered at the database's address, or not in time.
    DatabaseUnreachable,
    /// The database refused the URL's user or password.
    DatabaseAuthenticationFailed,
    /// The database the URL names does not exist.
    DatabaseMissing,
    /// The role may not read the table or view.
    DatabasePermissionDenied,
    /// The file type's table does not exist.
    TableMissing,
    /// The table lacks a column the file needs.
    ColumnMissing,
}

state_names!(ConditionReason {
    Scheduled => "Scheduled",
    Suspended => "Suspended",
    WaitingForRun => "WaitingForRun",
    InvalidSchedule => "InvalidSchedule",
    SecretNotFound => "SecretNotFound",
    Exported => "Exported",
    SourceChanged => "SourceChanged",
    SourceRewound => "SourceRewound",
    FullExportRequested => "FullExportRequested",
    Delivered => "Delivered",
    JobFailed => "JobFailed",
    Present => "Present",
    PickedUp => "PickedUp",
    Recopied => "Recopied",
    RecopyFailed => "RecopyFailed",
    ServerUnreachable => "ServerUnreachable",
    NotFound => "NotFound",
    SecretInvalid => "SecretInvalid",
    ArtifactStoreFailed => "ArtifactStoreFailed",
    DatabaseFailed => "DatabaseFailed",
    DatabaseTlsFailed => "DatabaseTlsFailed",
    EncryptionKeyInvalid => "EncryptionKeyInvalid",
    RecoveryConflict => "RecoveryConflict",
    ViewInvalid => "ViewInvalid",
    SpoolFailed => "SpoolFailed",
    KubernetesApiFailed => "KubernetesApiFailed",
    DestinationInvalid => "DestinationInvalid",
    KnownHostsInvalid => "KnownHostsInvalid",
    HostUnresolvable => "HostUnresolvable",
    Timeout => "Timeout",
    ConnectionRefused => "ConnectionRefused",
    ConnectionFailed => "ConnectionFailed",
    HandshakeFailed => "HandshakeFailed",
    NoCommonAlgorithm => "NoCommonAlgorithm",
    HostKeyMismatch => "HostKeyMismatch",
    HostKeyUnknown => "HostKeyUnknown",
    HostKeyRevoked => "HostKeyRevoked",
    AuthenticationFailed => "AuthenticationFailed",
    PrivateKeyUnreadable => "PrivateKeyUnreadable",
    SftpUnavailable => "SftpUnavailable",
    DirectoryMissing => "DirectoryMissing",
    DirectoryNotWritable => "DirectoryNotWritable",
    SearchIncomplete => "SearchIncomplete",
    FileExists => "FileExists",
    RenameFailed => "RenameFailed",
    SizeMismatch => "SizeMismatch",
    RemoteError => "RemoteError",
    LocalFileError => "LocalFileError",
    InvalidFileName => "InvalidFileName",
    SessionError => "SessionError",
    Passed => "Passed",
    DatabaseUnreachable => "DatabaseUnreachable",
    DatabaseAuthenticationFailed => "DatabaseAuthenticationFailed",
    DatabaseMissing => "DatabaseMissing",
    DatabasePermissionDenied => "DatabasePermissionDenied",
    TableMissing => "TableMissing",
    ColumnMissing => "ColumnMissing",
});

/// The `reason` of an Event the operator publishes about a ScheduledExport.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// A Secret the object references does not exist.
    InvalidReference,
    /// Slots passed without a run; one catch-up run covers them.
    MissedSlots,
    /// A Job was created for a due slot.
    Scheduled,
    /// A Job was created for a run-now token.
    RunNow,
    /// A Job was created for a full-export token.
    FullExport,
    /// The Job name of a slot is taken by another object's Job.
    JobNameConflict,
    /// A Job's export is running.
    Started,
    /// A Job delivered its file.
    Succeeded,
    /// A Job failed.
    Failed,
    /// A missing file was copied again.
    Recopied,
    /// A recheck could not reach the server.
    ServerUnreachable,
    /// A missing file could not be copied again.
    RecopyFailed,
    /// Old files were deleted.
    Pruned,
    /// Pruning failed.
    PruneFailed,
    /// Pruning was refused because the files are not provably this object's.
    PruneRefused,
    /// The preflight check passed (first time, or again after failing).
    PreflightPassed,
    /// The preflight check failed (first time, or for another reason than before).
    PreflightFailed,
}

state_names!(EventReason {
    InvalidReference => "InvalidReference",
    MissedSlots => "MissedSlots",
    Scheduled => "Scheduled",
    RunNow => "RunNow",
    FullExport => "FullExport",
    JobNameConflict => "JobNameConflict",
    Started => "Started",
    Succeeded => "Succeeded",
    Failed => "Failed",
    Recopied => "Recopied",
    ServerUnreachable => "ServerUnreachable",
    RecopyFailed => "RecopyFailed",
    Pruned => "Pruned",
    PruneFailed => "PruneFailed",
    PruneRefused => "PruneRefused",
    PreflightPassed => "PreflightPassed",
    PreflightFailed => "PreflightFailed",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_states_round_trip_and_tolerate_newer_values() {
        for phase in [
            RunPhase::Pending,
            RunPhase::Running,
            RunPhase::Succeeded,
            RunPhase::Failed,
        ] {
            let json = serde_json::to_string(&phase).expect("serialize");
            assert_eq!(json, format!("\"{phase}\""));
            assert_eq!(
                serde_json::from_str::<RunPhase>(&json).expect("parse"),
                phase
            );
        }
        let result = serde_json::to_string(&CheckResult::Recopied).expect("serialize");
        assert_eq!(result, "\"recopied\"");
        assert_eq!(
            serde_json::from_str::<RunPhase>("\"Cancelled\"").expect("parse"),
            RunPhase::Unknown
        );
        assert_eq!(
            serde_json::from_str::<CheckResult>("\"quarantined\"").expect("parse"),
            CheckResult::Unknown
        );
    }

    #[test]
    fn reasons_serialize_as_their_names() {
        let name = |value: serde_json::Value| value.as_str().map(str::to_string);
        for reason in [
            ConditionReason::HostKeyMismatch,
            ConditionReason::ConnectionRefused,
            ConditionReason::WaitingForRun,
        ] {
            let json = serde_json::to_value(reason).expect("serialize");
            assert_eq!(name(json), Some(reason.as_str().to_string()));
        }
        for reason in [EventReason::MissedSlots, EventReason::PruneRefused] {
            let json = serde_json::to_value(reason).expect("serialize");
            assert_eq!(name(json), Some(reason.as_str().to_string()));
        }
        let delivered = serde_json::to_value(ConditionType::Delivered).expect("serialize");
        assert_eq!(name(delivered).as_deref(), Some("Delivered"));
    }

    #[test]
    fn the_schema_stores_states_of_other_versions() {
        // An older or newer writer may hold a state this version does not know; the API server
        // must store it rather than refuse the whole status write.
        let crd = serde_json::to_value(crate::resource::crd()).expect("crd");
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"];
        for field in [
            &status["lastRun"]["properties"]["phase"],
            &status["delivery"]["properties"]["lastCheckResult"],
        ] {
            assert_eq!(field["type"], "string", "{field}");
            assert!(field.get("enum").is_none(), "{field}");
        }
    }
}
