//! Fault injection against the real test bed: "nothing lost", whatever fails and wherever.
//!
//! Writers commit, roll back and hold transactions open on the source while `scheduled-exports
//! export` processes are killed at every step of a run (mid-COPY, mid-upload, after the rename,
//! before the status write), and while toxiproxy cuts, resets or stalls the links to PostgreSQL,
//! sshd and the API server, and while the leading operator is killed with its Job running. After
//! each fault, and after a last clean export, the tests look at what an institution sees: the
//! files under final names in the object's SFTP directory. Each is a complete CSV whose size and
//! sha256 agree with the status and the artifact store wherever they say something about it;
//! importing them in name order yields every committed row in its latest version and nothing a
//! transaction rolled back; the watermark never moves on a failed run; no secret of the test bed
//! shows in any output, status or Event.
//!
//! How a run is caught at a step, without hooks in the product: a slow link (a bandwidth toxic)
//! makes each step last seconds, and the test watches the step happen from outside (the COPY in
//! `pg_stat_activity`, the temporary upload file growing in the SFTP directory, the final name
//! appearing while the API server is stalled), then kills the process. What the process printed
//! proves where it was: a run killed mid-COPY never logged "window exported", one killed
//! mid-upload or before its status write never logged "export delivered".

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixture::Fixture;
use common::toxiproxy::{Proxy, Stream, Toxic, Toxiproxy};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scheduled_exports::adapters::artifacts::{ArtifactKey, ArtifactStore, S3Options};
use scheduled_exports::export::file_name::parse_export_file_name;
use scheduled_exports::resource::FileType;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OBJECT: &str = "faults";

const ID: usize = 0;
const SUMMARY: usize = 7;

/// Sample rows per test: enough that every full export takes seconds through the slow links below.
const SAMPLE_ROWS: u64 = 3000;
/// Writer tasks; sample rows `id % OWNERS == w` belong to writer `w`, the last share to the
/// transactions held open across faults, so each row has one writer and its versions one order.
const WRITERS: i64 = 3;
const OWNERS: i64 = WRITERS + 1;

/// What the export prints when its window is complete (the COPY has ended) and when the run is
/// recorded (the status write has happened).
const WINDOW_EXPORTED: &str = "window exported";
const EXPORT_DELIVERED: &str = "export delivered";

/// The slot of test day `day` (October 2026) and the name of its file.
fn slot(day: u32) -> String {
    format!("2026-10-{day:02}T12:00:00Z")
}

fn file_name(day: u32) -> String {
    format!("interactions-202610{day:02}T120000Z.csv")
}

// ---------------------------------------------------------------------------------------------
// What committed and what did not.

/// Every write the test's clients made to `interactions`, by outcome. A row's versions are told
/// apart by its `summary`, a token unique to one write.
#[derive(Debug, Default, Clone)]
struct Ledger {
    /// Committed versions of each row, oldest first (one writer per row, so this is commit order).
    history: BTreeMap<i64, Vec<String>>,
    committed: HashSet<String>,
    rolled_back: HashSet<String>,
    /// Rows inserted by transactions that rolled back: they must never appear.
    rolled_back_ids: BTreeSet<i64>,
    commits: u64,
    rollbacks: u64,
}

impl Ledger {
    fn latest(&self) -> BTreeMap<i64, String> {
        self.history
            .iter()
            .filter_map(|(id, versions)| Some((*id, versions.last()?.clone())))
            .collect()
    }

    fn record(&mut self, writes: &[(i64, String)], inserted: &[i64], committed: bool) {
        if committed {
            self.commits += 1;
            for (id, token) in writes {
                self.history.entry(*id).or_default().push(token.clone());
                self.committed.insert(token.clone());
            }
        } else {
            self.rollbacks += 1;
            self.rolled_back
                .extend(writes.iter().map(|(_, token)| token.clone()));
            self.rolled_back_ids.extend(inserted.iter().copied());
        }
    }
}

type SharedLedger = Arc<Mutex<Ledger>>;

/// One transaction of the test's: inserts and updates whose outcome goes into the ledger.
struct Write<'a> {
    client: &'a tokio_postgres::Client,
    writes: Vec<(i64, String)>,
    inserted: Vec<i64>,
}

