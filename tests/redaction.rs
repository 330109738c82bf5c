//! No credential, and no fragment of one, in anything the product writes: exports that fail and
//! succeed in several ways, with passwords full of URL-special characters (a PostgreSQL role of
//! this test's own, an SFTP password, a key passphrase, an S3 secret key), against the real test
//! bed. Everything is collected (the binary's stdout and stderr, the object's status, the
//! namespace's Events) and searched for every credential.

mod common;

use common::fixture::{Fixture, files_in};
use common::*;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, DeleteParams, ListParams};

/// Characters that break URL parsing (and a few that break quoting), interleaved with letters, so
/// that every four-character window of a password holds at least two of them: a fragment of
/// length 4 found anywhere can only be a leak, never a coincidence with a hash or a name.
const SPECIALS: [char; 16] = [
    '@', ':', '/', '?', '#', '%', '&', '=', '+', ' ', ';', '\'', '"', '\\', '[', ']',
];

fn special_password(tag: u8) -> String {
    let letters: Vec<char> = random_suffix()
        .chars()
        .chain(random_suffix().chars())
        .map(|c| {
            let value = c.to_digit(16).expect("hex") as u8;
            char::from(if value.is_multiple_of(2) { b'A' } else { b'a' } + (value + tag) % 26)
        })
        .collect();
    letters
        .iter()
        .zip(SPECIALS.iter().cycle().skip(usize::from(tag)))
        .flat_map(|(letter, special)| [*letter, *special])
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A password whose only URL-special character is `@`: unencoded, a URL parser takes the text
/// after its first `@` for the host.
fn at_password() -> String {
    special_password(1)
        .chars()
        .map(|c| if c.is_ascii_alphabetic() { c } else { '@' })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Every window of at least 4 characters of `secret` that occurs in `text`.
fn fragments_in(secret: &str, text: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    let mut found = Vec::new();
    for start in 0..chars.len() {
        if chars.len() - start < 4 {
            break;
        }
        let window: String = chars[start..start + 4].iter().collect();
        if text.contains(&window) && !found.contains(&window) {
            found.push(window);
        }
    }
    found
}

/// Replaces Secret `name` with exactly `data`.
async fn set_secret(fixture: &Fixture, name: &str, data: &[(&str, String)]) {
    let secrets: Api<Secret> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let _ = secrets.delete(name, &DeleteParams::default()).await;
    eventually(
        std::time::Duration::from_secs(30),
        "the Secret to go",
        || {
            let secrets = secrets.clone();
            async move { secrets.get_opt(name).await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    create_secret(&fixture.client, &fixture.namespace, name, data).await;
}

/// The test bed's SFTP key, encrypted with `passphrase` (so the bed's sshd accepts it).
fn encrypted_sftp_key(passphrase: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("key");
    std::fs::copy(env_var("SFTP_PRIVATE_KEY_FILE"), &key).expect("copy key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", passphrase, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "encrypt the key");
    std::fs::read_to_string(&key).expect("read key")
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn no_output_carries_a_credential_or_a_fragment_of_one() {
    let fixture = Fixture::new("sx-redact", 3).await;
    let database = database_name(&fixture.database_url);
    let role = format!("sx_redact_{}", random_suffix());
    let role_password = special_password(0);
    let at_role_password = at_password();
    let wrong_db_password = special_password(3);
    let sftp_password = special_password(5);
    let passphrase = special_password(7);
    let wrong_passphrase = special_password(9);
    let s3_secret = special_password(11);
    admin_execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{}'; GRANT CONNECT ON DATABASE {database} TO {role}",
        role_password.replace('\'', "''")
    ))
    .await;
    let at_role = format!("{role}_at");
    admin_execute(&format!(
        "CREATE ROLE {at_role} LOGIN PASSWORD '{at_role_password}'; \
         GRANT CONNECT ON DATABASE {database} TO {at_role}"
    ))
    .await;
    connect_database(&fixture.database_url)
        .await
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
        ))
        .await
        .expect("grant the role read access");

    let (host, port) = (env_var("PGHOST"), env_var("PGPORT"));
    let url = |password: &str, port: &str| {
        format!("postgres://{role}:{password}@{host}:{port}/{database}")
    };
    let unencoded_url = url(&role_password, &port);
    let unencoded_at_url =
        format!("postgres://{at_role}:{at_role_password}@{host}:{port}/{database}");
    let encoded_url = url(&percent_encode(&role_password), &port);
    let wrong_password_url = url(&percent_encode(&wrong_db_password), &port);
    let unreachable_url = url(&percent_encode(&role_password), &closed_port().to_string());
    let known_hosts = sftp_secret_data()[1].1.clone();
    let key_secret = vec![
        ("privateKey", encrypted_sftp_key(&passphrase)),
        ("passphrase", passphrase.clone()),
        ("knownHosts", known_hosts.clone()),
    ];
    let store_with_credentials = format!(
        "s3://{}:{}@{}/{}",
        env_var("AWS_ACCESS_KEY_ID"),
        s3_secret,
        env_var("S3_BUCKET"),
        fixture.namespace
    );

    struct Case {
        name: &'static str,
        database_url: String,
        sftp_secret: Vec<(&'static str, String)>,
        store: Option<String>,
        env: Vec<(&'static str, String)>,
        reason: Option<&'static str>,
        words: &'static [&'static str],
    }
    let case = |name, database_url: &String, reason, words| Case {
        name,
        database_url: database_url.clone(),
        sftp_secret: key_secret.clone(),
        store: None,
        env: Vec::new(),
        reason,
        words,
    };
    let cases = [
        case(
            "unencoded-url",
            &unencoded_url,
            Some("SecretInvalid"),
            &["percent-encode", "spec.source.secretRef"],
        ),
        case(
            "unencoded-at-url",
            &unencoded_at_url,
            Some("SecretInvalid"),
            &["percent-encode"],
        ),
        case(
            "wrong-db-password",
            &wrong_password_url,
            Some("DatabaseFailed"),
            &["password authentication failed"],
        ),
        case(
            "db-unreachable",
            &unreachable_url,
            Some("DatabaseFailed"),
            &[],
        ),
        Case {
            sftp_secret: vec![
                ("password", sftp_password.clone()),
                ("knownHosts", known_hosts.clone()),
            ],
            ..case(
                "wrong-sftp-password",
                &encoded_url,
                Some("AuthenticationFailed"),
                &[],
            )
        },
        Case {
            sftp_secret: vec![
                ("privateKey", encrypted_sftp_key(&passphrase)),
                ("passphrase", wrong_passphrase.clone()),
                ("knownHosts", known_hosts.clone()),
            ],
            ..case(
                "wrong-passphrase",
                &encoded_url,
                Some("PrivateKeyUnreadable"),
                &[],
            )
        },
        Case {
            env: vec![("AWS_SECRET_ACCESS_KEY", s3_secret.clone())],
            ..case(
                "wrong-s3-secret",
                &encoded_url,
                Some("ArtifactStoreFailed"),
                &["access denied"],
            )
        },
        Case {
            store: Some(store_with_credentials.clone()),
            ..case(
                "store-url-credentials",
                &encoded_url,
                Some("ArtifactStoreFailed"),
                &["credentials do not belong"],
            )
        },
        case("delivered", &encoded_url, None, &[]),
    ];

    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        set_secret(
            &fixture,
            "crm-database",
            &[("url", case.database_url.clone())],
        )
        .await;
        set_secret(&fixture, "sftp-credentials", &case.sftp_secret).await;
        let slot = format!("2026-11-{:02}T12:00:00Z", index + 1);
        let store = case
            .store
            .clone()
            .unwrap_or_else(|| fixture.artifact_store.clone());
        let output = run_binary(
            &[
                "export",
                "--namespace",
                &fixture.namespace,
                "--name",
                "daily",
                "--slot",
                &slot,
                "--artifact-store",
                &store,
                "--timeout",
                "5s",
            ],
            &case.env,
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let object = fixture.object("daily").await;
        let status = object.status.clone().unwrap_or_default();
        let exported = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Exported")
            .map(|c| (c.status.clone(), c.reason.clone()));
        match case.reason {
            None if !output.status.success() => {
                failures.push(format!("{}: export failed: {stderr}", case.name))
            }
            Some(reason) if exported != Some(("False".to_string(), reason.to_string())) => failures
                .push(format!(
                    "{}: Exported {exported:?}, expected False/{reason}: {stderr}",
                    case.name
                )),
            _ => {}
        }
        // The reason is the last thing on stderr (an S3 error document spans lines).
        let last_line = format!("\n{stderr}")
            .rfind("\nerror: ")
            .map(|at| stderr[at..].to_string())
            .unwrap_or_default()
            .to_lowercase();
        for word in case.words {
            if !last_line.contains(&word.to_lowercase()) {
                failures.push(format!("{}: reason lacks {word:?}: {last_line}", case.name));
            }
        }
        outputs.push(format!(
            "--- {}\nstdout: {stdout}\nstderr: {stderr}\nstatus: {}",
            case.name,
            serde_json::to_string(&status).expect("status JSON")
        ));
    }
    assert_eq!(
        files_in(&fixture.local_dir),
        ["interactions-20261109T120000Z.csv"],
        "the run with every credential right delivered"
    );

    // sample-data reads the URL from DATABASE_URL; refused or failing, it shows none of it.
    for (name, database_url) in [
        ("sample-data-unencoded", &unencoded_url),
        ("sample-data-wrong-password", &wrong_password_url),
    ] {
        let output = run_binary(
            &["sample-data", "--interactions", "0", "--proposals", "0"],
            &[("DATABASE_URL", database_url.clone())],
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            failures.push(format!("{name}: succeeded"));
        }
        if name.ends_with("unencoded") && !stderr.contains("percent-encode") {
            failures.push(format!("{name}: not refused as unencoded: {stderr}"));
        }
        outputs.push(format!(
            "--- {name}\n{stderr}{}",
            String::from_utf8_lossy(&output.stdout)
        ));
    }

    let events: Api<Event> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    for event in events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
    {
        outputs.push(format!(
            "--- Event {}",
            serde_json::to_string(&event).expect("json")
        ));
    }
    let object = fixture.object("daily").await;
    outputs.push(format!(
        "--- object status {}",
        serde_json::to_string(&object.status).expect("json")
    ));
    let everything = outputs.join("\n");

    let special = [
        ("role password", &role_password),
        ("@ role password", &at_role_password),
        ("wrong database password", &wrong_db_password),
        ("SFTP password", &sftp_password),
        ("passphrase", &passphrase),
        ("wrong passphrase", &wrong_passphrase),
        ("S3 secret key", &s3_secret),
    ];
    for (what, secret) in special {
        let found = fragments_in(secret, &everything);
        if !found.is_empty() {
            failures.push(format!("fragments of the {what} appear: {found:?}"));
        }
        if everything.contains(&percent_encode(secret)) {
            failures.push(format!("the {what} appears percent-encoded"));
        }
    }
    for secret in secret_values() {
        if everything.contains(&secret) {
            failures.push("a credential of the test bed appears".to_string());
        }
    }

    admin_execute(&format!("REVOKE ALL ON DATABASE {database} FROM {role}")).await;
    fixture.cleanup().await;
    admin_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
    admin_execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    admin_execute(&format!("DROP ROLE IF EXISTS {at_role}")).await;
    assert!(
        failures.is_empty(),
        "{}\n\n{everything}",
        failures.join("\n")
    );
}

/// Creates a login role with `password` that may read the fixture's tables; returns its name.
async fn reader_role(fixture: &Fixture, password: &str) -> String {
    let database = database_name(&fixture.database_url);
    let role = format!("sx_redact_{}", random_suffix());
    admin_execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{}'; GRANT CONNECT ON DATABASE {database} TO {role}",
        password.replace('\'', "''")
    ))
    .await;
    connect_database(&fixture.database_url)
        .await
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
        ))
        .await
        .expect("grant the role read access");
    role
}

