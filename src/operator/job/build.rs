//! The manifest of an export Job: names, labels, owner reference, the restricted Pod, volumes,
//! and the failure policy.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretEnvSource, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};

use crate::resource::ScheduledExport;

use super::*;

/// The volumes and mounts of the Secrets the object names, each at
/// `{SECRETS_MOUNT_PATH}/{secret name}` (once, when two references name the same Secret).
/// Optional, so a missing Secret or key does not hold the Pod in `CreateContainerConfigError`
/// until the Job's deadline: the export starts and fails at once with a reason naming the Secret
/// and the key.
fn secret_volumes(object: &ScheduledExport) -> Vec<(Volume, VolumeMount)> {
    let source = &object.spec.source.secret_ref.name;
    let sftp = &object.spec.destination.sftp.secret_ref.name;
    let mut secrets = vec![("source-secret", source)];
    if sftp != source {
        secrets.push(("sftp-secret", sftp));
    }
    if let Some(encryption) = &object.spec.encryption {
        let key = &encryption.pgp.public_key_secret_ref.name;
        if key != source && key != sftp {
            secrets.push(("encryption-key-secret", key));
        }
    }
    secrets
        .into_iter()
        .map(|(volume_name, secret)| {
            let volume = Volume {
                name: volume_name.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    optional: Some(true),
                    // Readable by the export's group (fsGroup) only.
                    default_mode: Some(0o440),
                    items: None,
                }),
                ..Volume::default()
            };
            let mount = VolumeMount {
                name: volume_name.to_string(),
                mount_path: format!("{SECRETS_MOUNT_PATH}/{secret}"),
                read_only: Some(true),
                ..VolumeMount::default()
            };
            (volume, mount)
        })
        .collect()
}

/// The settings every Job needs; checked at the operator's start and for each Job.
pub fn check_settings(settings: &JobSettings) -> Result<(), JobError> {
    if settings.artifact_store_url.is_empty() {
        return Err(JobError::MissingSetting {
            setting: "artifact_store_url",
        });
    }
    if settings.image.is_empty() {
        return Err(JobError::MissingSetting { setting: "image" });
    }
    artifact_claim_volume(settings).map(|_| ())
}

/// The volume and mount of `artifact_store_claim`: the claim mounted at the `file://` URL's path.
fn artifact_claim_volume(
    settings: &JobSettings,
) -> Result<Option<(Volume, VolumeMount)>, JobError> {
    let Some(claim) = &settings.artifact_store_claim else {
        return Ok(None);
    };
    let path = url::Url::parse(&settings.artifact_store_url)
        .ok()
        .filter(|url| url.scheme() == "file")
        .and_then(|url| url.to_file_path().ok())
        .ok_or_else(|| JobError::ClaimWithoutFileStore {
            claim: claim.clone(),
            url: crate::redact::redact_url(&settings.artifact_store_url),
        })?;
    let volume = Volume {
        name: ARTIFACT_VOLUME.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.clone(),
            read_only: Some(false),
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: ARTIFACT_VOLUME.to_string(),
        mount_path: path.display().to_string(),
        ..VolumeMount::default()
    };
    Ok(Some((volume, mount)))
}

/// Deterministic Job name for (object, slot, kind): restarts, two replicas or a lost status write
/// can never create a second Job for one slot, because creating the same name again fails with
/// AlreadyExists.
///
/// The result is a DNS-1123 label of at most 63 characters (the Job's Pods carry the name in their
/// `job-name` label): `{base}-{YYYYMMDDHHMM}` (the slot's UTC minute) for a scheduled run,
/// `{base}-now-{8 hex of SHA-256(token)}` for run-now, `{base}-all-{8 hex of SHA-256(token)}` for
/// a full export. `{base}` is the object name when it is at most 50 characters of `[a-z0-9-]`;
/// otherwise (too long, or holding a '.') it is the name with every other character replaced by
/// '-', cut to 41 characters, then `-{8 hex of SHA-256(name)}`, so two names that differ only after
/// the cut, or only in '.' versus '-', still get distinct Jobs. All suffixes are 13 characters,
/// and a scheduled suffix ends in 12 digits while a token's ends in `now-` or `all-` and 8 hex
/// digits, so Jobs of different objects or kinds never share a name.
pub fn job_name(object_name: &str, slot: DateTime<Utc>, kind: &RunKind) -> String {
    let base = name_base(object_name);
    match kind {
        RunKind::Scheduled => format!("{base}-{}", slot.format("%Y%m%d%H%M")),
        RunKind::RunNow { token } => format!("{base}-now-{}", short_hash(token)),
        RunKind::FullExport { token } => format!("{base}-all-{}", short_hash(token)),
    }
}

