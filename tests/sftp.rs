//! The SFTP client against the test bed's real OpenSSH sshd (internal-sftp, chrooted to SFTP_ROOT).
//!
//! Each test works in its own directory under `SFTP_ROOT/exports/`, created locally and owned by the SFTP user, so
//! the tests run in parallel and can check results through the local file system.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use scheduled_exports::adapters::sftp::{
    SftpAuth, SftpCredentials, SftpError, SftpSession, SftpTarget,
};

const TIMEOUT: Duration = Duration::from_secs(20);
const FILE_NAME: &str = "interactions-20250102T120000Z.csv";

/// A directory of one test under `SFTP_ROOT/exports/`, removed when the test ends.
struct TestDir {
    local: PathBuf,
    remote: String,
}

impl TestDir {
    fn new(prefix: &str) -> TestDir {
        let exports = PathBuf::from(common::env_var("SFTP_ROOT")).join("exports");
        let owner = std::fs::metadata(&exports).expect("SFTP_ROOT/exports exists");
        let name = format!("{prefix}-{:016x}", unique());
        let local = exports.join(&name);
        std::fs::create_dir(&local).expect("create test directory");
        std::os::unix::fs::chown(&local, Some(owner.uid()), Some(owner.gid()))
            .expect("chown test directory");
        TestDir {
            local,
            remote: format!("/exports/{name}"),
        }
    }

    /// Creates a sub-directory (owned by the SFTP user) and returns its local path.
    fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.local.join(relative);
        std::fs::create_dir_all(&path).expect("create sub-directory");
        let owner = std::fs::metadata(&self.local).expect("test dir");
        let mut current = path.clone();
        while current != self.local {
            std::os::unix::fs::chown(&current, Some(owner.uid()), Some(owner.gid()))
                .expect("chown");
            current = current.parent().expect("parent").to_path_buf();
        }
        path
    }

    /// Names of the entries directly in the directory, sorted.
    fn entries(&self) -> Vec<String> {
        common::fixture::files_in(&self.local)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.local, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

fn unique() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos(),
    );
    hasher.finish()
}

fn target(directory: &str) -> SftpTarget {
    SftpTarget {
        host: common::env_var("SFTP_HOST"),
        port: common::env_var("SFTP_PORT")
            .parse()
            .expect("SFTP_PORT is a port"),
        username: common::env_var("SFTP_USER"),
        directory: directory.to_string(),
    }
}

fn known_hosts() -> String {
    std::fs::read_to_string(common::env_var("SFTP_KNOWN_HOSTS_FILE")).expect("read known_hosts")
}

fn key_credentials() -> SftpCredentials {
    SftpCredentials {
        auth: SftpAuth::PrivateKey {
            key_pem: std::fs::read_to_string(common::env_var("SFTP_PRIVATE_KEY_FILE"))
                .expect("read key"),
            passphrase: None,
        },
        known_hosts: known_hosts(),
    }
}

fn password_credentials(password: &str) -> SftpCredentials {
    SftpCredentials {
        auth: SftpAuth::Password(password.to_string()),
        known_hosts: known_hosts(),
    }
}

fn connect(dir: &TestDir) -> SftpSession {
    SftpSession::connect(&target(&dir.remote), &key_credentials(), TIMEOUT)
        .expect("connect with the test key")
}

/// A local file with recognisable content of `len` bytes.
fn local_file(len: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    file.write_all(&bytes).expect("write temp file");
    file.flush().expect("flush");
    file
}

/// Generates a key pair with ssh-keygen; `extra` adds e.g. `-m PEM`.
fn generate_key(
    dir: &Path,
    name: &str,
    key_type: &str,
    passphrase: &str,
    extra: &[&str],
) -> String {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            key_type,
            "-N",
            passphrase,
            "-C",
            "sftp-test",
            "-f",
        ])
        .arg(&path)
        .args(extra)
        .status()
        .expect("run ssh-keygen");
    assert!(
        status.success(),
        "ssh-keygen -t {key_type} {extra:?} failed"
    );
    std::fs::read_to_string(&path).expect("read generated key")
}

