//! The artifact store against real stores: a `file://` directory, and the test bed's S3 server
//! (MinIO), whose settings `tests/testbed/up` writes to `target/testbed/env`.
//!
//! Every test works under its own random prefix (a fresh directory, or a fresh key prefix in the
//! shared bucket), so the tests run in parallel and never see each other's objects.

mod common;

use common::random_suffix;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scheduled_exports::adapters::artifacts::{
    ArtifactError, ArtifactKey, ArtifactStore, S3Options, StoredArtifact,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const SECRET_PLACEHOLDER: &str = "do-not-print-this-secret-4f1c";

/// Deterministic, incompressible-looking content (xorshift), different per seed.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A store plus whatever keeps it alive (the temporary directory for `file://`).
struct TestStore {
    store: ArtifactStore,
    _dir: Option<TempDir>,
    root: Option<PathBuf>,
}

fn file_store() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = ArtifactStore::from_url(&format!("file://{}", root.display()))
        .expect("open the file store");
    TestStore {
        store,
        _dir: Some(dir),
        root: Some(root),
    }
}

fn testbed_s3_options() -> S3Options {
    S3Options {
        endpoint: Some(common::env_var("S3_ENDPOINT")),
        region: common::testbed_env()
            .get("AWS_REGION")
            .cloned()
            .unwrap_or_else(|| "us-east-1".to_string()),
        access_key_id: Some(common::env_var("AWS_ACCESS_KEY_ID")),
        secret_access_key: Some(common::env_var("AWS_SECRET_ACCESS_KEY")),
    }
}

fn s3_store() -> TestStore {
    let url = format!(
        "s3://{}/artifact-tests/{}",
        common::env_var("S3_BUCKET"),
        random_suffix()
    );
    let store = ArtifactStore::from_url_with(&url, &testbed_s3_options()).expect("open S3 store");
    TestStore {
        store,
        _dir: None,
        root: None,
    }
}

fn key(namespace: &str, name: &str, file_name: &str) -> ArtifactKey {
    ArtifactKey::new(namespace, name, file_name)
}

fn write_source(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write the source file");
    path
}

/// Files under `root` whose names look like `object_store`'s staging files or our partial
/// downloads: none may remain after an operation returns.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains('#') || name.ends_with(".partial") {
                    found.push(path);
                }
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Scenarios shared by both stores.

async fn put_then_get_returns_identical_bytes(t: TestStore, len: usize) {
    let work = tempfile::tempdir().expect("tempdir");
    let data = content(len, len as u64);
    let source = write_source(work.path(), "source.csv", &data);
    let k = key("ns-1", "daily", "interactions-20250102T120000Z.csv");

    let stored = t.store.put_file(&k, &source).await.expect("put_file");
    assert_eq!(
        stored,
        StoredArtifact {
            sha256: sha256_hex(&data),
            bytes: len as u64
        }
    );
    assert!(t.store.exists(&k).await.expect("exists"));

    let target = work.path().join("fetched.csv");
    let fetched = t
        .store
        .get_to_file(&k, &target, &stored.sha256.to_uppercase())
        .await
        .expect("get_to_file");
    assert_eq!(fetched, stored);
    let back = std::fs::read(&target).expect("read the fetched file");
    assert!(back == data, "fetched bytes differ from the stored bytes");
    assert!(leftovers(work.path()).is_empty());
    if let Some(root) = &t.root {
        assert_eq!(leftovers(root), Vec::<PathBuf>::new(), "staging files left");
    }
}