/// The object-name part of a Job name: the name itself when it is short and label-safe, else a
/// label-safe prefix plus a hash of the whole name.
pub(super) fn name_base(object_name: &str) -> String {
    let safe: String = object_name
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let label_safe = safe == object_name
        && safe.starts_with(|c: char| c.is_ascii_alphanumeric())
        && safe.ends_with(|c: char| c.is_ascii_alphanumeric());
    if label_safe && safe.len() <= MAX_BASE {
        return safe;
    }
    // `safe` is ASCII, so byte slicing cuts between characters.
    let cut = &safe[..safe.len().min(MAX_BASE - 1 - HASH_HEX)];
    let prefix = cut.trim_matches('-');
    // A name of nothing but separators leaves no prefix; the hash alone would start with a digit
    // or letter either way, but a fixed word keeps the Job recognisable.
    let prefix = if prefix.is_empty() { "sx" } else { prefix };
    format!("{prefix}-{}", short_hash(object_name))
}

/// First 8 hex digits of SHA-256: stable across processes and releases, unlike std's hasher.
pub(super) fn short_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(HASH_HEX);
    hex
}

/// A string the kubelet passes through unchanged: it expands `$(VAR)` in command and env values,
/// and `$$` is its escape for a literal `$`.
fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// The slot as written into the annotation and the `--slot` argument: UTC RFC 3339 with `Z`,
/// fractional seconds only when the instant has them, so [`job_slot`] gives back the same instant.
pub(super) fn format_slot(slot: DateTime<Utc>) -> String {
    slot.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Labels of the Job and of its Pods.
pub(super) fn job_labels(object_name: &str, object_uid: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_APP_NAME.to_string(), APP_NAME.to_string()),
        (LABEL_COMPONENT.to_string(), COMPONENT_EXPORT.to_string()),
        (LABEL_OWNER_UID.to_string(), object_uid.to_string()),
    ]);
    // An object name is a DNS-1123 subdomain, so when it fits it is also a valid label value.
    if object_name.len() <= MAX_JOB_NAME {
        labels.insert(LABEL_OWNER_NAME.to_string(), object_name.to_string());
    }
    labels
}

