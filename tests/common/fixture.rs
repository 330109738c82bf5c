//! A ScheduledExport ready to run on the test bed: its namespace (enforcing the restricted Pod
//! Security level), Secrets, a database with sample rows, an SFTP
//! directory and an artifact prefix of its own.

use std::path::{Path, PathBuf};

use kube::Client;
use kube::api::Api;
use scheduled_exports::resource::ScheduledExport;
use serde_json::json;

use super::*;

/// One ScheduledExport with its own namespace, database, SFTP directory and artifact prefix.
pub struct Fixture {
    pub client: Client,
    pub namespace: String,
    pub database_url: String,
    pub remote_dir: String,
    pub local_dir: PathBuf,
    pub artifact_store: String,
}

impl Fixture {
    pub async fn new(prefix: &str, sample_interactions: u64) -> Self {
        let client = client().await;
        install_crd(&client).await;
        let namespace = restricted_namespace(&client, prefix).await;
        // The store's credentials, as in a namespace where Jobs run (each Job's identity is the
        // operator's own making), so the operator's Jobs run here as real Pods.
        create_secret(
            &client,
            &namespace,
            ARTIFACT_STORE_SECRET,
            &artifact_store_secret_data(),
        )
        .await;
        let database_url = create_database("sx_export").await;
        load_sample_data(&database_url, sample_interactions, 7);
        let (remote_dir, local_dir) = sftp_directory(&namespace);
        create_secret(
            &client,
            &namespace,
            "crm-database",
            &[("url", database_url.clone())],
        )
        .await;
        create_secret(&client, &namespace, "sftp-credentials", &sftp_secret_data()).await;
        let fixture = Fixture {
            artifact_store: format!("s3://{}/{namespace}", env_var("S3_BUCKET")),
            client,
            namespace,
            database_url,
            remote_dir,
            local_dir,
        };
        fixture.create_object("daily", json!({})).await;
        fixture
    }

    /// Creates a ScheduledExport pointing at this fixture's database and directory; `overrides`
    /// is merged into the SFTP destination.
    pub async fn create_object(&self, name: &str, sftp_overrides: serde_json::Value) {
        let mut sftp = json!({
            "host": env_var("SFTP_HOST"),
            "port": env_var("SFTP_PORT").parse::<u16>().expect("port"),
            "username": env_var("SFTP_USER"),
            "directory": self.remote_dir,
            "secretRef": {"name": "sftp-credentials"},
        });
        for (key, value) in sftp_overrides.as_object().expect("object") {
            sftp[key] = value.clone();
        }
        let mut object = valid_object(name);
        object["spec"]["destination"]["sftp"] = sftp;
        let object: ScheduledExport = serde_json::from_value(object).expect("object");
        self.api()
            .create(&Default::default(), &object)
            .await
            .expect("create ScheduledExport");
    }

    /// Points the object's source Secret at another database URL.
    pub async fn set_database_url(&self, url: &str) {
        use k8s_openapi::api::core::v1::Secret;
        Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .patch(
                "crm-database",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({"stringData": {"url": url}})),
            )
            .await
            .expect("patch the source Secret");
    }

    pub fn api(&self) -> Api<ScheduledExport> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn export(&self, name: &str, slot: &str) -> std::process::Output {
        self.export_with_store(name, slot, &self.artifact_store)
    }

    pub fn export_with_store(&self, name: &str, slot: &str, store: &str) -> std::process::Output {
        run_binary(
            &[
                "export",
                "--namespace",
                &self.namespace,
                "--name",
                name,
                "--slot",
                slot,
                "--artifact-store",
                store,
                "--timeout",
                "5s",
            ],
            &[],
        )
    }

    /// Merges `spec` into the object's spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.api()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch spec");
    }

    /// Polls the object until `check` returns something (a minute at most).
    pub async fn wait_for<T>(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&ScheduledExport) -> Option<T>,
    ) -> T {
        let check = &check;
        eventually(std::time::Duration::from_secs(60), what, || async move {
            let object = self.api().get(name).await.ok()?;
            check(&object)
        })
        .await
    }

    pub async fn object(&self, name: &str) -> ScheduledExport {
        self.api().get(name).await.expect("get ScheduledExport")
    }

    pub async fn cleanup(self) {
        delete_namespace(&self.client, &self.namespace).await;
        let _ = std::fs::remove_dir_all(&self.local_dir);
    }
}

/// Applies the reference schema to the database at `url` and fills it with `interactions` sample
/// interactions (and 3 proposals), the same for the same `seed`.
pub fn load_sample_data(url: &str, interactions: u64, seed: u64) {
    // The URL from the environment, as the documentation says to pass it (not visible in `ps`).
    let output = run_binary(
        &[
            "sample-data",
            "--interactions",
            &interactions.to_string(),
            "--proposals",
            "3",
            "--seed",
            &seed.to_string(),
        ],
        &[("DATABASE_URL", url.to_string())],
    );
    assert!(
        output.status.success(),
        "sample-data: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("open delivered file");
    let headers = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|record| record.expect("record").iter().map(str::to_string).collect())
        .collect();
    (headers, rows)
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read SFTP directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