impl<'a> Write<'a> {
    async fn begin(client: &'a tokio_postgres::Client) -> Write<'a> {
        client.batch_execute("BEGIN").await.expect("BEGIN");
        Write {
            client,
            writes: Vec::new(),
            inserted: Vec::new(),
        }
    }

    async fn insert(&mut self, owner: i64, token: String) -> i64 {
        let id: i64 = self
            .client
            .query_one(
                "INSERT INTO interactions (constituent_id, summary, solicitors) \
                 VALUES ($1, $2, ARRAY['Ann Lee']) RETURNING interaction_id",
                &[&owner, &token],
            )
            .await
            .expect("insert")
            .get(0);
        self.writes.push((id, token));
        self.inserted.push(id);
        id
    }

    async fn update(&mut self, id: i64, token: String) {
        let updated = self
            .client
            .execute(
                "UPDATE interactions SET summary = $2 WHERE interaction_id = $1",
                &[&id, &token],
            )
            .await
            .expect("update");
        assert_eq!(updated, 1, "row {id} exists");
        self.writes.push((id, token));
    }

    /// Commits or rolls back; the ledger learns the outcome only once the server confirmed it.
    async fn end(self, commit: bool, ledger: &SharedLedger) -> Vec<i64> {
        // A failed statement would have panicked above, so COMMIT here really commits.
        self.client
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await
            .expect("end transaction");
        ledger
            .lock()
            .expect("ledger")
            .record(&self.writes, &self.inserted, commit);
        if commit { self.inserted } else { Vec::new() }
    }
}

/// Writes until `stop`: each transaction inserts a row and/or updates one or two of the writer's
/// own rows, then commits (7 in 10) or rolls back.
async fn writer(
    url: String,
    tag: String,
    owner: i64,
    mut own_rows: Vec<i64>,
    ledger: SharedLedger,
    stop: Arc<AtomicBool>,
) {
    let client = connect_database(&url).await;
    let mut rng = StdRng::seed_from_u64(owner as u64 + 1);
    let mut seq = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let mut write = Write::begin(&client).await;
        if rng.random_bool(0.4) {
            write
                .insert(owner, format!("fw-{tag}-{owner}-{seq}-i"))
                .await;
        }
        for _ in 0..rng.random_range(1..=2) {
            let id = own_rows[rng.random_range(0..own_rows.len())];
            write
                .update(id, format!("fw-{tag}-{owner}-{seq}-u{id}"))
                .await;
        }
        let inserted = write.end(rng.random_bool(0.7), &ledger).await;
        own_rows.extend(inserted);
        // Pacing, not waiting for state: a steady load of about 25 transactions a second each.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// A transaction held open across a fault: it inserts a row and updates one of the holders' sample
/// rows, and ends only when the test says.
struct Held {
    client: tokio_postgres::Client,
    writes: Vec<(i64, String)>,
    inserted: Vec<i64>,
}

impl Held {
    async fn open(bed: &Bed, label: &str) -> Held {
        let client = connect_database(&bed.fixture.database_url).await;
        let update_id = {
            let ledger = bed.ledger.lock().expect("ledger");
            let mut held_rows = bed.held_rows.lock().expect("held rows");
            let id = *ledger
                .history
                .keys()
                .find(|id| *id % OWNERS == WRITERS && !held_rows.contains(id))
                .expect("a holders' row left");
            held_rows.insert(id);
            id
        };
        let mut write = Write::begin(&client).await;
        write
            .insert(WRITERS, format!("fw-{}-held-{label}-i", bed.tag))
            .await;
        write
            .update(
                update_id,
                format!("fw-{}-held-{label}-u{update_id}", bed.tag),
            )
            .await;
        let (writes, inserted) = (write.writes, write.inserted);
        Held {
            client,
            writes,
            inserted,
        }
    }

    async fn end(self, commit: bool, ledger: &SharedLedger) {
        let write = Write {
            client: &self.client,
            writes: self.writes.clone(),
            inserted: self.inserted.clone(),
        };
        write.end(commit, ledger).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The bed of one test: a fixture whose object reaches PostgreSQL, sshd and the API server through
// proxies of its own.

struct Bed {
    fixture: Fixture,
    tag: String,
    postgres: Proxy,
    sftp: Proxy,
    api: Proxy,
    /// A kubeconfig whose server is the API proxy.
    proxied_kubeconfig: PathBuf,
    work: tempfile::TempDir,
    database: String,
    ledger: SharedLedger,
    held_rows: Mutex<BTreeSet<i64>>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    /// Everything every export process printed, for the secrets check.
    outputs: Mutex<Vec<String>>,
}

impl Bed {
    async fn new(prefix: &str, toxiproxy: &Toxiproxy) -> Bed {
        let fixture = Fixture::new(prefix, SAMPLE_ROWS).await;
        let tag = random_suffix();
        let upstream = |host: &str, port: &str| format!("{host}:{port}");
        let postgres = toxiproxy.create_proxy(
            &format!("{prefix}-{tag}-postgres"),
            &upstream(&env_var("PGHOST"), &env_var("PGPORT")),
        );
        let sftp = toxiproxy.create_proxy(
            &format!("{prefix}-{tag}-sftp"),
            &upstream(&env_var("SFTP_HOST"), &env_var("SFTP_PORT")),
        );
        let api_url = url::Url::parse(&env_var("KUBE_APISERVER_URL")).expect("API server URL");
        let api = toxiproxy.create_proxy(
            &format!("{prefix}-{tag}-apiserver"),
            &upstream(
                api_url.host_str().expect("host"),
                &api_url.port_or_known_default().expect("port").to_string(),
            ),
        );
        let work = tempfile::tempdir().expect("work directory");

        // The object's Secrets name the proxies: the database URL, and known_hosts for the
        // proxy's address (OpenSSH records host keys per host and port).
        let mut proxied_url = url::Url::parse(&fixture.database_url).expect("database URL");
        proxied_url
            .set_host(Some(&postgres.host))
            .expect("proxy host");
        proxied_url
            .set_port(Some(postgres.port))
            .expect("proxy port");
        let database = proxied_url.path().trim_start_matches('/').to_string();
        create_secret(
            &fixture.client,
            &fixture.namespace,
            "crm-database-proxied",
            &[("url", proxied_url.to_string())],
        )
        .await;
        create_secret(
            &fixture.client,
            &fixture.namespace,
            "sftp-proxied",
            &[
                (
                    "privateKey",
                    std::fs::read_to_string(env_var("SFTP_PRIVATE_KEY_FILE")).expect("key"),
                ),
                ("knownHosts", sftp.sshd_known_hosts_line()),
            ],
        )
        .await;
        fixture
            .create_object(
                OBJECT,
                json!({"host": sftp.host, "port": sftp.port, "secretRef": {"name": "sftp-proxied"}}),
            )
            .await;
        fixture
            .patch_spec(
                OBJECT,
                json!({"source": {"secretRef": {"name": "crm-database-proxied"}}}),
            )
            .await;

        // The same kubeconfig with the API proxy as its server; the server certificate names the
        // address the proxies listen on (the test bed's node address) among its SANs.
        let kubeconfig = std::fs::read_to_string(kubeconfig_path()).expect("kubeconfig");
        let server = env_var("KUBE_APISERVER_URL");
        assert!(
            kubeconfig.contains(&server),
            "the kubeconfig names {server}"
        );
        let proxied_kubeconfig = work.path().join("kubeconfig");
        std::fs::write(
            &proxied_kubeconfig,
            kubeconfig.replace(&server, &format!("https://{}", api.address())),
        )
        .expect("write kubeconfig");

        // The sample rows, as committed before the test begins.
        let client = connect_database(&fixture.database_url).await;
        let mut ledger = Ledger::default();
        for row in client
            .query(
                "SELECT interaction_id, coalesce(summary, '') FROM interactions",
                &[],
            )
            .await
            .expect("sample rows")
        {
            ledger
                .history
                .insert(row.get(0), vec![row.get::<_, String>(1)]);
        }
        assert_eq!(ledger.history.len() as u64, SAMPLE_ROWS);
        Bed {
            fixture,
            tag,
            postgres,
            sftp,
            api,
            proxied_kubeconfig,
            work,
            database,
            ledger: Arc::new(Mutex::new(ledger)),
            held_rows: Mutex::new(BTreeSet::new()),
            stop: Arc::new(AtomicBool::new(false)),
            writers: Vec::new(),
            outputs: Mutex::new(Vec::new()),
        }
    }

    fn start_writers(&mut self) {
        let ledger = self.ledger.lock().expect("ledger").clone();
        for owner in 0..WRITERS {
            let own_rows: Vec<i64> = ledger
                .history
                .keys()
                .copied()
                .filter(|id| id % OWNERS == owner)
                .collect();
            self.writers.push(tokio::spawn(writer(
                self.fixture.database_url.clone(),
                self.tag.clone(),
                owner,
                own_rows,
                self.ledger.clone(),
                self.stop.clone(),
            )));
        }
    }

    /// Stops the writers; a writer that failed fails the test here.
    async fn stop_writers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers.drain(..) {
            writer.await.expect("a writer failed");
        }
        let ledger = self.ledger.lock().expect("ledger");
        assert!(
            ledger.commits > 20 && ledger.rollbacks > 5,
            "the writers wrote while exports ran ({} commits, {} rollbacks)",
            ledger.commits,
            ledger.rollbacks
        );
    }

    /// One committed transaction that updates 600 of the holders' rows (none held open), so the
    /// next incremental file spans many SSH packets and its upload is seen growing.
    async fn bulk_update(&self, label: &str) {
        let client = connect_database(&self.fixture.database_url).await;
        let ids: Vec<i64> = {
            let ledger = self.ledger.lock().expect("ledger");
            let held_rows = self.held_rows.lock().expect("held rows");
            ledger
                .history
                .keys()
                .copied()
                .filter(|id| id % OWNERS == WRITERS && !held_rows.contains(id))
                .take(600)
                .collect()
        };
        let mut write = Write::begin(&client).await;
        let prefix = format!("fw-{}-bulk-{label}-", self.tag);
        let updated = client
            .execute(
                "UPDATE interactions SET summary = $2 || interaction_id \
                 WHERE interaction_id = ANY($1)",
                &[&ids, &prefix],
            )
            .await
            .expect("bulk update");
        assert_eq!(updated, ids.len() as u64);
        write.writes = ids
            .iter()
            .map(|id| (*id, format!("{prefix}{id}")))
            .collect();
        write.end(true, &self.ledger).await;
    }

    /// Starts `scheduled-exports export` for `day`'s slot, reaching everything through the proxies
    /// (the API server too when `through_api_proxy`).
    fn spawn_export(&self, day: u32, through_api_proxy: bool, timeout: &str) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scheduled-exports"));
        command
            .args([
                "export",
                "--namespace",
                &self.fixture.namespace,
                "--name",
                OBJECT,
                "--slot",
                &slot(day),
                "--artifact-store",
                &self.fixture.artifact_store,
                "--timeout",
                timeout,
                "--spool-dir",
            ])
            .arg(self.work.path())
            .env_clear()
            .envs(binary_env());
        if through_api_proxy {
            command.env("KUBECONFIG", &self.proxied_kubeconfig);
        }
        Running::start(command, format!("export of {}", slot(day)))
    }

    /// Starts `scheduled-exports controller` for this test's namespace as replica `identity`,
    /// electing its leader through a Lease there; its Jobs run the test bed's image as Pods.
    fn spawn_controller(&self, identity: &str) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scheduled-exports"));
        command
            .args([
                "controller",
                "--namespace",
                &self.fixture.namespace,
                "--image",
                &env_var("SCHEDULED_EXPORTS_IMAGE"),
                "--job-image-pull-policy",
                "Never",
                "--artifact-store",
                &self.fixture.artifact_store,
                "--artifact-store-secret",
                ARTIFACT_STORE_SECRET,
                "--listen-address",
                "127.0.0.1:0",
                "--lease-namespace",
                &self.fixture.namespace,
                "--identity",
                identity,
            ])
            .env_clear()
            .envs(binary_env());
        Running::start(command, format!("controller {identity}"))
    }

    /// Runs a clean export of `day` (no toxics) to success.
    async fn export_ok(&self, day: u32) -> Finished {
        let finished = self
            .spawn_export(day, true, "20s")
            .exit_within(Duration::from_secs(60))
            .await;
        self.keep_output(&finished);
        assert!(
            finished.success,
            "the clean export of {} failed:\n{}",
            slot(day),
            finished.stderr
        );
        assert!(
            finished.stderr.contains(EXPORT_DELIVERED),
            "{}",
            finished.stderr
        );
        finished
    }

    fn keep_output(&self, finished: &Finished) {
        self.outputs
            .lock()
            .expect("outputs")
            .push(format!("{}\n{}", finished.stdout, finished.stderr));
    }

    async fn status(&self) -> Value {
        let object = self.fixture.object(OBJECT).await;
        serde_json::to_value(&object).expect("object as JSON")["status"].clone()
    }

    async fn watermark(&self) -> Option<String> {
        self.status().await["watermark"]
            .as_str()
            .map(str::to_string)
    }

    /// Whether this test's database has a backend whose (current or last) statement is a COPY
    /// inside an open transaction: the export's window has begun and not ended on the server.
    async fn copy_in_progress(&self, admin: &tokio_postgres::Client) -> bool {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND query LIKE 'COPY %' AND xact_start IS NOT NULL",
                &[&self.database],
            )
            .await
            .expect("pg_stat_activity");
        row.get::<_, i64>(0) > 0
    }

