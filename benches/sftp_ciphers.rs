//! Which SSH cipher to prefer, by measurement: the same bytes (`BENCH_MIB`, default 256 MiB)
//! uploaded to the test bed's sshd by this crate's client with each safe cipher, and by OpenSSH
//! `sftp -c` with the same cipher, in one run. Prints MiB/s per cipher and the ratio to OpenSSH;
//! the order offered (`CIPHERS`) should lead with the fastest.
//!
//! Run with the test bed up: `cargo bench --bench sftp_ciphers`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use scheduled_exports::adapters::sftp::{
    CIPHERS, SftpAuth, SftpCredentials, SftpSession, SftpTarget,
};

const ROUNDS: usize = 3;

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (remote, local) = sftp_directory(&format!("sx-ciphers-{}", random_suffix()));
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let work = tempfile::tempdir().expect("work dir");
    let file = work.path().join("payload");
    std::fs::write(&file, &data).expect("payload");
    let target = SftpTarget {
        host: env_var("SFTP_HOST"),
        port: env_var("SFTP_PORT").parse().expect("port"),
        username: env_var("SFTP_USER"),
        directory: remote.clone(),
    };
    let credentials = SftpCredentials {
        auth: SftpAuth::PrivateKey {
            key_pem: std::fs::read_to_string(env_var("SFTP_PRIVATE_KEY_FILE")).expect("key"),
            passphrase: None,
        },
        known_hosts: std::fs::read_to_string(env_var("SFTP_KNOWN_HOSTS_FILE"))
            .expect("known_hosts"),
    };
    println!(
        "sftp ciphers: {mib} MiB per upload, median of {ROUNDS}; offered first: {}",
        CIPHERS[0]
    );
    let rate = |took: Duration| mib as f64 / took.as_secs_f64();
    for cipher in CIPHERS {
        let (mut ours, mut openssh) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let name = format!("ours-{round}");
            let started = Instant::now();
            let session = SftpSession::connect_offering(
                &target,
                &credentials,
                Duration::from_secs(30),
                &[cipher],
            )
            .expect("connect");
            session
                .upload_from(&mut data.as_slice(), data.len() as u64, &name)
                .expect("upload");
            ours.push(started.elapsed());
            drop(session);
            let _ = std::fs::remove_file(local.join(&name));

            let name = format!("openssh-{round}");
            let started = Instant::now();
            let mut child = Command::new("sftp")
                .args([
                    "-q",
                    "-b",
                    "-",
                    "-c",
                    cipher,
                    "-i",
                    &env_var("SFTP_PRIVATE_KEY_FILE"),
                ])
                .args(["-P", &env_var("SFTP_PORT")])
                .args([
                    "-o",
                    &format!("UserKnownHostsFile={}", env_var("SFTP_KNOWN_HOSTS_FILE")),
                ])
                .args(["-o", "StrictHostKeyChecking=yes"])
                .arg(format!("{}@{}", env_var("SFTP_USER"), env_var("SFTP_HOST")))
                .stdin(Stdio::piped())
                .spawn()
                .expect("sftp");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(format!("put {} {remote}/{name}\n", file.display()).as_bytes())
                .expect("write batch");
            assert!(
                child.wait().expect("sftp").success(),
                "sftp put with {cipher}"
            );
            openssh.push(started.elapsed());
            let _ = std::fs::remove_file(local.join(&name));
        }
        ours.sort();
        openssh.sort();
        let (ours, openssh) = (ours[ROUNDS / 2], openssh[ROUNDS / 2]);
        println!(
            "{cipher:<32} ours {:>7.1} MiB/s  OpenSSH {:>7.1} MiB/s  ours/OpenSSH time {:.2}x",
            rate(ours),
            rate(openssh),
            ours.as_secs_f64() / openssh.as_secs_f64()
        );
    }
}