fn assert_nothing_under(dir: &TestDir) {
    assert_eq!(
        dir.entries(),
        Vec::<String>::new(),
        "the directory must stay empty"
    );
}

#[test]
fn upload_with_key_delivers_the_exact_bytes_and_leaves_no_temporary_file() {
    let dir = TestDir::new("upload-key");
    let local = local_file(3 * 1024 * 1024 + 17); // several chunks and a partial one
    let session = connect(&dir);

    let bytes = session.upload(local.path(), FILE_NAME).expect("upload");

    assert_eq!(bytes, 3 * 1024 * 1024 + 17);
    assert_eq!(
        std::fs::read(dir.local.join(FILE_NAME)).expect("delivered file"),
        std::fs::read(local.path()).expect("local file")
    );
    assert_eq!(
        dir.entries(),
        vec![FILE_NAME.to_string()],
        "no temporary file may remain"
    );
}

#[test]
fn a_streamed_upload_stays_hidden_until_published_and_an_abandoned_one_leaves_nothing() {
    let dir = TestDir::new("upload-stream");
    let session = connect(&dir);
    // Writes of uneven sizes, as the export's pieces and a slow source produce them; the sliding
    // window hands libssh2 overlapping buffers, so any slip would show in the bytes.
    let bytes: Vec<u8> = (0..5_000_003_usize)
        .map(|i| (i * 31 + i / 997) as u8)
        .collect();
    let mut upload = session.begin_upload(FILE_NAME).expect("begin");
    let mut offset = 0;
    for size in [1, 4_095, 30_000, 262_144, 7, 1_048_576].iter().cycle() {
        let end = (offset + size).min(bytes.len());
        upload.write(&bytes[offset..end]).expect("write");
        offset = end;
        if offset == bytes.len() {
            break;
        }
    }
    let staged = upload.finish().expect("finish");
    assert_eq!(staged.size, bytes.len() as u64);
    assert!(
        !dir.local.join(FILE_NAME).exists(),
        "nothing under the final name before publish: {:?}",
        dir.entries()
    );
    session.publish(&staged).expect("publish");
    assert_eq!(
        std::fs::read(dir.local.join(FILE_NAME)).expect("file"),
        bytes
    );
    assert_eq!(dir.entries(), vec![FILE_NAME.to_string()]);

    // Given up half-way (the export failed upstream): the temporary file goes with it.
    let other = "proposals-20250102T120000Z.csv";
    let mut upload = session.begin_upload(other).expect("begin");
    upload.write(&bytes[..300_000]).expect("write");
    assert_eq!(
        dir.entries().len(),
        2,
        "the temporary file exists while it is written"
    );
    drop(upload);
    assert_eq!(dir.entries(), vec![FILE_NAME.to_string()]);

    // Staged but not to be published (another's file was found under the name): discarded.
    let mut upload = session.begin_upload(other).expect("begin");
    upload.write(b"a,b\n").expect("write");
    let staged = upload.finish().expect("finish");
    session.discard(&staged);
    assert_eq!(dir.entries(), vec![FILE_NAME.to_string()]);
}

#[test]
fn upload_of_an_empty_file_works() {
    let dir = TestDir::new("upload-empty");
    let local = local_file(0);
    let session = connect(&dir);
    assert_eq!(session.upload(local.path(), FILE_NAME).expect("upload"), 0);
    assert_eq!(
        std::fs::read(dir.local.join(FILE_NAME))
            .expect("file")
            .len(),
        0
    );
}

#[test]
fn upload_with_password() {
    let dir = TestDir::new("upload-password");
    let local = local_file(1000);
    let session = SftpSession::connect(
        &target(&dir.remote),
        &password_credentials(&common::env_var("SFTP_PASSWORD")),
        TIMEOUT,
    )
    .expect("connect with the password");

    session.upload(local.path(), FILE_NAME).expect("upload");

    assert_eq!(
        std::fs::read(dir.local.join(FILE_NAME)).expect("delivered file"),
        std::fs::read(local.path()).expect("local file")
    );
}