    /// Runs the export of `day` with the database link slowed so its COPY is provably under way,
    /// then applies `fault` to the link and waits (at most `deadline`) for the run to end; the
    /// link is clean again afterwards.
    async fn export_with_fault_mid_copy(
        &self,
        admin: &tokio_postgres::Client,
        day: u32,
        step_timeout: &str,
        fault: (&str, Toxic),
        deadline: Duration,
    ) -> Finished {
        self.postgres.add_toxic(
            "slow",
            Stream::Downstream,
            Toxic::Bandwidth { rate_kb_per_s: 100 },
        );
        let running = self.spawn_export(day, false, step_timeout);
        eventually(
            Duration::from_secs(60),
            "the export's COPY to begin",
            || {
                let began = self.copy_in_progress(admin);
                async move { began.await.then_some(()) }
            },
        )
        .await;
        let (name, toxic) = fault;
        self.postgres.add_toxic(name, Stream::Downstream, toxic);
        let failed = running.exit_within(deadline).await;
        self.keep_output(&failed);
        self.postgres.remove_toxic(name);
        self.postgres.remove_toxic("slow");
        failed
    }

    /// Waits until `file`'s temporary upload file exists and has grown between two looks: the
    /// upload is provably under way (and `file` not yet under its final name). Leftovers of
    /// earlier attempts do not grow, so they never count.
    async fn wait_for_growing_upload(&self, running: &mut Running, file: &str) -> String {
        let name = self
            .wait_for_growing_partial(Some(running), &format!(".{file}.partial-"))
            .await;
        assert!(
            !self.fixture.local_dir.join(file).exists(),
            "{file} is under its final name while its upload is still growing"
        );
        name
    }

    /// Waits until a temporary upload file whose name starts with `prefix` grows; `running`, when
    /// given, must stay alive meanwhile.
    async fn wait_for_growing_partial(
        &self,
        mut running: Option<&mut Running>,
        prefix: &str,
    ) -> String {
        let mut sizes: HashMap<String, u64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(running) = running.as_mut() {
                running.assert_alive("its upload grew");
            }
            let now: Vec<(String, u64)> = std::fs::read_dir(&self.fixture.local_dir)
                .expect("read SFTP directory")
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
                .filter_map(|entry| {
                    let size = entry.metadata().ok()?.len();
                    Some((entry.file_name().to_string_lossy().into_owned(), size))
                })
                .collect();
            for (name, size) in now {
                match sizes.insert(name.clone(), size) {
                    Some(before) if before > 0 && size > before => return name,
                    _ => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "no growing temporary file {prefix}* within 90s (seen: {sizes:?}){}",
                running
                    .as_ref()
                    .map(|r| format!("; stderr:\n{}", r.stderr()))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The API server stops answering: nothing gets through in either direction, and no
    /// connection is closed (a black hole, as a dead route or a hung load balancer makes).
    fn stall_api(&self) {
        self.api.add_toxic(
            "stall-up",
            Stream::Upstream,
            Toxic::Timeout { timeout_ms: 0 },
        );
        self.api.add_toxic(
            "stall-down",
            Stream::Downstream,
            Toxic::Timeout { timeout_ms: 0 },
        );
    }

    /// Ends the stall without delivering what it held back: a status write of a process that is
    /// gone must not land later and look like a live run's.
    fn unstall_api(&self) {
        self.api.set_enabled(false);
        self.api.remove_toxic("stall-up");
        self.api.remove_toxic("stall-down");
        self.api.set_enabled(true);
    }

    async fn cleanup(self) {
        let Bed {
            fixture,
            postgres,
            sftp,
            api,
            database,
            ..
        } = self;
        drop((postgres, sftp, api));
        fixture.cleanup().await;
        // Each test's database holds thousands of rows: drop it rather than leave it on the bed.
        admin_database()
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .expect("drop the test's database");
    }
}

// ---------------------------------------------------------------------------------------------
// Export processes.

fn collect(
    mut pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 8192];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .expect("output")
                    .push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
    })
}

/// An export process the test watches and may kill.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    label: String,
}