/// The export in real Job Pods of this worktree's image, started by the operator binary running
/// beside them: a run whose URL holds an unencoded password fails, then a run with it encoded
/// delivers. The operator's stdout and stderr, every Pod's log and termination message, the
/// namespace's Events and the object's status hold no fragment of the password.
#[tokio::test]
async fn export_pods_and_the_operator_show_no_fragment_of_a_password() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{LogParams, Patch, PatchParams};

    let fixture = Fixture::new("sx-redact-pod", 3).await;
    let database = database_name(&fixture.database_url);
    let password = at_password();
    let role = reader_role(&fixture, &password).await;
    let (host, port) = (env_var("PGHOST"), env_var("PGPORT"));
    let url = |password: &str| format!("postgres://{role}:{password}@{host}:{port}/{database}");
    set_secret(&fixture, "crm-database", &[("url", url(&password))]).await;

    let operator_log = tempfile::NamedTempFile::new().expect("log file");
    let operator = std::process::Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args([
            "controller",
            "--namespace",
            &fixture.namespace,
            "--image",
            // An image of this tree when the environment names one, else the test bed's.
            &std::env::var("SCHEDULED_EXPORTS_IMAGE")
                .unwrap_or_else(|_| env_var("SCHEDULED_EXPORTS_IMAGE")),
            "--job-image-pull-policy",
            "Never",
            "--artifact-store",
            &fixture.artifact_store,
            "--artifact-store-secret",
            ARTIFACT_STORE_SECRET,
            "--leader-election",
            "false",
            "--listen-address",
            "127.0.0.1:0",
        ])
        .env_clear()
        .envs(binary_env())
        .stdout(operator_log.reopen().expect("log"))
        .stderr(operator_log.reopen().expect("log"))
        .spawn()
        .expect("start the operator");
    let mut operator = Stopped(operator);
    let mut failures = Vec::new();

    let run_now = |token: &'static str| {
        let api = fixture.api();
        async move {
            let patch = json_patch(token);
            api.patch("daily", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("annotate");
        }
    };
    let pods: Api<Pod> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let mut collected = Vec::new();

    run_now("unencoded").await;
    let failed_pod = eventually(
        std::time::Duration::from_secs(120),
        "an export Pod that failed",
        || {
            let pods = pods.clone();
            async move {
                pods.list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|pod| {
                        pod.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .is_some_and(|statuses| {
                                statuses.iter().any(|c| {
                                    c.state
                                        .as_ref()
                                        .and_then(|s| s.terminated.as_ref())
                                        .is_some_and(|t| t.exit_code != 0)
                                })
                            })
                    })
            }
        },
    )
    .await;
    let object = fixture.object("daily").await;
    let exported = object
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Exported"))
        .map(|c| c.reason.clone());
    if exported.as_deref() != Some("SecretInvalid") {
        failures.push(format!(
            "Exported reason {exported:?}, expected SecretInvalid"
        ));
    }
    let termination = serde_json::to_string(&failed_pod.status).expect("json");
    if !termination.contains("percent-encode") {
        failures.push("the termination message does not say to percent-encode".to_string());
    }
    let job_name = failed_pod
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("batch.kubernetes.io/job-name").cloned())
        .expect("the Pod's Job");
    collected.push(format!("--- failed Pod {termination}"));
    collected.push(job_pod_logs(&fixture.client, &fixture.namespace, &job_name).await);
    // The failed run's Job goes, so the next run need not wait for its retries.
    let jobs: Api<Job> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    jobs.delete(&job_name, &DeleteParams::background())
        .await
        .expect("delete the failed Job");

    set_secret(
        &fixture,
        "crm-database",
        &[("url", url(&percent_encode(&password)))],
    )
    .await;
    run_now("encoded").await;
    // The run of this token, once it ended: whether it delivered.
    let delivered = eventually(
        std::time::Duration::from_secs(120),
        "the encoded run to end",
        || async {
            let run = fixture.object("daily").await.status?.last_run?;
            let phase = run.phase?;
            (run.job_name.as_deref() != Some(job_name.as_str())
                && matches!(phase.as_str(), "Succeeded" | "Failed"))
            .then(|| phase.as_str() == "Succeeded")
        },
    )
    .await;
    if !delivered {
        failures.push(format!(
            "the run with the password encoded did not deliver: {:?}",
            fixture
                .object("daily")
                .await
                .status
                .and_then(|s| s.last_run)
        ));
    }
    for pod in pods.list(&ListParams::default()).await.expect("pods").items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let log = pods
            .logs(&name, &LogParams::default())
            .await
            .unwrap_or_default();
        collected.push(format!(
            "--- Pod {name} {}\n{log}",
            serde_json::to_string(&pod.status).expect("json")
        ));
    }
    let events: Api<Event> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    for event in events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
    {
        collected.push(format!(
            "--- Event {}",
            serde_json::to_string(&event).expect("json")
        ));
    }
    collected.push(format!(
        "--- status {}",
        serde_json::to_string(&fixture.object("daily").await.status).expect("json")
    ));
    let _ = operator.0.kill();
    let _ = operator.0.wait();
    collected.push(format!(
        "--- operator\n{}",
        std::fs::read_to_string(operator_log.path()).expect("operator log")
    ));
    let everything = collected.join("\n");

    let found = fragments_in(&password, &everything);
    if !found.is_empty() {
        failures.push(format!("fragments of the password appear: {found:?}"));
    }
    for secret in secret_values() {
        if everything.contains(&secret) {
            failures.push("a credential of the test bed appears".to_string());
        }
    }
    if !everything.contains("--- Event") {
        failures.push("the operator published no Event to search".to_string());
    }
    fixture.cleanup().await;
    admin_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
    admin_execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    assert!(
        failures.is_empty(),
        "{}\n\n{everything}",
        failures.join("\n")
    );
}

/// A child process of this test, killed when the test ends however it ends.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json_patch(token: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {
        scheduled_exports::resource::RUN_NOW_ANNOTATION: token
    }}})
}