#[test]
fn hashed_known_hosts_entries_are_understood() {
    let dir = TestDir::new("hashed-known-hosts");
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("known_hosts");
    std::fs::write(&file, known_hosts()).expect("write known_hosts");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&file)
        .status()
        .expect("run ssh-keygen -H");
    assert!(status.success());
    let hashed = std::fs::read_to_string(&file).expect("read hashed known_hosts");
    assert!(
        hashed.starts_with("|1|"),
        "ssh-keygen -H hashes the host names: {hashed}"
    );

    let credentials = SftpCredentials {
        known_hosts: format!("# comment\n\n{hashed}"),
        ..key_credentials()
    };
    SftpSession::connect(&target(&dir.remote), &credentials, TIMEOUT)
        .expect("connect with hashed known_hosts");
}

#[test]
fn a_different_host_key_is_refused_and_nothing_is_uploaded() {
    let dir = TestDir::new("host-key-mismatch");
    let scratch = tempfile::tempdir().expect("tempdir");
    generate_key(scratch.path(), "other_host_key", "ed25519", "", &[]);
    let other_key =
        std::fs::read_to_string(scratch.path().join("other_host_key.pub")).expect("pub key");
    let mut fields = other_key.split_whitespace();
    let (key_type, key) = (fields.next().expect("type"), fields.next().expect("key"));
    let target = target(&dir.remote);
    let credentials = SftpCredentials {
        known_hosts: format!("[{}]:{} {key_type} {key}\n", target.host, target.port),
        ..key_credentials()
    };

    let err = SftpSession::connect(&target, &credentials, TIMEOUT)
        .expect_err("a wrong host key must be refused");

    assert!(matches!(err, SftpError::HostKeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("HOST KEY MISMATCH"), "{err}");
    assert!(
        err.to_string().contains("SHA256:"),
        "the message shows the presented fingerprint: {err}"
    );
    assert_nothing_under(&dir);
}

#[test]
fn a_host_missing_from_known_hosts_is_refused() {
    let dir = TestDir::new("host-key-unknown");
    let line = known_hosts();
    let key_part = line
        .lines()
        .next()
        .expect("a line")
        .split_once(' ')
        .expect("fields")
        .1
        .to_string();
    let credentials = SftpCredentials {
        known_hosts: format!("sftp.other.example.org {key_part}\n"),
        ..key_credentials()
    };

    let err = SftpSession::connect(&target(&dir.remote), &credentials, TIMEOUT)
        .expect_err("unknown host");

    assert!(matches!(err, SftpError::HostKeyUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("not in knownHosts"), "{err}");
    assert_nothing_under(&dir);
}

#[test]
fn known_hosts_without_a_usable_line_is_refused_before_connecting() {
    let credentials = SftpCredentials {
        known_hosts: "# only a comment\nnot a known hosts line\n".to_string(),
        ..key_credentials()
    };
    let err = SftpSession::connect(&target("/exports"), &credentials, TIMEOUT)
        .expect_err("no usable entry");
    assert!(
        matches!(err, SftpError::KnownHostsInvalid { .. }),
        "{err:?}"
    );
}

#[test]
fn a_wrong_password_is_refused_and_never_shown() {
    let dir = TestDir::new("wrong-password");
    let password = "wrong-Pa55word-7f3a";

    let err = SftpSession::connect(
        &target(&dir.remote),
        &password_credentials(password),
        TIMEOUT,
    )
    .expect_err("a wrong password must be refused");

    assert!(
        matches!(err, SftpError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&common::env_var("SFTP_USER")),
        "{err}"
    );
    assert!(
        !err.to_string().contains(password),
        "Display leaks the password: {err}"
    );
    assert!(
        !format!("{err:?}").contains(password),
        "Debug leaks the password: {err:?}"
    );
    assert!(!format!("{:?}", password_credentials(password)).contains(password));
}

#[test]
fn a_wrong_user_is_refused() {
    let dir = TestDir::new("wrong-user");
    let target = SftpTarget {
        username: "nobody-here".to_string(),
        ..target(&dir.remote)
    };
    let err = SftpSession::connect(&target, &key_credentials(), TIMEOUT).expect_err("unknown user");
    assert!(
        matches!(err, SftpError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nobody-here"), "{err}");
}

/// Every key format ssh-keygen produces must load: a key the server does not know gets "authentication failed"
/// (the key was read and offered), never "private key unreadable".
#[test]
fn every_ssh_keygen_key_format_loads_and_an_unknown_key_is_refused() {
    let dir = TestDir::new("key-formats");
    let scratch = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str, &[&str])] = &[
        ("ed25519", "", &[]),
        ("ed25519", "s3cret-passphrase", &[]),
        ("rsa", "", &["-b", "3072"]),
        ("rsa", "s3cret-passphrase", &["-b", "3072"]),
        ("rsa", "", &["-b", "3072", "-m", "PEM"]),
        ("rsa", "s3cret-passphrase", &["-b", "3072", "-m", "PEM"]),
        ("ecdsa", "", &[]),
        ("ecdsa", "", &["-m", "PEM"]),
    ];
    for (index, (key_type, passphrase, extra)) in cases.iter().enumerate() {
        let key_pem = generate_key(
            scratch.path(),
            &format!("key{index}"),
            key_type,
            passphrase,
            extra,
        );
        let credentials = SftpCredentials {
            auth: SftpAuth::PrivateKey {
                key_pem,
                passphrase: (!passphrase.is_empty()).then(|| passphrase.to_string()),
            },
            known_hosts: known_hosts(),
        };
        let err = SftpSession::connect(&target(&dir.remote), &credentials, TIMEOUT)
            .expect_err("a key the server does not know must be refused");
        assert!(
            matches!(err, SftpError::AuthenticationFailed { .. }),
            "{key_type} {extra:?} passphrase={}: {err}",
            !passphrase.is_empty()
        );
    }
}

#[test]
fn a_wrong_passphrase_is_reported_without_the_passphrase() {
    let dir = TestDir::new("wrong-passphrase");
    let scratch = tempfile::tempdir().expect("tempdir");
    for (index, extra) in [&[][..], &["-m", "PEM"][..]].iter().enumerate() {
        let key_pem = generate_key(
            scratch.path(),
            &format!("key{index}"),
            "rsa",
            "right-passphrase",
            extra,
        );
        let credentials = SftpCredentials {
            auth: SftpAuth::PrivateKey {
                key_pem,
                passphrase: Some("wrong-passphrase-91b2".to_string()),
            },
            known_hosts: known_hosts(),
        };
        let err = SftpSession::connect(&target(&dir.remote), &credentials, TIMEOUT)
            .expect_err("wrong passphrase");
        assert!(
            matches!(err, SftpError::PrivateKeyUnreadable { .. }),
            "{extra:?}: {err:?}"
        );
        assert!(!err.to_string().contains("wrong-passphrase-91b2"), "{err}");
        assert!(
            !format!("{err:?}").contains("wrong-passphrase-91b2"),
            "{err:?}"
        );
        assert!(!format!("{credentials:?}").contains("wrong-passphrase-91b2"));
    }
}

#[test]
fn a_missing_directory_is_named() {
    let dir = TestDir::new("missing-directory");
    let missing = format!("{}/not-there", dir.remote);
    let err = SftpSession::connect(&target(&missing), &key_credentials(), TIMEOUT)
        .expect_err("missing directory");
    assert!(matches!(err, SftpError::DirectoryMissing { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing), "{err}");
}

#[test]
fn an_unwritable_directory_is_named_and_nothing_is_left() {
    let dir = TestDir::new("unwritable");
    let local = local_file(5000);
    let session = connect(&dir);
    std::fs::set_permissions(&dir.local, std::fs::Permissions::from_mode(0o555)).expect("chmod");

    let err = session
        .upload(local.path(), FILE_NAME)
        .expect_err("directory is not writable");

    assert!(
        matches!(err, SftpError::DirectoryNotWritable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&dir.remote), "{err}");
    assert_nothing_under(&dir);
}

#[test]
fn a_failure_after_data_was_written_removes_the_temporary_file() {
    // /proc files report size 0 but yield bytes: the upload writes them to the temporary file, then finds that the
    // source was not what its size claimed and must fail without leaving anything behind.
    let dir = TestDir::new("fails-after-write");
    let session = connect(&dir);

    let err = session
        .upload(Path::new("/proc/self/status"), FILE_NAME)
        .expect_err("the local file changed while uploading");

    assert!(matches!(err, SftpError::LocalFile { .. }), "{err:?}");
    assert_nothing_under(&dir);
}

#[test]
fn a_final_name_taken_by_a_directory_is_refused_and_left_alone() {
    let dir = TestDir::new("name-is-directory");
    dir.mkdir(FILE_NAME);
    let local = local_file(100_000);
    let session = connect(&dir);

    let err = session
        .upload(local.path(), FILE_NAME)
        .expect_err("the final name is taken");

    assert!(matches!(err, SftpError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        dir.entries(),
        vec![FILE_NAME.to_string()],
        "only the pre-existing entry remains"
    );
    assert!(
        dir.local.join(FILE_NAME).is_dir(),
        "the existing entry is untouched"
    );
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = TestDir::new("no-overwrite");
    std::fs::write(dir.local.join(FILE_NAME), b"the customer's copy").expect("existing file");
    let local = local_file(2000);
    let session = connect(&dir);

    let err = session
        .upload(local.path(), FILE_NAME)
        .expect_err("must not overwrite");

    assert!(matches!(err, SftpError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(dir.local.join(FILE_NAME)).expect("file"),
        b"the customer's copy"
    );
    assert_eq!(dir.entries(), vec![FILE_NAME.to_string()]);
}

#[test]
fn locate_finds_a_file_in_place_or_moved_into_a_sub_directory() {
    let dir = TestDir::new("locate");
    let local = local_file(1234);
    let session = connect(&dir);
    session.upload(local.path(), FILE_NAME).expect("upload");

    let found = session
        .locate(FILE_NAME, None)
        .expect("locate")
        .expect("file is in place");
    assert_eq!(found.relative, FILE_NAME);
    assert_eq!(found.path, format!("{}/{FILE_NAME}", dir.remote));
    assert_eq!(found.size, 1234);
    assert!(found.modified.is_some());

    let moved_to = dir.mkdir("picked-up/2025");
    std::fs::rename(dir.local.join(FILE_NAME), moved_to.join(FILE_NAME))
        .expect("move like a customer");
    let found = session
        .locate(FILE_NAME, None)
        .expect("locate")
        .expect("file was moved, not deleted");
    assert_eq!(found.relative, format!("picked-up/2025/{FILE_NAME}"));
    assert_eq!(
        found.path,
        format!("{}/picked-up/2025/{FILE_NAME}", dir.remote)
    );

    std::fs::remove_file(moved_to.join(FILE_NAME)).expect("delete");
    assert_eq!(session.locate(FILE_NAME, None).expect("locate"), None);
}

#[test]
fn a_same_named_file_elsewhere_counts_only_with_the_delivered_content() {
    let dir = TestDir::new("locate-own");
    let session = connect(&dir);
    let ours = local_file(2000);
    let ours_bytes = std::fs::read(ours.path()).expect("local");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&ours_bytes))
    };
    let expected = Some(scheduled_exports::adapters::sftp::Expected {
        bytes: 2000,
        sha256: &sha,
    });
    // A neighbour's file of the same name (one of the same size, one not) in sub-directories.
    let neighbour = dir.mkdir("neighbour");
    let mut same_size = ours_bytes.clone();
    same_size[0] ^= 1;
    std::fs::write(neighbour.join(FILE_NAME), &same_size).expect("write");
    std::fs::write(dir.mkdir("other").join(FILE_NAME), b"short").expect("write");
    assert_eq!(
        session.locate(FILE_NAME, expected).expect("locate"),
        None,
        "other content under our name is not our file"
    );
    assert!(
        session.locate(FILE_NAME, None).expect("locate").is_some(),
        "by name alone it would have been taken for ours"
    );

    // Ours, moved by the customer into archive/: found, and its digest is what was delivered.
    std::fs::write(dir.mkdir("archive").join(FILE_NAME), &ours_bytes).expect("write");
    let found = session
        .locate(FILE_NAME, expected)
        .expect("locate")
        .expect("ours is found");
    assert_eq!(found.relative, format!("archive/{FILE_NAME}"));
    let digest = session.content_digest(&found).expect("digest");
    assert_eq!((digest.bytes, digest.sha256), (2000, sha));
}

#[test]
fn listings_return_only_the_names_asked_for() {
    let dir = TestDir::new("list-matching");
    dir.mkdir("a");
    std::fs::write(dir.local.join(FILE_NAME), b"1").expect("write");
    std::fs::write(dir.local.join("a").join(FILE_NAME), b"22").expect("write");
    for i in 0..50 {
        std::fs::write(dir.local.join(format!("other-{i}.txt")), b"x").expect("write");
    }
    let session = connect(&dir);
    let listing = session
        .list_matching(&|name| name == FILE_NAME)
        .expect("list");
    let listed: Vec<&str> = listing.files.iter().map(|f| f.relative.as_str()).collect();
    assert_eq!(listed, vec![format!("a/{FILE_NAME}").as_str(), FILE_NAME]);
    assert_eq!(listing.incomplete, None);
}

#[test]
fn locate_does_not_call_a_file_gone_when_it_could_not_look_everywhere() {
    let dir = TestDir::new("locate-incomplete");
    let session = connect(&dir);
    // A customer's archive that is a symbolic link: the walk does not follow it, so the file may
    // be in there, and "not found" would make the operator copy it again next to the moved one.
    std::os::unix::fs::symlink("/tmp", dir.local.join("archive")).expect("symlink");
    let err = session
        .locate(FILE_NAME, None)
        .expect_err("absent from what could be seen is not absent");
    assert_eq!(err.reason().as_str(), "SearchIncomplete");
    assert!(err.to_string().contains("archive"), "{err}");

    // Once the file is in the directory itself, it is found as before.
    let local = local_file(10);
    session.upload(local.path(), FILE_NAME).expect("upload");
    assert!(session.locate(FILE_NAME, None).expect("locate").is_some());
}

#[test]
fn list_recursive_lists_nested_regular_files() {
    let dir = TestDir::new("list");
    dir.mkdir("a/b");
    dir.mkdir("empty");
    std::fs::write(dir.local.join("top.csv"), b"1").expect("write");
    std::fs::write(dir.local.join("a/middle.csv"), b"22").expect("write");
    std::fs::write(dir.local.join("a/b/deep.csv"), b"333").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", dir.local.join("a/link.csv")).expect("symlink");
    let session = connect(&dir);

    let files = session.list_recursive().expect("list");

    let listed: Vec<(&str, u64)> = files
        .iter()
        .map(|f| (f.relative.as_str(), f.size))
        .collect();
    assert_eq!(
        listed,
        vec![("a/b/deep.csv", 3), ("a/middle.csv", 2), ("top.csv", 1)]
    );
    assert_eq!(files[0].path, format!("{}/a/b/deep.csv", dir.remote));
    assert!(files.iter().all(|f| f.modified.is_some()));
}

#[test]
fn remove_removes_only_that_file() {
    let dir = TestDir::new("remove");
    dir.mkdir("sub");
    std::fs::write(dir.local.join("keep.csv"), b"keep").expect("write");
    std::fs::write(dir.local.join("sub/keep.csv"), b"keep").expect("write");
    std::fs::write(dir.local.join("sub/old.csv"), b"old").expect("write");
    let session = connect(&dir);
    let files = session.list_recursive().expect("list");
    let old = files
        .iter()
        .find(|f| f.relative == "sub/old.csv")
        .expect("old file listed");

    session.remove(old).expect("remove");
    session
        .remove(old)
        .expect("removing a file that is already gone is fine");

    assert!(!dir.local.join("sub/old.csv").exists());
    assert!(dir.local.join("keep.csv").exists());
    assert!(dir.local.join("sub/keep.csv").exists());
}

#[test]
fn a_closed_port_is_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again
    let target = SftpTarget {
        port,
        ..target("/exports")
    };
    let err = SftpSession::connect(&target, &key_credentials(), TIMEOUT).expect_err("closed port");
    assert!(matches!(err, SftpError::ConnectRefused { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!(":{port}")), "{err}");
    assert!(err.is_transient());
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and hold the connection without a word.
    let holder = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let target = SftpTarget {
        host: "127.0.0.1".into(), // where the listener above is
        port,
        ..target("/exports")
    };
    let err = SftpSession::connect(&target, &key_credentials(), Duration::from_millis(500))
        .expect_err("silent server");
    assert!(matches!(err, SftpError::Timeout { .. }), "{err:?}");
    drop(holder.join());
}

#[test]
fn a_port_that_is_not_ssh_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        }
    });
    let target = SftpTarget {
        host: "127.0.0.1".into(), // where the listener above is
        port,
        ..target("/exports")
    };
    let err = SftpSession::connect(&target, &key_credentials(), TIMEOUT).expect_err("not SSH");
    assert!(matches!(err, SftpError::Handshake { .. }), "{err:?}");
    assert!(err.to_string().contains("SSH"), "{err}");
    drop(server.join());
}