/// A test that fails leaves no process of its own behind.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How an export process ended, and all it printed.
#[derive(Debug)]
struct Finished {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Running {
    fn start(mut command: Command, label: String) -> Running {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start the {label}: {err}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
            label,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    fn assert_alive(&mut self, waiting_for: &str) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "the {} ended ({status}) before {waiting_for}:\n{}",
                self.label,
                self.stderr()
            );
        }
    }

    /// SIGKILL, as the kubelet does when a Pod's grace period is over or a node dies.
    fn kill(mut self) -> Finished {
        self.child.kill().expect("kill the export");
        let status = self.child.wait().expect("wait for the export");
        self.finish(status.success())
    }

    /// Collects the output of a process that has ended.
    fn finish_now(mut self) -> Finished {
        let success = self.child.wait().expect("wait").success();
        self.finish(success)
    }

    /// Waits for the process to end by itself; past `deadline` it is killed and the test fails.
    async fn exit_within(mut self, deadline: Duration) -> Finished {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.finish(status.success());
            }
            if started.elapsed() > deadline {
                let label = self.label.clone();
                let finished = self.kill();
                panic!(
                    "the {label} did not end within {deadline:?}; it printed:\n{}",
                    finished.stderr
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn finish(mut self, success: bool) -> Finished {
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        Finished {
            success,
            stdout: self.stdout.lock().expect("stdout").clone(),
            stderr: self.stderr.lock().expect("stderr").clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What an institution sees.

/// The files under final names in the object's directory, read and checked.
struct Delivered {
    /// Name order, which is slot order.
    files: Vec<(String, Vec<u8>)>,
    /// Each row as the newest file holding it shows it (what importing in name order yields).
    replay: BTreeMap<i64, Vec<String>>,
    /// Every version of every row in any file.
    versions: Vec<(i64, String, String)>,
    /// Temporary upload files left by runs that died mid-upload.
    leftovers: Vec<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn s3_options() -> S3Options {
    S3Options {
        endpoint: Some(env_var("S3_ENDPOINT")),
        region: env_var("AWS_REGION"),
        access_key_id: Some(env_var("AWS_ACCESS_KEY_ID")),
        secret_access_key: Some(env_var("AWS_SECRET_ACCESS_KEY")),
    }
}

/// Parses one delivered file strictly: the exact header, CRLF after every record, every record
/// with all its fields.
fn parse_complete_csv(name: &str, bytes: &[u8]) -> Vec<Vec<String>> {
    assert!(
        bytes.ends_with(b"\r\n"),
        "{name} ({} bytes) does not end with a complete line: a half file under a final name",
        bytes.len()
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .unwrap_or_else(|err| panic!("{name} has no header: {err}"))
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, INTERACTION_COLUMNS, "{name}: header");
    reader
        .records()
        .map(|record| {
            let record = record.unwrap_or_else(|err| panic!("{name}: broken record: {err}"));
            assert_eq!(
                record.len(),
                INTERACTION_COLUMNS.len(),
                "{name}: {record:?}"
            );
            record.iter().map(str::to_string).collect()
        })
        .collect()
}

/// Parses every file strictly and imports them in name order: each row as the newest file shows
/// it, every (row, version, file) seen, and the row count of each file.
#[allow(clippy::type_complexity)]
fn read_files(
    files: &[(String, Vec<u8>)],
) -> (
    BTreeMap<i64, Vec<String>>,
    Vec<(i64, String, String)>,
    HashMap<String, u64>,
) {
    let mut replay = BTreeMap::new();
    let mut versions = Vec::new();
    let mut rows_of = HashMap::new();
    for (name, bytes) in files {
        let records = parse_complete_csv(name, bytes);
        rows_of.insert(name.clone(), records.len() as u64);
        for record in records {
            let id: i64 = record[ID]
                .parse()
                .unwrap_or_else(|_| panic!("{name}: id {}", record[ID]));
            versions.push((id, record[SUMMARY].clone(), name.clone()));
            replay.insert(id, record);
        }
    }
    (replay, versions, rows_of)
}

/// Reads and checks everything delivered so far (`after` names the fault, for messages).
async fn check_delivered(bed: &Bed, after: &str) -> Delivered {
    let mut files = Vec::new();
    let mut leftovers = Vec::new();
    for name in fixture_files(&bed.fixture.local_dir) {
        if parse_export_file_name(FileType::Interactions, &name).is_some() {
            let bytes = std::fs::read(bed.fixture.local_dir.join(&name)).expect("read file");
            files.push((name, bytes));
        } else if name.starts_with('.') && name.contains(".partial-") {
            leftovers.push(name);
        } else {
            panic!("after {after}: unexpected file {name} in the directory");
        }
    }

    let (replay, versions, rows_of) = read_files(&files);

    // Whatever the status says about a file must be true of the file.
    let status = bed.status().await;
    let last_run = &status["lastRun"];
    if last_run["phase"] == "Succeeded"
        && let Some(name) = last_run["fileName"].as_str()
    {
        let (_, bytes) = files
            .iter()
            .find(|(file, _)| file == name)
            .unwrap_or_else(|| panic!("after {after}: lastRun names {name}, which is not there"));
        assert_eq!(
            last_run["bytes"].as_u64(),
            Some(bytes.len() as u64),
            "after {after}: lastRun.bytes of {name}"
        );
        assert_eq!(
            last_run["sha256"].as_str(),
            Some(sha256_hex(bytes).as_str()),
            "after {after}: lastRun.sha256 of {name}"
        );
        if let Some(rows) = last_run["rows"].as_u64() {
            assert_eq!(
                Some(&rows),
                rows_of.get(name),
                "after {after}: lastRun.rows"
            );
        }
    }
    let delivery = &status["delivery"];
    if let Some(name) = delivery["file"].as_str() {
        let (_, bytes) = files
            .iter()
            .find(|(file, _)| file == name)
            .unwrap_or_else(|| {
                panic!("after {after}: status.delivery names {name}, which is not there")
            });
        for (field, expected) in [
            ("bytes", json!(bytes.len())),
            ("sha256", json!(sha256_hex(bytes))),
        ] {
            if !delivery[field].is_null() {
                assert_eq!(delivery[field], expected, "after {after}: delivery.{field}");
            }
        }
    }

    // An artifact of a delivered file holds the same bytes (it is what a recopy would deliver).
    let store =
        ArtifactStore::from_url_with(&bed.fixture.artifact_store, &s3_options()).expect("store");
    let keys = store
        .list(&bed.fixture.namespace, OBJECT)
        .await
        .expect("list artifacts");
    for key in &keys {
        if let Some((name, bytes)) = files.iter().find(|(name, _)| *name == key.file_name) {
            let copy = bed.work.path().join(".artifact-check");
            store
                .get_to_file(key, &copy, &sha256_hex(bytes))
                .await
                .unwrap_or_else(|err| {
                    panic!("after {after}: the artifact of {name} differs from the file: {err}")
                });
            let _ = std::fs::remove_file(&copy);
        }
    }

    check_no_secrets(bed, &status, after).await;
    Delivered {
        files,
        replay,
        versions,
        leftovers,
    }
}

fn fixture_files(dir: &Path) -> Vec<String> {
    common::fixture::files_in(dir)
}

/// No secret of the test bed in any process output, the status, or an Event of the namespace.
async fn check_no_secrets(bed: &Bed, status: &Value, after: &str) {
    use k8s_openapi::api::core::v1::Event;
    let events: kube::Api<Event> =
        kube::Api::namespaced(bed.fixture.client.clone(), &bed.fixture.namespace);
    let events = events.list(&Default::default()).await.expect("list Events");
    let mut texts = vec![("status".to_string(), status.to_string())];
    texts.extend(events.items.into_iter().map(|event| {
        (
            format!("Event {}", event.reason.clone().unwrap_or_default()),
            format!("{:?} {:?}", event.reason, event.message),
        )
    }));
    texts.extend(
        bed.outputs
            .lock()
            .expect("outputs")
            .iter()
            .enumerate()
            .map(|(n, text)| (format!("output of export process #{n}"), text.clone())),
    );
    for secret in secret_values() {
        for (place, text) in &texts {
            assert!(
                !text.contains(&secret),
                "after {after}: a secret of the test bed is in the {place}"
            );
        }
    }
}

/// Nothing rolled back was ever delivered, and everything committed before `before` (the ledger
/// when the last successful run started) is in the files in that version or a later one.
fn check_nothing_lost(delivered: &Delivered, ledger: &Ledger, before: &Ledger, after: &str) {
    for (id, summary, file) in &delivered.versions {
        assert!(
            !ledger.rolled_back_ids.contains(id),
            "after {after}: {file} holds row {id}, which a rolled-back transaction inserted"
        );
        assert!(
            !ledger.rolled_back.contains(summary),
            "after {after}: {file} holds version {summary} of row {id}, which was rolled back"
        );
        if summary.starts_with("fw-") {
            assert!(
                ledger.committed.contains(summary),
                "after {after}: {file} holds version {summary} of row {id}, never committed"
            );
        }
    }
    for (id, expected) in before.latest() {
        let history = &ledger.history[&id];
        let Some(record) = delivered.replay.get(&id) else {
            panic!(
                "after {after}: row {id} (committed as {expected:?}) is in no delivered file; files: {:?}",
                delivered.files.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
        };
        let delivered_at = history.iter().position(|v| *v == record[SUMMARY]);
        let expected_at = history.iter().position(|v| *v == expected);
        assert!(
            delivered_at >= expected_at,
            "after {after}: row {id} was committed as {expected:?}, but the newest file holding it \
             shows {:?} (an older version)",
            record[SUMMARY]
        );
    }
}

/// The end state: writers stopped, one clean export delivered; importing every file in name
/// order gives exactly the source's rows, each in its latest committed version.
async fn check_final_state(bed: &Bed, delivered: &Delivered) {
    let client = connect_database(&bed.fixture.database_url).await;
    let source: BTreeMap<i64, String> = client
        .query(
            "SELECT interaction_id, coalesce(summary, '') FROM interactions",
            &[],
        )
        .await
        .expect("source rows")
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let ledger = bed.ledger.lock().expect("ledger").clone();
    assert_eq!(
        source,
        ledger.latest(),
        "the ledger agrees with the source (else the test's bookkeeping is wrong)"
    );
    let missing: Vec<_> = source
        .keys()
        .filter(|id| !delivered.replay.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "rows in no delivered file: {missing:?}");
    let stale: Vec<_> = source
        .iter()
        .filter(|(id, summary)| delivered.replay[id][SUMMARY] != **summary)
        .map(|(id, summary)| (id, summary, &delivered.replay[id][SUMMARY]))
        .collect();
    assert!(
        stale.is_empty(),
        "rows whose newest delivered version is not their latest (id, latest, delivered): {stale:?}"
    );
    let extra: Vec<_> = delivered
        .replay
        .keys()
        .filter(|id| !source.contains_key(id))
        .collect();
    assert!(
        extra.is_empty(),
        "delivered rows the source never had: {extra:?}"
    );
}

fn assert_no_final_file(bed: &Bed, day: u32, after: &str) {
    assert!(
        !bed.fixture.local_dir.join(file_name(day)).exists(),
        "after {after}: {} is under its final name",
        file_name(day)
    );
}

async fn assert_no_artifact(bed: &Bed, day: u32, after: &str) {
    let store =
        ArtifactStore::from_url_with(&bed.fixture.artifact_store, &s3_options()).expect("store");
    let key = ArtifactKey {
        namespace: bed.fixture.namespace.clone(),
        name: OBJECT.into(),
        file_name: file_name(day),
    };
    assert!(
        !store.exists(&key).await.expect("artifact lookup"),
        "after {after}: the failed run left the artifact of {} behind",
        file_name(day)
    );
}

async fn admin_database() -> tokio_postgres::Client {
    connect_database(&env_var("DATABASE_URL")).await
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Runs killed at every step of an export, with writers and held-open transactions around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_killed_at_any_step_loses_nothing() {
    let Some(toxiproxy) = common::toxiproxy::from_testbed() else {
        return;
    };
    let test_started = Instant::now();
    let mut bed = Bed::new("sx-faults-kill", &toxiproxy).await;
    bed.start_writers();
    let admin = admin_database().await;

    // 1. Killed before COPY ends: the database link is slow, the COPY has begun, no window yet.
    let held = Held::open(&bed, "copy").await;
    let watermark = bed.watermark().await;
    bed.postgres.add_toxic(
        "slow",
        Stream::Downstream,
        Toxic::Bandwidth { rate_kb_per_s: 100 },
    );
    let mut running = bed.spawn_export(1, false, "20s");
    eventually(
        Duration::from_secs(60),
        "the export's COPY to begin",
        || {
            let began = bed.copy_in_progress(&admin);
            let alive = running.child.try_wait().expect("try_wait").is_none();
            async move { (began.await || !alive).then_some(()) }
        },
    )
    .await;
    running.assert_alive("its COPY began");
    let killed = running.kill();
    bed.keep_output(&killed);
    assert!(
        !killed.stderr.contains(WINDOW_EXPORTED),
        "the premise: killed before the COPY ended, yet it logged its window:\n{}",
        killed.stderr
    );
    bed.postgres.remove_toxic("slow");
    assert_no_final_file(&bed, 1, "a kill mid-COPY");
    assert_eq!(
        bed.watermark().await,
        watermark,
        "a kill mid-COPY moved the watermark"
    );
    check_delivered(&bed, "a kill mid-COPY").await;
    held.end(true, &bed.ledger).await;

    // 2. Killed mid-upload: the SFTP link is slow and the temporary file is growing.
    let held = Held::open(&bed, "upload").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 150 },
    );
    let mut running = bed.spawn_export(2, false, "20s");
    bed.wait_for_growing_upload(&mut running, &file_name(2))
        .await;
    let killed = running.kill();
    bed.keep_output(&killed);
    assert!(
        !killed.stderr.contains(EXPORT_DELIVERED),
        "{}",
        killed.stderr
    );
    bed.sftp.remove_toxic("slow");
    assert_no_final_file(&bed, 2, "a kill mid-upload");
    assert_eq!(
        bed.watermark().await,
        watermark,
        "a kill mid-upload moved the watermark"
    );
    let delivered = check_delivered(&bed, "a kill mid-upload").await;
    assert!(delivered.files.is_empty(), "{:?}", delivered.leftovers);
    held.end(false, &bed.ledger).await;

    // 3. Killed after the rename, before the status write: the API server is stalled while the
    // slow upload finishes, the file appears under its final name, and the run cannot record it.
    let held = Held::open(&bed, "rename").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 300 },
    );
    let mut running = bed.spawn_export(3, true, "20s");
    bed.wait_for_growing_upload(&mut running, &file_name(3))
        .await;
    bed.stall_api();
    let final_path = bed.fixture.local_dir.join(file_name(3));
    eventually(
        Duration::from_secs(60),
        "the upload to be renamed to its final name",
        || {
            let there = final_path.exists();
            async move { there.then_some(()) }
        },
    )
    .await;
    running.assert_alive("its status write");
    let killed = running.kill();
    bed.keep_output(&killed);
    assert!(
        !killed.stderr.contains(EXPORT_DELIVERED),
        "the premise: killed before the status write, yet it recorded the run:\n{}",
        killed.stderr
    );
    bed.unstall_api();
    bed.sftp.remove_toxic("slow");
    assert_eq!(
        bed.watermark().await,
        watermark,
        "a run killed before its status write moved the watermark"
    );
    let delivered = check_delivered(&bed, "a kill after the rename").await;
    assert_eq!(
        delivered
            .files
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>(),
        [file_name(3)]
    );
    held.end(true, &bed.ledger).await;

    // 4. The Job's next Pod retries the same slot: it replaces its earlier attempt's file (whose
    // window started at the same watermark) and records the run.
    let held = Held::open(&bed, "retry").await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(3).await;
    assert_ne!(
        bed.watermark().await,
        watermark,
        "a delivered run moves the watermark"
    );
    let delivered = check_delivered(&bed, "the retry of the slot").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the retry of the slot",
    );

    // 5. A kill mid-upload of an incremental run (the next day), with a transaction open across
    // it that commits afterwards.
    let watermark = bed.watermark().await;
    bed.bulk_update("kill-incremental").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 50 },
    );
    let mut running = bed.spawn_export(4, false, "20s");
    bed.wait_for_growing_upload(&mut running, &file_name(4))
        .await;
    let killed = running.kill();
    bed.keep_output(&killed);
    bed.sftp.remove_toxic("slow");
    assert_no_final_file(&bed, 4, "a kill mid-upload of an incremental run");
    assert_eq!(bed.watermark().await, watermark);
    held.end(true, &bed.ledger).await;

    // The end: writers stop, one clean export, and the files hold the source exactly.
    bed.stop_writers().await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(5).await;
    let delivered = check_delivered(&bed, "the final clean export").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the final clean export",
    );
    check_final_state(&bed, &delivered).await;
    eprintln!(
        "killed at every step: {} files, {} leftover temporary files, {} commits, {} rollbacks, {:?}",
        delivered.files.len(),
        delivered.leftovers.len(),
        before.commits,
        before.rollbacks,
        test_started.elapsed()
    );
    bed.cleanup().await;
}