/// The export Job of one slot of one object.
///
/// Owned by the object (controller, blockOwnerDeletion), so deleting the object garbage-collects its
/// Jobs. The Pod meets the `restricted` Pod Security level, writes only to its spool `emptyDir`,
/// and exits 2 on bad input, which the failure policy turns into an immediate Job failure instead
/// of `backoffLimit` pointless retries.
pub fn build_job(
    object: &ScheduledExport,
    slot: DateTime<Utc>,
    kind: &RunKind,
    settings: &JobSettings,
) -> Result<Job, JobError> {
    let missing = |field| JobError::MissingMetadata { field };
    let name = object.metadata.name.as_deref().ok_or(missing("name"))?;
    let namespace = object
        .metadata
        .namespace
        .as_deref()
        .ok_or(missing("namespace"))?;
    let uid = object.metadata.uid.as_deref().ok_or(missing("uid"))?;
    check_settings(settings)?;
    // kube's controller reference leaves blockOwnerDeletion unset; with it, a foreground deletion
    // of the object waits until its Jobs are gone.
    let owner = OwnerReference {
        block_owner_deletion: Some(true),
        ..object.controller_owner_ref(&()).ok_or(missing("uid"))?
    };

    let job_name = job_name(name, slot, kind);
    let slot_text = format_slot(slot);
    let labels = job_labels(name, uid);

    let mut annotations = BTreeMap::from([(ANNOTATION_SLOT.to_string(), slot_text.clone())]);
    match kind {
        RunKind::Scheduled => {
            annotations.insert(
                ANNOTATION_RUN_KIND.to_string(),
                RUN_KIND_SCHEDULED.to_string(),
            );
        }
        RunKind::RunNow { token } => {
            annotations.insert(
                ANNOTATION_RUN_KIND.to_string(),
                RUN_KIND_RUN_NOW.to_string(),
            );
            annotations.insert(ANNOTATION_RUN_NOW_TOKEN.to_string(), token.clone());
        }
        RunKind::FullExport { token } => {
            annotations.insert(
                ANNOTATION_RUN_KIND.to_string(),
                RUN_KIND_FULL_EXPORT.to_string(),
            );
            annotations.insert(ANNOTATION_FULL_EXPORT_TOKEN.to_string(), token.clone());
        }
    }

    let env_var = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: Some(literal(value)),
        value_from: None,
    };
    let mut env = vec![
        env_var("ARTIFACT_STORE_URL", &settings.artifact_store_url),
        env_var("SPOOL_DIR", SPOOL_MOUNT_PATH),
        // Anything else the process or its libraries write goes to the spool too: `/` is read-only.
        env_var("TMPDIR", SPOOL_MOUNT_PATH),
        env_var("JOB_NAME", &job_name),
        // The incarnation this Job runs for: the export writes status only into the object with
        // this UID, never into a new object of the same name. An environment variable rather
        // than a flag, so an image older than this field still runs the Job.
        env_var(ENV_OBJECT_UID, uid),
        env_var("EXPORT_TIMEOUT", &settings.export_timeout),
        // The object's Secrets are read from the Pod's volumes: the Job's identity cannot read any.
        env_var("SECRETS_DIR", SECRETS_MOUNT_PATH),
    ];
    if matches!(kind, RunKind::FullExport { .. }) {
        env.push(env_var(ENV_FULL_EXPORT, "true"));
    }
    if let Some(format) = &settings.log_format {
        env.push(env_var("LOG_FORMAT", format));
    }

    let command = [
        "scheduled-exports",
        "export",
        "--namespace",
        namespace,
        "--name",
        name,
        "--slot",
        &slot_text,
    ]
    .into_iter()
    .map(literal)
    .collect();

    let artifact_claim = artifact_claim_volume(settings)?;
    let secrets = secret_volumes(object);
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        command: Some(command),
        env: Some(env),
        env_from: settings.artifact_store_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        resources: Some(settings.resources.clone()),
        volume_mounts: Some(
            [VolumeMount {
                name: SPOOL_VOLUME.to_string(),
                mount_path: SPOOL_MOUNT_PATH.to_string(),
                ..VolumeMount::default()
            }]
            .into_iter()
            .chain(secrets.iter().map(|(_, mount)| mount.clone()))
            .chain(artifact_claim.as_ref().map(|(_, mount)| mount.clone()))
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        // The one-line reason on stderr becomes the Pod's termination message, so a failed run
        // explains itself in `kubectl describe` and in the Job's status.
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".to_string()),
        // The object's own identity: its token reads this object and writes its status, nothing else.
        service_account_name: Some(export_identity_name(name)),
        automount_service_account_token: Some(true),
        // Service environment variables are noise for this process and leak the namespace's
        // service list into it.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT_ID),
            run_as_group: Some(NON_ROOT_ID),
            fs_group: Some(NON_ROOT_ID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(
            [Volume {
                name: SPOOL_VOLUME.to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: None,
                    size_limit: settings.spool_size_limit.clone().map(Quantity),
                }),
                ..Volume::default()
            }]
            .into_iter()
            .chain(secrets.into_iter().map(|(volume, _)| volume))
            .chain(artifact_claim.map(|(volume, _)| volume))
            .collect(),
        ),
        ..PodSpec::default()
    };

    // Rules apply in order; the API server accepts a podFailurePolicy only with restartPolicy Never.
    let pod_failure_policy = PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER_NAME.to_string()),
                    operator: "In".to_string(),
                    values: vec![EXIT_BAD_INPUT],
                }),
                on_pod_conditions: None,
            },
            // A Pod evicted by a node drain or preempted did not fail the export; retrying it must
            // not use up the backoff limit (the export is idempotent per slot).
            PodFailurePolicyRule {
                action: "Ignore".to_string(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_string(),
                    status: "True".to_string(),
                }]),
            },
        ],
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(settings.backoff_limit),
            active_deadline_seconds: Some(settings.active_deadline_seconds),
            completions: Some(1),
            parallelism: Some(1),
            pod_failure_policy: Some(pod_failure_policy),
            // A replacement Pod starts only once the previous one has fully terminated, so two
            // processes never export the same object at once (the only value allowed with a
            // podFailurePolicy; stated so the intent is visible).
            pod_replacement_policy: Some("Failed".to_string()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}