async fn wrong_checksum_fails_and_leaves_no_file(t: TestStore) {
    let work = tempfile::tempdir().expect("tempdir");
    let data = content(300_000, 7);
    let source = write_source(work.path(), "source.csv", &data);
    let k = key("ns-1", "daily", "interactions-20250103T120000Z.csv");
    t.store.put_file(&k, &source).await.expect("put_file");

    let target = work.path().join("out").join("fetched.csv");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    // A stale file at the destination must not survive a failed download either.
    std::fs::write(&target, b"stale").expect("write stale file");
    let wrong = "0".repeat(64);
    let err = t
        .store
        .get_to_file(&k, &target, &wrong)
        .await
        .expect_err("a wrong checksum must fail");
    assert!(
        matches!(err, ArtifactError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&sha256_hex(&data)), "{message}");
    assert!(message.contains(&k.to_string()), "{message}");
    assert!(!target.exists(), "the local file must be removed");
    let remaining: Vec<_> = std::fs::read_dir(target.parent().expect("parent"))
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

async fn delete_then_absent(t: TestStore) {
    let work = tempfile::tempdir().expect("tempdir");
    let source = write_source(work.path(), "source.csv", b"id,name\n1,a\n");
    let k = key("ns-1", "daily", "interactions-20250104T120000Z.csv");
    t.store.put_file(&k, &source).await.expect("put_file");
    assert!(t.store.exists(&k).await.expect("exists"));

    t.store.delete(&k).await.expect("delete");
    assert!(!t.store.exists(&k).await.expect("exists after delete"));
    t.store
        .delete(&k)
        .await
        .expect("deleting an absent key is fine");
    t.store
        .delete(&key("ns-1", "never", "stored.csv"))
        .await
        .expect("deleting a never-stored key is fine");
}

async fn list_returns_exactly_one_objects_keys(t: TestStore) {
    let work = tempfile::tempdir().expect("tempdir");
    let source = write_source(work.path(), "source.csv", b"x\n");
    let wanted = [
        key("ns-1", "a", "interactions-20250101T070000Z.csv"),
        key("ns-1", "a", "interactions-20250102T070000Z.csv"),
    ];
    let others = [
        key("ns-1", "ab", "interactions-20250101T070000Z.csv"),
        key("ns-1", "b", "interactions-20250101T070000Z.csv"),
        key("ns-12", "a", "interactions-20250101T070000Z.csv"),
        key("ns", "a", "interactions-20250101T070000Z.csv"),
    ];
    for k in wanted.iter().chain(others.iter()) {
        t.store.put_file(k, &source).await.expect("put_file");
    }
    let listed = t.store.list("ns-1", "a").await.expect("list");
    assert_eq!(listed, wanted.to_vec());
    assert_eq!(
        t.store.list("ns-1", "ab").await.expect("list ab"),
        vec![others[0].clone()]
    );
    assert!(
        t.store
            .list("ns-1", "nothing")
            .await
            .expect("list of an object without artifacts")
            .is_empty()
    );
}

async fn missing_object_is_named(t: TestStore) {
    let work = tempfile::tempdir().expect("tempdir");
    let k = key("ns-1", "daily", "never-stored.csv");
    let target = work.path().join("fetched.csv");
    let err = t
        .store
        .get_to_file(&k, &target, &"0".repeat(64))
        .await
        .expect_err("missing object");
    assert!(
        matches!(err, ArtifactError::ObjectMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&k.to_string()), "{err}");
    assert!(!target.exists());
    assert!(!t.store.exists(&k).await.expect("exists"));
    t.store.check().await.expect("check");
}

// ---------------------------------------------------------------------------------------------
// file://

#[tokio::test]
async fn file_put_then_get_returns_identical_bytes() {
    put_then_get_returns_identical_bytes(file_store(), 1_000_003).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_large_file_goes_through_multipart() {
    put_then_get_returns_identical_bytes(file_store(), 40 * 1024 * 1024 + 17).await;
}

#[tokio::test]
async fn file_empty_file_round_trips() {
    put_then_get_returns_identical_bytes(file_store(), 0).await;
}

#[tokio::test]
async fn file_wrong_checksum_fails_and_leaves_no_file() {
    wrong_checksum_fails_and_leaves_no_file(file_store()).await;
}

#[tokio::test]
async fn file_delete_then_absent() {
    delete_then_absent(file_store()).await;
}

#[tokio::test]
async fn file_list_returns_exactly_one_objects_keys() {
    list_returns_exactly_one_objects_keys(file_store()).await;
}

#[tokio::test]
async fn file_missing_object_is_named() {
    missing_object_is_named(file_store()).await;
}

#[tokio::test]
async fn file_store_creates_its_directory_and_describes_itself() {
    let t = file_store();
    let root = t.root.clone().expect("root");
    assert!(root.is_dir());
    t.store.check().await.expect("check");
    assert_eq!(t.store.to_string(), format!("file://{}", root.display()));
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    let t = file_store();
    let work = tempfile::tempdir().expect("tempdir");
    let source = write_source(work.path(), "source.csv", b"x\n");
    for bad in [
        key("ns", "a", "../escape.csv"),
        key("ns", "a", "sub/dir.csv"),
        key("ns", "", "f.csv"),
        key("ns", "a", ".."),
        key("ns", "a", "f.csv#1"),
    ] {
        let err = t
            .store
            .put_file(&bad, &source)
            .await
            .expect_err("invalid key");
        assert!(matches!(err, ArtifactError::InvalidKey { .. }), "{err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// URLs and configuration (no store needed)

#[test]
fn unsupported_urls_are_refused_with_the_accepted_forms() {
    let options = S3Options::default();
    for url in [
        "ftp://x",
        "file://relative/path",
        "file:relative/path",
        "s3://",
        "s3://user:pw@bucket/prefix",
        "/var/lib/artifacts",
    ] {
        let err = ArtifactStore::from_url_with(url, &options).expect_err(url);
        assert!(
            matches!(err, ArtifactError::UnsupportedUrl { .. }),
            "{url}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("file:///") && message.contains("s3://bucket"),
            "{url}: {message}"
        );
        assert!(!message.contains(":pw@"), "{message}");
    }
    let message = ArtifactStore::from_url("ftp://x")
        .expect_err("ftp")
        .to_string();
    assert!(message.contains("ftp"), "{message}");
}

#[test]
fn bad_endpoints_are_refused() {
    let options = S3Options {
        endpoint: Some("minio:9000".to_string()),
        ..S3Options::default()
    };
    let err = ArtifactStore::from_url_with("s3://bucket", &options).expect_err("no scheme");
    assert!(matches!(err, ArtifactError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("http://"), "{err}");
}

#[test]
fn s3_options_debug_redacts_the_secret() {
    let options = S3Options {
        endpoint: Some("http://127.0.0.1:9".to_string()),
        region: "us-east-1".to_string(),
        access_key_id: Some("AKIDEXAMPLE".to_string()),
        secret_access_key: Some(SECRET_PLACEHOLDER.to_string()),
    };
    let debug = format!("{options:?}");
    assert!(!debug.contains(SECRET_PLACEHOLDER), "{debug}");
    assert!(debug.contains("AKIDEXAMPLE"), "{debug}");
    let store = ArtifactStore::from_url_with("s3://bucket/prefix", &options).expect("store");
    let shown = format!("{store} {store:?}");
    assert!(!shown.contains(SECRET_PLACEHOLDER), "{shown}");
    assert!(shown.contains("s3://bucket/prefix"), "{shown}");
}

#[tokio::test]
async fn unreachable_endpoint_fails_quickly_and_names_it() {
    // A loopback port that was just free: connecting is refused at once.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = S3Options {
        endpoint: Some(endpoint.clone()),
        region: "us-east-1".to_string(),
        access_key_id: Some("AKIDEXAMPLE".to_string()),
        secret_access_key: Some(SECRET_PLACEHOLDER.to_string()),
    };
    let store = ArtifactStore::from_url_with("s3://exports/artifacts", &options).expect("store");

    let started = Instant::now();
    let err = store.check().await.expect_err("nothing listens there");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?} to fail"
    );
    assert!(matches!(err, ArtifactError::Unreachable { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(!shown.contains(SECRET_PLACEHOLDER), "{shown}");

    let work = tempfile::tempdir().expect("tempdir");
    let source = write_source(work.path(), "source.csv", b"x\n");
    let err = store
        .put_file(&key("ns", "a", "f.csv"), &source)
        .await
        .expect_err("put to an unreachable store");
    assert!(matches!(err, ArtifactError::Unreachable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET_PLACEHOLDER));
}

// ---------------------------------------------------------------------------------------------
// S3 (the test bed's MinIO)

#[tokio::test]
async fn s3_put_then_get_returns_identical_bytes() {
    put_then_get_returns_identical_bytes(s3_store(), 1_000_003).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_large_file_goes_through_multipart() {
    put_then_get_returns_identical_bytes(s3_store(), 40 * 1024 * 1024 + 17).await;
}

#[tokio::test]
async fn s3_empty_file_round_trips() {
    put_then_get_returns_identical_bytes(s3_store(), 0).await;
}

#[tokio::test]
async fn s3_wrong_checksum_fails_and_leaves_no_file() {
    wrong_checksum_fails_and_leaves_no_file(s3_store()).await;
}

#[tokio::test]
async fn s3_delete_then_absent() {
    delete_then_absent(s3_store()).await;
}

#[tokio::test]
async fn s3_list_returns_exactly_one_objects_keys() {
    list_returns_exactly_one_objects_keys(s3_store()).await;
}

#[tokio::test]
async fn s3_missing_object_is_named() {
    missing_object_is_named(s3_store()).await;
}

#[tokio::test]
async fn s3_missing_bucket_is_named() {
    let bucket = format!("no-such-bucket-{}", random_suffix());
    let store = ArtifactStore::from_url_with(&format!("s3://{bucket}/p"), &testbed_s3_options())
        .expect("store");
    let k = key("ns", "a", "f.csv");

    let err = store.check().await.expect_err("check of a missing bucket");
    assert!(
        matches!(err, ArtifactError::BucketMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&bucket), "{err}");

    let err = store
        .exists(&k)
        .await
        .expect_err("exists in a missing bucket");
    assert!(
        matches!(err, ArtifactError::BucketMissing { .. }),
        "{err:?}"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let source = write_source(work.path(), "source.csv", b"x\n");
    let err = store
        .put_file(&k, &source)
        .await
        .expect_err("put to a missing bucket");
    assert!(
        matches!(err, ArtifactError::BucketMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&bucket), "{err}");

    let err = store
        .get_to_file(&k, &work.path().join("out.csv"), &"0".repeat(64))
        .await
        .expect_err("get from a missing bucket");
    assert!(
        matches!(err, ArtifactError::BucketMissing { .. }),
        "{err:?}"
    );

    let err = store
        .delete(&k)
        .await
        .expect_err("delete in a missing bucket");
    assert!(
        matches!(err, ArtifactError::BucketMissing { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn s3_wrong_secret_is_access_denied_without_the_secret() {
    let options = S3Options {
        secret_access_key: Some(SECRET_PLACEHOLDER.to_string()),
        ..testbed_s3_options()
    };
    let url = format!(
        "s3://{}/p-{}",
        common::env_var("S3_BUCKET"),
        random_suffix()
    );
    let store = ArtifactStore::from_url_with(&url, &options).expect("store");
    let err = store.check().await.expect_err("bad credentials");
    assert!(matches!(err, ArtifactError::AccessDenied { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET_PLACEHOLDER), "{shown}");
    let real_secret = common::env_var("AWS_SECRET_ACCESS_KEY");
    assert!(!shown.contains(&real_secret), "{shown}");
}

#[tokio::test]
async fn s3_check_succeeds_on_the_test_bed() {
    let t = s3_store();
    t.store.check().await.expect("check");
    let shown = t.store.to_string();
    assert!(shown.contains(&common::env_var("S3_ENDPOINT")), "{shown}");
}

/// A recopy's read: the artifact streams to blocking code without a local file, and its end is
/// reported only when the bytes hashed to what was delivered.
async fn streamed_reads_verify_at_the_end(t: TestStore) {
    let data = content(3 * 1024 * 1024 + 17, 11);
    let source_dir = tempfile::tempdir().expect("tempdir");
    let source = write_source(source_dir.path(), "stream.csv", &data);
    let k = key("ns", &format!("stream-{}", random_suffix()), "stream.csv");
    t.store.put_file(&k, &source).await.expect("put");
    assert_eq!(
        t.store.digest(&k).await.expect("digest"),
        Some(StoredArtifact {
            sha256: sha256_hex(&data),
            bytes: data.len() as u64
        })
    );
    let absent = key("ns", &format!("absent-{}", random_suffix()), "stream.csv");
    assert_eq!(t.store.digest(&absent).await.expect("digest"), None);

    let handle = tokio::runtime::Handle::current();
    let reader = t
        .store
        .open_verified(&k, &sha256_hex(&data), handle.clone())
        .await
        .expect("open");
    assert_eq!(reader.size(), data.len() as u64);
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).map(|_| out)
    })
    .await
    .expect("join")
    .expect("read");
    assert!(read == data, "the same bytes");

    let reader = t
        .store
        .open_verified(&k, &sha256_hex(b"other"), handle)
        .await
        .expect("open");
    let err = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut sink)
    })
    .await
    .expect("join")
    .expect_err("the end of wrong content is an error");
    assert!(
        err.to_string().contains("checksum") || err.to_string().contains("sha256"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_streamed_reads_verify_at_the_end() {
    streamed_reads_verify_at_the_end(file_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_streamed_reads_verify_at_the_end() {
    streamed_reads_verify_at_the_end(s3_store()).await;
}

/// A TCP forwarder to the test bed's S3 server that cuts every connection once it has passed
/// `limit` bytes from the server: a store whose responses break off mid-body.
fn cutting_forwarder(limit: usize) -> String {
    use std::io::{Read, Write};
    let upstream = common::env_var("S3_ENDPOINT")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            let (Ok(mut from_client), Ok(mut to_server)) =
                (inbound.try_clone(), outbound.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
            });
            let (mut from_server, mut to_client) = (outbound, inbound);
            std::thread::spawn(move || {
                let mut passed = 0;
                let mut buffer = vec![0_u8; 16 * 1024];
                while passed < limit {
                    let n = match from_server.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n.min(limit - passed),
                    };
                    if to_client.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    passed += n;
                }
                // Mid-response: both directions end here.
                let _ = to_client.shutdown(std::net::Shutdown::Both);
                let _ = from_server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_read_that_is_cut_resumes_where_it_stopped() {
    let data = content(3 * 1024 * 1024, 23);
    let url = format!(
        "s3://{}/artifact-tests/{}",
        common::env_var("S3_BUCKET"),
        random_suffix()
    );
    let direct = ArtifactStore::from_url_with(&url, &testbed_s3_options()).expect("open");
    let source_dir = tempfile::tempdir().expect("tempdir");
    let source = write_source(source_dir.path(), "cut.csv", &data);
    let k = key("ns", &format!("cut-{}", random_suffix()), "cut.csv");
    direct.put_file(&k, &source).await.expect("put");

    // The same bucket and prefix through a link that breaks every response after 700 kB.
    let through = ArtifactStore::from_url_with(
        &url,
        &S3Options {
            endpoint: Some(cutting_forwarder(700 * 1024)),
            ..testbed_s3_options()
        },
    )
    .expect("open through the forwarder");
    let reader = through
        .open_verified(&k, &sha256_hex(&data), tokio::runtime::Handle::current())
        .await
        .expect("open");
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).map(|_| out)
    })
    .await
    .expect("join")
    .expect("every piece arrives, and the whole is verified");
    assert!(read == data, "the same bytes, in order");
}