/// The links to PostgreSQL and to the SFTP server cut, reset and stalled mid-transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_cut_mid_transfer_lose_nothing() {
    let Some(toxiproxy) = common::toxiproxy::from_testbed() else {
        return;
    };
    let test_started = Instant::now();
    let mut bed = Bed::new("sx-faults-cut", &toxiproxy).await;
    bed.start_writers();
    let admin = admin_database().await;
    let watermark = bed.watermark().await;

    // 1. PostgreSQL's connection closed after 100 kB of the COPY's reply.
    let held = Held::open(&bed, "pg-close").await;
    bed.postgres.add_toxic(
        "cut",
        Stream::Downstream,
        Toxic::LimitData { bytes: 100_000 },
    );
    let failed = bed
        .spawn_export(1, false, "10s")
        .exit_within(Duration::from_secs(60))
        .await;
    bed.keep_output(&failed);
    bed.postgres.remove_toxic("cut");
    assert!(
        !failed.success,
        "the cut COPY failed the run:\n{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains(WINDOW_EXPORTED),
        "{}",
        failed.stderr
    );
    assert_failed_run(&bed, 1, &watermark, "DatabaseFailed", "a closed COPY").await;
    held.end(true, &bed.ledger).await;

    // 2. PostgreSQL's connection reset while the COPY streams through a slow link.
    let held = Held::open(&bed, "pg-reset").await;
    let failed = bed
        .export_with_fault_mid_copy(
            &admin,
            2,
            "10s",
            ("reset", Toxic::ResetPeer { timeout_ms: 0 }),
            Duration::from_secs(60),
        )
        .await;
    assert!(
        !failed.success,
        "the reset COPY failed the run:\n{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains(WINDOW_EXPORTED),
        "{}",
        failed.stderr
    );
    assert_failed_run(&bed, 2, &watermark, "DatabaseFailed", "a reset COPY").await;
    held.end(false, &bed.ledger).await;

    // 2b. PostgreSQL stops sending mid-COPY while the link stays open (a middlebox holding it):
    // TCP sees nothing wrong, so the run must end by its own stall bound (20 steps of 2 s).
    let held = Held::open(&bed, "pg-stall").await;
    let failed = bed
        .export_with_fault_mid_copy(
            &admin,
            8,
            "2s",
            ("stall", Toxic::Timeout { timeout_ms: 0 }),
            Duration::from_secs(90),
        )
        .await;
    assert!(
        !failed.success && failed.stderr.contains("the connection stalled"),
        "the stalled COPY ended the run by its stall bound:\n{}",
        failed.stderr
    );
    assert_failed_run(&bed, 8, &watermark, "DatabaseFailed", "a stalled COPY").await;
    held.end(true, &bed.ledger).await;

    // 3. The SFTP connection closed after 200 kB (the handshake, a few kB, gets through; the
    // run's one connection then carries the upload).
    let held = Held::open(&bed, "sftp-close").await;
    bed.sftp
        .add_toxic("cut", Stream::Upstream, Toxic::LimitData { bytes: 200_000 });
    let failed = bed
        .spawn_export(3, false, "10s")
        .exit_within(Duration::from_secs(60))
        .await;
    bed.keep_output(&failed);
    bed.sftp.remove_toxic("cut");
    assert!(
        !failed.success,
        "the cut upload failed the run:\n{}",
        failed.stderr
    );
    // The upload streams with the COPY: it fails while the window is still being read.
    assert!(
        failed.stderr.contains("SFTP delivery failed") && !failed.stderr.contains(WINDOW_EXPORTED),
        "{}",
        failed.stderr
    );
    assert_failed_run(&bed, 3, &watermark, "", "a closed upload").await;
    held.end(true, &bed.ledger).await;

    // 3b. The SFTP connection reset (TCP RST) while the upload streams through a slow link.
    let held = Held::open(&bed, "sftp-reset").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 300 },
    );
    let mut running = bed.spawn_export(7, false, "10s");
    bed.wait_for_growing_upload(&mut running, &file_name(7))
        .await;
    bed.sftp.add_toxic(
        "reset",
        Stream::Upstream,
        Toxic::ResetPeer { timeout_ms: 0 },
    );
    let failed = running.exit_within(Duration::from_secs(60)).await;
    bed.keep_output(&failed);
    bed.sftp.remove_toxic("reset");
    bed.sftp.remove_toxic("slow");
    assert!(
        !failed.success,
        "the reset upload failed the run:\n{}",
        failed.stderr
    );
    assert_failed_run(&bed, 7, &watermark, "", "a reset upload").await;
    held.end(false, &bed.ledger).await;

    // 4. The SFTP server stops answering mid-upload: the run ends by its own timeout.
    let held = Held::open(&bed, "sftp-stall").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 400 },
    );
    let mut running = bed.spawn_export(4, false, "5s");
    bed.wait_for_growing_upload(&mut running, &file_name(4))
        .await;
    bed.sftp
        .add_toxic("stall", Stream::Upstream, Toxic::Timeout { timeout_ms: 0 });
    let failed = running.exit_within(Duration::from_secs(60)).await;
    bed.keep_output(&failed);
    bed.sftp.remove_toxic("stall");
    bed.sftp.remove_toxic("slow");
    assert!(
        !failed.success,
        "the stalled upload failed the run:\n{}",
        failed.stderr
    );
    assert_failed_run(&bed, 4, &watermark, "", "a stalled upload").await;
    held.end(true, &bed.ledger).await;

    // 5. A clean run delivers everything committed so far.
    let held = Held::open(&bed, "open-across-clean").await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(5).await;
    let delivered = check_delivered(&bed, "the first clean export").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the first clean export",
    );
    held.end(true, &bed.ledger).await;

    bed.stop_writers().await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(6).await;
    let delivered = check_delivered(&bed, "the final clean export").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the final clean export",
    );
    check_final_state(&bed, &delivered).await;
    eprintln!(
        "links cut: {} files, {} leftover temporary files, {} commits, {} rollbacks, {:?}",
        delivered.files.len(),
        delivered.leftovers.len(),
        before.commits,
        before.rollbacks,
        test_started.elapsed()
    );
    bed.cleanup().await;
}

