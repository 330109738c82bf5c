//! The identity of one object's export Jobs: a ServiceAccount of its own, and a Role and
//! RoleBinding that let it read that one ScheduledExport and write that one object's status.
//! Nothing else: the Secrets the object names reach the Pod as volumes, which the kubelet fills,
//! so the token an export Pod carries can read no Secret and touch no other object.
//!
//! All three are owned by the object (garbage-collected with it) and carry the export labels.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::resource::ScheduledExport;

use super::JobError;
use super::build::{job_labels, name_base};

/// API group of ScheduledExports, as RBAC rules name it.
const API_GROUP: &str = "exports.crm.dev";

/// The ServiceAccount, Role and RoleBinding of one object's export Jobs (all of one name).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportIdentity {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// Name of the ServiceAccount (and of its Role and RoleBinding) of an object's export Jobs: a
/// fixed prefix, so what the operator creates is recognisable next to a namespace's own accounts,
/// and the same label-safe base as the object's Job names (two objects never share it).
pub fn export_identity_name(object_name: &str) -> String {
    format!("scheduled-export-{}", name_base(object_name))
}

/// The identity of `object`'s export Jobs.
pub fn export_identity(object: &ScheduledExport) -> Result<ExportIdentity, JobError> {
    let missing = |field| JobError::MissingMetadata { field };
    let name = object.metadata.name.as_deref().ok_or(missing("name"))?;
    let namespace = object
        .metadata
        .namespace
        .as_deref()
        .ok_or(missing("namespace"))?;
    let uid = object.metadata.uid.as_deref().ok_or(missing("uid"))?;
    // No blockOwnerDeletion: nothing needs to wait for these before the object is gone.
    let owner = object.controller_owner_ref(&()).ok_or(missing("uid"))?;
    let identity = export_identity_name(name);
    let metadata = ObjectMeta {
        name: Some(identity.clone()),
        namespace: Some(namespace.to_string()),
        labels: Some(job_labels(name, uid)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    let only_this_object = |resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![API_GROUP.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: Some(vec![name.to_string()]),
        verbs: verbs.iter().map(|verb| verb.to_string()).collect(),
        non_resource_urls: None,
    };
    Ok(ExportIdentity {
        service_account: ServiceAccount {
            metadata: metadata.clone(),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: metadata.clone(),
            rules: Some(vec![
                only_this_object("scheduledexports", &["get"]),
                only_this_object("scheduledexports/status", &["get", "update", "patch"]),
            ]),
        },
        role_binding: RoleBinding {
            metadata,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_string(),
                kind: "Role".to_string(),
                name: identity.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: identity,
                namespace: Some(namespace.to_string()),
                api_group: None,
            }]),
        },
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Volume;
    use serde_json::json;

    use super::*;
    use crate::operator::job::{JobSettings, RunKind, build_job};

    fn object(name: &str, source_secret: &str, sftp_secret: &str) -> ScheduledExport {
        serde_json::from_value(json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {"name": name, "namespace": "univ-a", "uid": "uid-1"},
            "spec": {
                "fileType": "interactions",
                "time": "07:00",
                "source": {"secretRef": {"name": source_secret}},
                "destination": {"sftp": {
                    "host": "sftp.example.edu",
                    "username": "u",
                    "secretRef": {"name": sftp_secret},
                }},
            },
        }))
        .expect("object")
    }

    fn settings() -> JobSettings {
        JobSettings {
            artifact_store_url: "s3://artifacts/prefix".to_string(),
            ..JobSettings::default()
        }
    }

    #[test]
    fn the_role_reaches_only_this_object_and_never_a_secret() {
        let identity = export_identity(&object("daily", "db", "sftp")).expect("identity");
        let rules = serde_json::to_value(&identity.role.rules).expect("rules");
        assert_eq!(
            rules,
            json!([
                {"apiGroups": ["exports.crm.dev"], "resources": ["scheduledexports"],
                 "resourceNames": ["daily"], "verbs": ["get"]},
                {"apiGroups": ["exports.crm.dev"], "resources": ["scheduledexports/status"],
                 "resourceNames": ["daily"], "verbs": ["get", "update", "patch"]},
            ])
        );
        let binding = &identity.role_binding;
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "scheduled-export-daily");
        let subjects = serde_json::to_value(&binding.subjects).expect("subjects");
        assert_eq!(
            subjects,
            json!([{"kind": "ServiceAccount", "name": "scheduled-export-daily", "namespace": "univ-a"}])
        );
        for metadata in [
            &identity.service_account.metadata,
            &identity.role.metadata,
            &binding.metadata,
        ] {
            assert_eq!(metadata.name.as_deref(), Some("scheduled-export-daily"));
            assert_eq!(metadata.namespace.as_deref(), Some("univ-a"));
            let owner = &metadata.owner_references.as_ref().expect("owner")[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                ("uid-1", Some(true))
            );
            let labels = metadata.labels.as_ref().expect("labels");
            assert_eq!(labels["app.kubernetes.io/name"], "scheduled-exports");
            assert_eq!(labels["app.kubernetes.io/component"], "export");
        }
    }

    #[test]
    fn identities_of_distinct_objects_are_distinct() {
        let long = "a".repeat(60);
        let names = ["daily", "daily.x", "daily-x", long.as_str()];
        let identities: std::collections::BTreeSet<_> = names
            .iter()
            .map(|name| export_identity_name(name))
            .collect();
        assert_eq!(identities.len(), names.len(), "{identities:?}");
    }

    #[test]
    fn the_job_runs_as_the_objects_identity_with_its_secrets_as_optional_volumes() {
        let job = build_job(
            &object("daily", "db", "sftp"),
            chrono::Utc::now(),
            &RunKind::Scheduled,
            &settings(),
        )
        .expect("job");
        let pod = job.spec.expect("spec").template.spec.expect("pod");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("scheduled-export-daily")
        );
        let secret_volumes: Vec<&Volume> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|volume| volume.secret.is_some())
            .collect();
        let secrets: Vec<(Option<&str>, Option<bool>)> = secret_volumes
            .iter()
            .map(|volume| {
                let secret = volume.secret.as_ref().expect("secret");
                (secret.secret_name.as_deref(), secret.optional)
            })
            .collect();
        assert_eq!(
            secrets,
            [(Some("db"), Some(true)), (Some("sftp"), Some(true))]
        );
        let mounts: Vec<(String, Option<bool>)> = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .filter(|mount| mount.mount_path.starts_with("/secrets/"))
            .map(|mount| (mount.mount_path.clone(), mount.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("/secrets/db".to_string(), Some(true)),
                ("/secrets/sftp".to_string(), Some(true))
            ]
        );
        // No Secret reaches the export through the environment of its own object's references.
        let env_from_secrets = pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter(|var| var.value_from.is_some())
            .count();
        assert_eq!(env_from_secrets, 0);

        // One Secret named by both references is mounted once.
        let job = build_job(
            &object("daily", "both", "both"),
            chrono::Utc::now(),
            &RunKind::Scheduled,
            &settings(),
        )
        .expect("job");
        let pod = job.spec.expect("spec").template.spec.expect("pod");
        let mounted = pod
            .volumes
            .iter()
            .flatten()
            .filter(|volume| volume.secret.is_some())
            .count();
        assert_eq!(mounted, 1);
    }
}