#[test]
fn from_secret_data_reads_keys_and_names_what_is_missing() {
    let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };

    let err =
        SftpCredentials::from_secret_data("sftp-credentials", &data(&[("privateKey", "KEY")]))
            .expect_err("knownHosts is required");
    assert!(
        matches!(
            err,
            SftpError::MissingSecretKey {
                key: "knownHosts",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("\"sftp-credentials\"") && err.to_string().contains("knownHosts"),
        "{err}"
    );

    let err = SftpCredentials::from_secret_data(
        "sftp-credentials",
        &data(&[("knownHosts", "h ssh-ed25519 AAAA")]),
    )
    .expect_err("a key or a password is required");
    assert!(
        err.to_string().contains("privateKey") && err.to_string().contains("password"),
        "{err}"
    );

    let credentials = SftpCredentials::from_secret_data(
        "s",
        &data(&[("knownHosts", "h ssh-ed25519 AAAA"), ("password", "pw-123")]),
    )
    .expect("password credentials");
    assert!(matches!(credentials.auth, SftpAuth::Password(ref p) if p == "pw-123"));

    let credentials = SftpCredentials::from_secret_data(
        "s",
        &data(&[
            ("knownHosts", "h ssh-ed25519 AAAA"),
            (
                "privateKey",
                "-----BEGIN KEY-----\r\nabc\r\n-----END KEY-----",
            ),
            ("passphrase", "pp"),
            ("password", "pw-123"),
        ]),
    )
    .expect("key credentials");
    match credentials.auth {
        SftpAuth::PrivateKey {
            key_pem,
            passphrase,
        } => {
            assert_eq!(key_pem, "-----BEGIN KEY-----\nabc\n-----END KEY-----\n");
            assert_eq!(passphrase.as_deref(), Some("pp"));
        }
        SftpAuth::Password(_) => panic!("the key wins over the password"),
    }

    let mut binary = data(&[("knownHosts", "h ssh-ed25519 AAAA")]);
    binary.insert("password".to_string(), vec![0xff, 0xfe]);
    let err = SftpCredentials::from_secret_data("s", &binary).expect_err("not UTF-8");
    assert!(
        matches!(
            err,
            SftpError::InvalidSecretValue {
                key: "password",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Upload throughput against OpenSSH's `sftp put` of the same 200 MB file to the same server. Prints the ratio;
/// asserts nothing about time. Run with `cargo test --release --test sftp -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn upload_speed_compared_with_openssh_sftp() {
    let dir = TestDir::new("speed");
    let local = local_file(200 * 1024 * 1024);
    let session = connect(&dir);

    let started = std::time::Instant::now();
    session.upload(local.path(), "ours.csv").expect("upload");
    let ours = started.elapsed();

    let started = std::time::Instant::now();
    let mut child = Command::new("sftp")
        .args([
            "-q",
            "-b",
            "-",
            "-P",
            &common::env_var("SFTP_PORT"),
            "-i",
            &common::env_var("SFTP_PRIVATE_KEY_FILE"),
        ])
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            common::env_var("SFTP_KNOWN_HOSTS_FILE")
        ))
        .arg(format!(
            "{}@{}",
            common::env_var("SFTP_USER"),
            common::env_var("SFTP_HOST")
        ))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run sftp");
    let batch = format!(
        "put {} {}/openssh.csv\n",
        local.path().display(),
        dir.remote
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(batch.as_bytes())
        .expect("batch");
    assert!(child.wait().expect("sftp").success());
    let openssh = started.elapsed();

    assert_eq!(
        std::fs::metadata(dir.local.join("ours.csv"))
            .expect("ours")
            .len(),
        200 * 1024 * 1024
    );
    println!(
        "200 MiB upload: ours {ours:?}, OpenSSH sftp {openssh:?}, ratio ours/openssh = {:.2}",
        ours.as_secs_f64() / openssh.as_secs_f64()
    );
}

/// A TCP forwarder to the test bed's sshd that passes at most `bytes_per_second` each way: a slow
/// but alive link. Runs until the process ends (each test makes its own).
fn throttled_forwarder(bytes_per_second: usize) -> u16 {
    // A small receive buffer, as on a slow WAN link: what the link has not carried stays with the
    // sender instead of vanishing into a large loopback buffer at once.
    let listener = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime")
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            socket.bind("127.0.0.1:0".parse().expect("address"))?;
            socket.listen(16)?.into_std()
        })
        .expect("bind the forwarder");
    listener.set_nonblocking(false).expect("blocking listener");
    let port = listener.local_addr().expect("addr").port();
    let upstream = format!(
        "{}:{}",
        common::env_var("SFTP_HOST"),
        common::env_var("SFTP_PORT")
    );
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            for (from, to) in [
                (inbound.try_clone(), outbound.try_clone()),
                (outbound.try_clone(), inbound.try_clone()),
            ] {
                let (Ok(mut from), Ok(mut to)) = (from, to) else {
                    continue;
                };
                std::thread::spawn(move || {
                    use std::io::Read;
                    // A tenth of the rate every 100 ms.
                    let mut buffer = vec![0_u8; (bytes_per_second / 10).max(1)];
                    loop {
                        let started = std::time::Instant::now();
                        match from.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if to.write_all(&buffer[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                        let tick = Duration::from_millis(100);
                        if let Some(rest) = tick.checked_sub(started.elapsed()) {
                            std::thread::sleep(rest); // the throttle itself, not a wait for state
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

#[test]
fn a_slow_but_alive_link_delivers_a_file_that_takes_longer_than_the_timeout() {
    let dir = TestDir::new("slow-link");
    let port = throttled_forwarder(10 * 1024);
    let mut slow = target(&dir.remote);
    slow.host = "127.0.0.1".to_string();
    slow.port = port;
    // knownHosts lists the sshd under its own port; the forwarder's port needs the same keys.
    let mut credentials = key_credentials();
    credentials.known_hosts = credentials.known_hosts.replace(
        &format!("]:{} ", common::env_var("SFTP_PORT")),
        &format!("]:{port} "),
    );
    let timeout = Duration::from_secs(2);
    let session = SftpSession::connect(&slow, &credentials, timeout).expect("connect");
    // About six seconds at 10 KiB/s, three timeouts; and one SFTP write packet (30 000 bytes)
    // alone takes longer than the timeout, which bounds each libssh2 call as a whole.
    let local = local_file(60 * 1024);
    let started = std::time::Instant::now();
    let delivered = session
        .upload(local.path(), FILE_NAME)
        .expect("a link that keeps moving is not a dead link");
    assert_eq!(delivered, 60 * 1024);
    assert!(
        started.elapsed() > timeout,
        "the upload really took longer than one timeout"
    );
    assert_eq!(
        std::fs::read(dir.local.join(FILE_NAME)).expect("delivered"),
        std::fs::read(local.path()).expect("local")
    );
}