/// After a run that failed by itself: no file under its name, no artifact, the watermark where it
/// was, and the failure recorded (with `reason`, when given) when the API server was reachable.
async fn assert_failed_run(
    bed: &Bed,
    day: u32,
    watermark: &Option<String>,
    reason: &str,
    after: &str,
) {
    assert_no_final_file(bed, day, after);
    assert_no_artifact(bed, day, after).await;
    let status = bed.status().await;
    assert_eq!(
        status["watermark"].as_str().map(str::to_string),
        *watermark,
        "after {after}: the watermark moved on a failed run"
    );
    assert_eq!(
        status["lastRun"]["phase"], "Failed",
        "after {after}: {status}"
    );
    if !reason.is_empty() {
        let exported = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Exported")
            .cloned()
            .unwrap_or_default();
        assert_eq!(exported["reason"], reason, "after {after}: {exported}");
    }
    check_delivered(bed, after).await;
}

/// The API server unreachable when the run records its outcome: refused, then stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_unreachable_at_the_status_write_loses_nothing() {
    let Some(toxiproxy) = common::toxiproxy::from_testbed() else {
        return;
    };
    let test_started = Instant::now();
    let mut bed = Bed::new("sx-faults-api", &toxiproxy).await;
    bed.start_writers();
    let watermark = bed.watermark().await;

    // 1. The API server goes away (connections refused) while the file uploads: the run delivers
    // its file, cannot record it, and ends by itself with the watermark unmoved.
    let held = Held::open(&bed, "api-refused").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 300 },
    );
    let mut running = bed.spawn_export(1, true, "10s");
    bed.wait_for_growing_upload(&mut running, &file_name(1))
        .await;
    bed.api.set_enabled(false);
    let failed = running.exit_within(Duration::from_secs(90)).await;
    bed.keep_output(&failed);
    bed.api.set_enabled(true);
    bed.sftp.remove_toxic("slow");
    assert!(
        !failed.success,
        "a run that could not record its outcome reports failure:\n{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains(EXPORT_DELIVERED),
        "{}",
        failed.stderr
    );
    assert_eq!(
        bed.watermark().await,
        watermark,
        "the watermark moved without a status write"
    );
    check_delivered(&bed, "the API server refusing the status write").await;
    held.end(true, &bed.ledger).await;

    // 2. The Job retries the slot once the API server is back.
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(1).await;
    let delivered = check_delivered(&bed, "the retry after the API server came back").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the retry after the API server came back",
    );

    bed.stop_writers().await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(3).await;
    let delivered = check_delivered(&bed, "the final clean export").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the final clean export",
    );
    check_final_state(&bed, &delivered).await;
    eprintln!(
        "API server unreachable: {} files, {} commits, {} rollbacks, {:?}",
        delivered.files.len(),
        before.commits,
        before.rollbacks,
        test_started.elapsed()
    );
    bed.cleanup().await;
}

/// The Lease holder of this test's controllers, when there is one.
async fn lease_holder(bed: &Bed) -> Option<String> {
    let leases = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        bed.fixture.client.clone(),
        &bed.fixture.namespace,
    );
    leases
        .get_opt("scheduled-exports-controller")
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn job_names(bed: &Bed) -> Vec<String> {
    use k8s_openapi::api::batch::v1::Job;
    let mut names: Vec<String> =
        kube::Api::<Job>::namespaced(bed.fixture.client.clone(), &bed.fixture.namespace)
            .list(&Default::default())
            .await
            .expect("list Jobs")
            .items
            .into_iter()
            .filter_map(|job| job.metadata.name)
            .collect();
    names.sort();
    names
}

/// Waits until Job `job`'s Pod runs; a Pod that cannot start (image, scheduling) fails the test
/// with its state and Events, not later with a missing upload.
async fn wait_for_pod_running(bed: &Bed, job: &str) {
    use k8s_openapi::api::core::v1::Pod;
    let pods = kube::Api::<Pod>::namespaced(bed.fixture.client.clone(), &bed.fixture.namespace);
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let running = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map(|list| {
                list.items.iter().any(|pod| {
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
            })
            .unwrap_or(false);
        if running {
            return;
        }
        if Instant::now() > deadline {
            let mut events = String::new();
            if let Ok(list) = pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
            {
                for pod in list.items {
                    let name = pod.metadata.name.unwrap_or_default();
                    events.push_str(&format!(
                        "\n{name}: {}",
                        event_messages(&bed.fixture.client, &bed.fixture.namespace, &name).await
                    ));
                }
            }
            panic!(
                "the Pod of Job {job} did not run within 90s:\n{}{events}",
                job_pod_logs(&bed.fixture.client, &bed.fixture.namespace, job).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks for a run now with `token` and returns the Job the leader creates for it.
async fn run_now(bed: &Bed, token: &str, known_jobs: &[String]) -> String {
    bed.fixture
        .api()
        .patch(
            OBJECT,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({
                "metadata": {"annotations": {scheduled_exports::resource::RUN_NOW_ANNOTATION: token}}
            })),
        )
        .await
        .expect("annotate run-now");
    eventually(
        Duration::from_secs(60),
        &format!("a Job for run-now token {token}"),
        || async move {
            job_names(bed)
                .await
                .into_iter()
                .find(|name| !known_jobs.contains(name))
        },
    )
    .await
}

/// The leading operator killed (SIGKILL, no Lease release) while its export Job is mid-upload:
/// the Job finishes on its own, the other replica takes over, no run is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leading_operator_killed_while_its_job_runs_loses_nothing() {
    let Some(toxiproxy) = common::toxiproxy::from_testbed() else {
        return;
    };
    let test_started = Instant::now();
    let mut bed = Bed::new("sx-faults-leader", &toxiproxy).await;
    bed.start_writers();
    let mut replicas: HashMap<String, Running> = ["replica-a", "replica-b"]
        .into_iter()
        .map(|identity| (identity.to_string(), bed.spawn_controller(identity)))
        .collect();
    let leader = eventually(Duration::from_secs(60), "a leader", || lease_holder(&bed)).await;
    let standby = replicas
        .keys()
        .find(|identity| **identity != leader)
        .expect("two replicas")
        .clone();

    // The leader starts a run; its Pod's upload is slowed until the leader is dead.
    let held = Held::open(&bed, "leader").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 100 },
    );
    let first_job = run_now(&bed, "first", &[]).await;
    wait_for_pod_running(&bed, &first_job).await;
    bed.wait_for_growing_partial(None, ".interactions-").await;
    let killed = replicas.remove(&leader).expect("leader").kill();
    bed.keep_output(&killed);
    bed.sftp.remove_toxic("slow");
    held.end(true, &bed.ledger).await;

    eventually(
        Duration::from_secs(60),
        "the standby to take the Lease",
        || {
            let standby = standby.clone();
            let bed = &bed;
            async move { (lease_holder(bed).await? == standby).then_some(()) }
        },
    )
    .await;
    wait_for_job_complete(
        &bed.fixture.client,
        &bed.fixture.namespace,
        &first_job,
        Duration::from_secs(120),
    )
    .await;
    bed.fixture
        .wait_for(OBJECT, "the first run recorded", |object| {
            let status = object.status.as_ref()?;
            (status.last_run_now_token.as_deref() == Some("first")
                && status.last_run.as_ref()?.phase.map(|p| p.as_str()) == Some("Succeeded"))
            .then_some(())
        })
        .await;
    assert_eq!(
        job_names(&bed).await,
        std::slice::from_ref(&first_job),
        "the new leader did not run the slot again"
    );
    check_delivered(&bed, "the leader killed mid-run").await;

    // The new leader runs the next request; with the writers stopped first, it is the last run.
    bed.stop_writers().await;
    let before = bed.ledger.lock().expect("ledger").clone();
    let second_job = run_now(&bed, "second", std::slice::from_ref(&first_job)).await;
    wait_for_job_complete(
        &bed.fixture.client,
        &bed.fixture.namespace,
        &second_job,
        Duration::from_secs(120),
    )
    .await;
    bed.fixture
        .wait_for(OBJECT, "the second run recorded", |object| {
            let status = object.status.as_ref()?;
            (status.last_run_now_token.as_deref() == Some("second")
                && status.last_run.as_ref()?.phase.map(|p| p.as_str()) == Some("Succeeded"))
            .then_some(())
        })
        .await;
    let standby_output = replicas.remove(&standby).expect("standby").kill();
    bed.keep_output(&standby_output);
    let delivered = check_delivered(&bed, "the new leader's run").await;
    assert_eq!(delivered.files.len(), 2, "one file per run");
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the new leader's run",
    );
    check_final_state(&bed, &delivered).await;
    eprintln!(
        "leader killed: {} commits, {} rollbacks, {:?}",
        before.commits,
        before.rollbacks,
        test_started.elapsed()
    );
    bed.cleanup().await;
}

/// The API server stalls (a black hole: no reply, no reset) when a run records its outcome. The run
/// has delivered its file; it must still end by itself, in a bounded time, without moving the
/// watermark, so the Job fails and is retried instead of hanging until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_api_server_at_the_status_write_does_not_hang_the_run() {
    let Some(toxiproxy) = common::toxiproxy::from_testbed() else {
        return;
    };
    let test_started = Instant::now();
    let mut bed = Bed::new("sx-faults-stall", &toxiproxy).await;
    bed.start_writers();
    let watermark = bed.watermark().await;

    let held = Held::open(&bed, "api-stalled").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 300 },
    );
    let mut running = bed.spawn_export(1, true, "10s");
    bed.wait_for_growing_upload(&mut running, &file_name(1))
        .await;
    bed.stall_api();
    bed.sftp.remove_toxic("slow");
    let final_path = bed.fixture.local_dir.join(file_name(1));
    eventually(
        Duration::from_secs(60),
        "the upload to be renamed to its final name",
        || {
            let there = final_path.exists();
            async move { there.then_some(()) }
        },
    )
    .await;
    // Each network step of the run is bounded by --timeout (10 s); the status write and the
    // failure record after it are two more steps. A minute is three times what they may take.
    let bound = Duration::from_secs(60);
    let started = Instant::now();
    let (ended, took) = loop {
        if running.child.try_wait().expect("try_wait").is_some() {
            break (running.finish_now(), started.elapsed());
        }
        if started.elapsed() > bound {
            let hung = running.kill();
            bed.unstall_api();
            held.end(false, &bed.ledger).await;
            bed.stop_writers().await;
            bed.cleanup().await;
            panic!(
                "the export hung at its status write: with the API server stalled, the run \
                 (--timeout 10s) had not ended {bound:?} after it delivered its file, so a Job \
                 waits for its activeDeadlineSeconds instead of failing and being retried. \
                 It printed:\n{}",
                hung.stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bed.keep_output(&ended);
    bed.unstall_api();
    assert!(!ended.success, "{}", ended.stderr);
    assert!(!ended.stderr.contains(EXPORT_DELIVERED), "{}", ended.stderr);
    assert_eq!(
        bed.watermark().await,
        watermark,
        "the watermark moved without a status write"
    );
    check_delivered(&bed, "the API server stalling the status write").await;
    held.end(false, &bed.ledger).await;

    // The Job's retry of the slot once the API server answers again.
    bed.stop_writers().await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(1).await;
    let delivered = check_delivered(&bed, "the retry after the stall").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the retry after the stall",
    );
    check_final_state(&bed, &delivered).await;
    eprintln!(
        "API server stalled: the run ended {took:?} after the stall began; {:?} in all",
        test_started.elapsed()
    );
    bed.cleanup().await;
}

/// The checks themselves (no test bed): each catches what it is there to catch, so a suite that
/// passes is not passing because a check cannot fail.
#[test]
fn the_checks_catch_a_half_file_a_lost_row_and_a_rolled_back_version() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let fails = |check: &dyn Fn()| catch_unwind(AssertUnwindSafe(check)).is_err();
    let header = INTERACTION_COLUMNS.join(",");
    let row = |id: i64, summary: &str| format!("{id},,7,,,,,{summary},,,,,,,,false\r\n");
    let file = |rows: &[(i64, &str)]| {
        let body: String = rows.iter().map(|(id, summary)| row(*id, summary)).collect();
        format!("{header}\r\n{body}").into_bytes()
    };

    let whole = file(&[(1, "a"), (2, "fw-t-2")]);
    assert_eq!(parse_complete_csv("whole", &whole).len(), 2);
    assert!(fails(&|| {
        parse_complete_csv("cut mid-line", &whole[..whole.len() - 5]);
    }));
    assert!(fails(&|| {
        parse_complete_csv("cut after the header", &whole[..header.len() + 1]);
    }));
    let mut short_record = whole.clone();
    short_record.extend_from_slice(b"3,,7\r\n");
    assert!(fails(&|| {
        parse_complete_csv("short record", &short_record);
    }));

    let mut ledger = Ledger::default();
    ledger.history.insert(1, vec!["a".into()]);
    ledger.history.insert(2, vec!["b".into()]);
    ledger.record(&[(2, "fw-t-2".into())], &[], true);
    let before = ledger.clone();
    ledger.record(&[(2, "fw-t-3".into()), (4, "fw-t-4".into())], &[4], false);
    let delivered = |files: Vec<(String, Vec<u8>)>| {
        let (replay, versions, _) = read_files(&files);
        Delivered {
            files,
            replay,
            versions,
            leftovers: Vec::new(),
        }
    };
    let named = |name: &str, bytes: Vec<u8>| (name.to_string(), bytes);

    let complete = delivered(vec![named("f1", whole.clone())]);
    check_nothing_lost(&complete, &ledger, &before, "a complete delivery");
    let lost = delivered(vec![named("f1", file(&[(1, "a")]))]);
    assert!(fails(&|| check_nothing_lost(
        &lost,
        &ledger,
        &before,
        "a lost row"
    )));
    let older_last = delivered(vec![
        named("f1", whole.clone()),
        named("f2", file(&[(2, "b")])),
    ]);
    assert!(fails(&|| check_nothing_lost(
        &older_last,
        &ledger,
        &before,
        "an older version last"
    )));
    let rolled_back = delivered(vec![named("f1", file(&[(1, "a"), (2, "fw-t-3")]))]);
    assert!(fails(&|| check_nothing_lost(
        &rolled_back,
        &ledger,
        &before,
        "a rolled-back version"
    )));
    let rolled_back_row = delivered(vec![named(
        "f1",
        file(&[(1, "a"), (2, "fw-t-2"), (4, "x")]),
    )]);
    assert!(fails(&|| check_nothing_lost(
        &rolled_back_row,
        &ledger,
        &before,
        "a rolled-back row"
    )));
}

/// A slow but alive SFTP link (40 KB/s, so the full first file takes about 20 s to upload, with a
/// 5 s bound on each network step) delivers: progress, not the length of one write call, is what
/// a per-step timeout may bound. Then nothing is lost across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_alive_link_delivers() {
    let Some(toxiproxy) = common::toxiproxy::from_testbed() else {
        return;
    };
    let test_started = Instant::now();
    let mut bed = Bed::new("sx-faults-slow", &toxiproxy).await;
    bed.start_writers();
    let held = Held::open(&bed, "slow-link").await;
    bed.sftp.add_toxic(
        "slow",
        Stream::Upstream,
        Toxic::Bandwidth { rate_kb_per_s: 40 },
    );
    let finished = bed
        .spawn_export(1, false, "5s")
        .exit_within(Duration::from_secs(90))
        .await;
    bed.keep_output(&finished);
    bed.sftp.remove_toxic("slow");
    held.end(true, &bed.ledger).await;
    assert!(
        finished.success,
        "a 40 KB/s link failed the first file's upload under a 5s per-step bound:\n{}",
        finished.stderr
    );
    check_delivered(&bed, "a slow link").await;

    bed.stop_writers().await;
    let before = bed.ledger.lock().expect("ledger").clone();
    bed.export_ok(2).await;
    let delivered = check_delivered(&bed, "the final clean export").await;
    check_nothing_lost(
        &delivered,
        &bed.ledger.lock().expect("ledger"),
        &before,
        "the final clean export",
    );
    check_final_state(&bed, &delivered).await;
    eprintln!("slow link: {:?}", test_started.elapsed());
    bed.cleanup().await;
}
