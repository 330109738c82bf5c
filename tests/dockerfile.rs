//! The `Dockerfile` matches the crate (issue 6, image). This machine has no container engine, so
//! the image is never built here; instead the Dockerfile is parsed and its stages, paths, user and
//! entrypoint are checked against `Cargo.toml`, the Job builder and the binary itself, and the
//! build stage's context (what its COPY instructions take, after `.dockerignore`) is laid out in
//! `target/dockerfile-context/build/` and compiled with `cargo check --locked --offline`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::{TimeZone, Utc};
use scheduled_exports::operator::job::{JobSettings, RunKind, build_job};
use scheduled_exports::resource::ScheduledExport;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- Dockerfile --------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        self.instructions
            .iter()
            .filter(move |instruction| instruction.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }

    /// `ENV NAME=value` (or the legacy `ENV NAME value`), the last one wins.
    fn env(&self, name: &str) -> Option<String> {
        let mut found = None;
        for instruction in self.all("ENV") {
            let args = instruction.args.trim();
            if let Some(rest) = args.strip_prefix(&format!("{name} ")) {
                found = Some(rest.trim().to_string());
            }
            for word in split_words(args) {
                if let Some(value) = word.strip_prefix(&format!("{name}=")) {
                    found = Some(value.trim_matches('"').to_string());
                }
            }
        }
        found
    }

    /// The directory relative paths resolve against when `index` runs.
    fn workdir_at(&self, index: usize) -> String {
        let mut dir = "/".to_string();
        for instruction in &self.instructions[..index] {
            if instruction.keyword == "WORKDIR" {
                let target = instruction.args.trim();
                dir = if target.starts_with('/') {
                    target.to_string()
                } else {
                    format!("{}/{target}", dir.trim_end_matches('/'))
                };
            }
        }
        dir
    }
}

/// A COPY instruction: `--from`, sources, destination.
#[derive(Debug)]
struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    destination: String,
}

fn parse_copy(instruction: &Instruction) -> Copy {
    let args = instruction.args.trim();
    let mut from = None;
    let mut rest = Vec::new();
    let words: Vec<String> = if args.starts_with('[') {
        serde_json::from_str(args).expect("COPY in JSON form")
    } else {
        split_words(args).into_iter().map(str::to_string).collect()
    };
    for word in words {
        if let Some(stage) = word.strip_prefix("--from=") {
            from = Some(stage.to_string());
        } else if word.starts_with("--") {
            continue;
        } else {
            rest.push(word);
        }
    }
    let destination = rest.pop().expect("COPY has a destination");
    assert!(!rest.is_empty(), "COPY {args} has no source");
    Copy {
        from,
        sources: rest,
        destination,
    }
}

fn split_words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

fn dockerfile_text() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile")
}

/// Stages of the Dockerfile, with continuation lines joined and comments dropped, as Docker does.
fn stages() -> Vec<Stage> {
    let text = dockerfile_text();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );

    let mut stages: Vec<Stage> = Vec::new();
    for line in logical.iter().filter(|line| !line.trim().is_empty()) {
        let (keyword, args) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((line, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            let words = split_words(args);
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                [_] => None,
                _ => panic!("FROM {args}: expected IMAGE [AS NAME]"),
            };
            stages.push(Stage {
                image: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
            continue;
        }
        let stage = stages
            .last_mut()
            .unwrap_or_else(|| panic!("{keyword} before the first FROM"));
        stage.instructions.push(Instruction {
            keyword,
            args: args.trim().to_string(),
        });
    }
    stages
}

/// (build stage, runtime stage): the stage the runtime copies the binary from, and the last stage.
fn build_and_runtime() -> (Stage, Stage) {
    let mut stages = stages();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:#?}"
    );
    let runtime = stages.pop().expect("runtime stage");
    let build = stages.pop().expect("build stage");
    (build, runtime)
}

/// The exec form of ENTRYPOINT / CMD; the shell form would wrap the binary in `/bin/sh -c`, which a
/// distroless image does not have.
fn exec_form(instruction: &Instruction) -> Vec<String> {
    serde_json::from_str(&instruction.args).unwrap_or_else(|_| {
        panic!(
            "{} {} must use the exec (JSON) form",
            instruction.keyword, instruction.args
        )
    })
}

// ---- Cargo.toml --------------------------------------------------------------------------------

/// The few parts of Cargo.toml these checks need: `[package]` keys and each target table.
#[derive(Debug, Default)]
struct Manifest {
    package: BTreeMap<String, String>,
    /// (table, keys): `lib`, `bin`, `bench`, ... in file order.
    targets: Vec<(String, BTreeMap<String, String>)>,
}

impl Manifest {
    fn read() -> Self {
        let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
        let mut manifest = Manifest::default();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with("[[") {
                section = line.trim_matches(['[', ']']).to_string();
                manifest.targets.push((section.clone(), BTreeMap::new()));
                continue;
            }
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']).to_string();
                if section == "lib" {
                    manifest.targets.push((section.clone(), BTreeMap::new()));
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim().to_string(), value.trim().to_string());
            let value = value.trim_matches('"').to_string();
            if section == "package" {
                manifest.package.insert(key, value);
            } else if matches!(
                section.as_str(),
                "lib" | "bin" | "bench" | "test" | "example"
            ) && let Some((_, keys)) = manifest.targets.last_mut()
            {
                keys.insert(key, value);
            }
        }
        manifest
    }

    /// The binary the image ships: the `[[bin]]` at src/main.rs without required features.
    fn shipped_binary(&self) -> String {
        let bins: Vec<_> = self
            .targets
            .iter()
            .filter(|(kind, keys)| {
                kind == "bin"
                    && keys.get("path").map(String::as_str) == Some("src/main.rs")
                    && !keys.contains_key("required-features")
            })
            .map(|(_, keys)| keys["name"].clone())
            .collect();
        assert_eq!(bins.len(), 1, "one [[bin]] at src/main.rs: {bins:?}");
        bins[0].clone()
    }

    /// Source files cargo must find to load the manifest and build the shipped binary.
    fn files_cargo_needs(&self) -> Vec<String> {
        let mut files = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
        for (kind, keys) in &self.targets {
            match kind.as_str() {
                "lib" => files.push(keys.get("path").cloned().unwrap_or("src/lib.rs".into())),
                "bin" if !keys.contains_key("required-features") => {
                    files.push(keys["path"].clone())
                }
                "bench" => files.push(
                    keys.get("path")
                        .cloned()
                        .unwrap_or_else(|| format!("benches/{}.rs", keys["name"])),
                ),
                _ => {}
            }
        }
        files
    }
}

fn version_tuple(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|part| part.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("not a Rust version: {text}"),
    }
}

// ---- .dockerignore -----------------------------------------------------------------------------

/// `.dockerignore` with Docker's semantics: patterns relative to the context root, `*` and `?`
/// within one path segment, `**` across segments, `!` re-includes, the last matching line wins,
/// and a pattern that matches a directory excludes everything below it.
struct DockerIgnore {
    patterns: Vec<(bool, String)>,
}

impl DockerIgnore {
    fn read() -> Self {
        let text =
            std::fs::read_to_string(repo_root().join(".dockerignore")).expect("read .dockerignore");
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (exclude, pattern) = match line.strip_prefix('!') {
                    Some(pattern) => (false, pattern.trim()),
                    None => (true, line),
                };
                assert!(
                    !pattern.contains('['),
                    ".dockerignore: character classes are not checked here: {line}"
                );
                let pattern = pattern
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .trim_end_matches('/');
                (exclude, pattern.to_string())
            })
            .collect();
        Self { patterns }
    }

    fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (exclude, pattern) in &self.patterns {
            let mut candidate = path;
            loop {
                if glob(pattern.as_bytes(), candidate.as_bytes()) {
                    excluded = *exclude;
                    break;
                }
                match candidate.rsplit_once('/') {
                    Some((parent, _)) => candidate = parent,
                    None => break,
                }
            }
        }
        excluded
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob(rest, text)
                || (0..text.len())
                    .filter(|&i| text[i] == b'/')
                    .any(|i| glob(rest, &text[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        [b'*', rest @ ..] => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob(rest, &text[i..])),
        [b'?', rest @ ..] => !text.is_empty() && text[0] != b'/' && glob(rest, &text[1..]),
        [c, rest @ ..] => !text.is_empty() && text[0] == *c && glob(rest, &text[1..]),
    }
}

/// Every file under `path` (itself, if it is a file), relative to the repository root.
fn files_under(path: &str) -> Vec<String> {
    let full = repo_root().join(path);
    if full.is_file() {
        return vec![path.to_string()];
    }
    let mut files = Vec::new();
    let mut pending = vec![full];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry").path();
            if entry.is_dir() {
                pending.push(entry);
            } else {
                let relative = entry.strip_prefix(repo_root()).expect("under the repo");
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

/// The build stage's COPY instructions from the context (not from another stage).
fn context_copies(build: &Stage) -> Vec<(usize, Copy)> {
    build
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, instruction)| instruction.keyword == "COPY" || instruction.keyword == "ADD")
        .map(|(index, instruction)| {
            assert_eq!(
                instruction.keyword, "COPY",
                "use COPY, not ADD: {instruction:?}"
            );
            (index, parse_copy(instruction))
        })
        .filter(|(_, copy)| copy.from.is_none())
        .collect()
}

// ---- tests -------------------------------------------------------------------------------------

#[test]
fn the_build_stage_builds_the_crates_binary_locked_in_release_mode() {
    let manifest = Manifest::read();
    let binary = manifest.shipped_binary();
    assert_eq!(
        manifest.package.get("default-run"),
        Some(&binary),
        "default-run is the shipped binary"
    );
    // The test harness knows the binary by this name; a rename breaks this line at compile time.
    assert!(Path::new(env!("CARGO_BIN_EXE_scheduled-exports")).ends_with(&binary));

    let (build, _) = build_and_runtime();
    let builds: Vec<&Instruction> = build
        .all("RUN")
        .filter(|run| run.args.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "the build stage runs cargo build");
    for run in &builds {
        for flag in ["--release", "--locked", &format!("--bin {binary}")] {
            assert!(
                run.args.contains(flag),
                "`cargo build` without {flag}: {}",
                run.args
            );
        }
    }
    assert_eq!(
        build.env("CARGO_TARGET_DIR"),
        None,
        "the binary is expected under the default target/"
    );
}

#[test]
fn the_builders_rust_is_at_least_the_crates_rust_version_on_the_runtimes_debian() {
    let manifest = Manifest::read();
    let required = version_tuple(&manifest.package["rust-version"]);
    let (build, runtime) = build_and_runtime();
    let tag = build
        .image
        .rsplit_once(':')
        .map(|(repository, tag)| {
            assert!(
                repository.ends_with("rust"),
                "the build stage starts from the official rust image: {}",
                build.image
            );
            tag
        })
        .unwrap_or_else(|| panic!("pin the builder's Rust version: {}", build.image));
    let (version, debian) = tag
        .split_once('-')
        .unwrap_or_else(|| panic!("rust:<version>-<debian release>, got {tag}"));
    let builder = version_tuple(version);
    assert!(
        builder >= required,
        "the builder's Rust {version} is older than Cargo.toml's rust-version {}",
        manifest.package["rust-version"]
    );

    // The binary links the builder's libssl/libz dynamically: same Debian release at runtime.
    let runtime_debian = match debian {
        "bullseye" => "debian11",
        "bookworm" => "debian12",
        "trixie" => "debian13",
        other => panic!("unknown Debian release {other} in {}", build.image),
    };
    assert!(
        runtime.image.starts_with("gcr.io/distroless/cc-")
            && runtime.image.contains(&format!("-{runtime_debian}")),
        "the runtime is distroless cc on {runtime_debian}, like the {debian} builder: {}",
        runtime.image
    );
}

#[test]
fn the_runtime_copies_the_binary_from_where_the_build_stage_produced_it() {
    let binary = Manifest::read().shipped_binary();
    let (build, runtime) = build_and_runtime();
    let build_name = build.name.clone().expect("the build stage is named");
    let build_index = build
        .instructions
        .iter()
        .rposition(|run| run.keyword == "RUN" && run.args.contains("cargo build"))
        .expect("cargo build");
    let produced = format!(
        "{}/target/release/{binary}",
        build.workdir_at(build_index).trim_end_matches('/')
    );

    let copies: Vec<Copy> = runtime.all("COPY").map(parse_copy).collect();
    let binary_copy = copies
        .iter()
        .find(|copy| copy.sources.iter().any(|source| source.ends_with(&binary)))
        .expect("the runtime stage copies the binary");
    assert_eq!(binary_copy.from.as_deref(), Some(build_name.as_str()));
    assert_eq!(binary_copy.sources, vec![produced]);
    assert_eq!(binary_copy.destination, format!("/usr/local/bin/{binary}"));
    for copy in &copies {
        assert_eq!(
            copy.from.as_deref(),
            Some(build_name.as_str()),
            "the runtime stage takes files only from the build stage: {copy:?}"
        );
    }
}

#[test]
fn the_entrypoint_is_the_binary_and_the_default_command_is_the_controller() {
    let binary = Manifest::read().shipped_binary();
    let (_, runtime) = build_and_runtime();
    let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT"));
    assert_eq!(entrypoint, vec![format!("/usr/local/bin/{binary}")]);
    let command = exec_form(runtime.last("CMD").expect("CMD"));
    assert_eq!(command, vec!["controller".to_string()]);

    // CMD names a real subcommand of the binary.
    let output = Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args(&command)
        .arg("--help")
        .output()
        .expect("run scheduled-exports");
    assert!(
        output.status.success(),
        "`scheduled-exports {} --help` failed: {}",
        command.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The export Job the operator creates, from the crate's own Job builder.
fn export_job_pod() -> k8s_openapi::api::core::v1::PodSpec {
    let object: ScheduledExport = serde_json::from_value(serde_json::json!({
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {"name": "daily", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {
            "fileType": "interactions", "time": "07:00",
            "source": {"secretRef": {"name": "db"}},
            "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}
        }
    }))
    .expect("object");
    let settings = JobSettings {
        artifact_store_url: "s3://bucket/prefix".into(),
        ..JobSettings::default()
    };
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let job = build_job(&object, slot, &RunKind::Scheduled, &settings).expect("job");
    job.spec
        .and_then(|spec| spec.template.spec)
        .expect("pod spec")
}

#[test]
fn the_runtime_user_is_the_non_root_user_the_export_jobs_run_as() {
    let (_, runtime) = build_and_runtime();
    let user = runtime.last("USER").expect("the runtime stage sets USER");
    let (uid, gid) = user
        .args
        .split_once(':')
        .unwrap_or((user.args.as_str(), user.args.as_str()));
    let uid: i64 = uid.parse().unwrap_or_else(|_| {
        panic!(
            "USER must be numeric (runAsNonRoot cannot check a name): {}",
            user.args
        )
    });
    let gid: i64 = gid.parse().expect("numeric group");
    assert_eq!((uid, gid), (65532, 65532), "distroless nonroot");

    let security = export_job_pod()
        .security_context
        .expect("pod security context");
    assert_eq!(
        security.run_as_user,
        Some(uid),
        "the Job runs as the image user"
    );
    assert_eq!(security.run_as_group, Some(gid));
    assert_eq!(security.run_as_non_root, Some(true));
}

#[test]
fn export_jobs_find_the_binary_on_the_images_path() {
    let binary = Manifest::read().shipped_binary();
    let installed = format!("/usr/local/bin/{binary}");
    let (_, runtime) = build_and_runtime();
    let path = runtime
        .env("PATH")
        .expect("the runtime stage sets PATH explicitly");

    let container = export_job_pod().containers.remove(0);
    let program = container
        .command
        .as_ref()
        .and_then(|command| command.first().cloned())
        .expect("the export container names its program");
    let resolved = if program.starts_with('/') {
        Some(program.clone())
    } else {
        path.split(':')
            .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
            .find(|candidate| *candidate == installed)
    };
    assert_eq!(
        resolved.as_deref(),
        Some(installed.as_str()),
        "the Job runs {program:?}, which PATH={path} does not resolve to {installed}"
    );
}

#[test]
fn the_build_context_holds_everything_the_build_stage_copies() {
    let ignore = DockerIgnore::read();
    for (path, excluded) in [
        ("target/debug/scheduled-exports", true),
        (".git/HEAD", true),
        ("src/main.rs", false),
    ] {
        assert_eq!(
            ignore.excludes(path),
            excluded,
            ".dockerignore should {}exclude {path}",
            if excluded { "" } else { "not " }
        );
    }

    let (build, _) = build_and_runtime();
    let copies = context_copies(&build);
    assert!(!copies.is_empty(), "the build stage copies the sources");
    let mut copied = Vec::new();
    for (_, copy) in &copies {
        for source in &copy.sources {
            assert!(
                !source.contains('*') && !source.contains(".."),
                "COPY {source}: name the paths"
            );
            let source = source.trim_start_matches("./").trim_end_matches('/');
            assert!(
                repo_root().join(source).exists(),
                "COPY {source}: no such file in the repository"
            );
            for file in files_under(source) {
                assert!(
                    !ignore.excludes(&file),
                    "COPY {source}: .dockerignore excludes {file}"
                );
                copied.push(file);
            }
        }
    }
    for needed in Manifest::read().files_cargo_needs() {
        assert!(
            copied.contains(&needed),
            "cargo needs {needed}, which the build stage does not copy"
        );
    }
}

#[test]
fn the_dependency_layer_stubs_every_target_cargo_needs() {
    let (build, _) = build_and_runtime();
    let first_build = build
        .instructions
        .iter()
        .position(|run| run.keyword == "RUN" && run.args.contains("cargo build"))
        .expect("cargo build");
    let copied_before: Vec<String> = context_copies(&build)
        .into_iter()
        .filter(|(index, _)| *index < first_build)
        .flat_map(|(_, copy)| copy.sources)
        .collect();
    let stubs = &build.instructions[first_build].args;
    for needed in Manifest::read().files_cargo_needs() {
        assert!(
            copied_before.contains(&needed) || stubs.contains(&needed),
            "the dependency layer neither copies nor stubs {needed}, so cargo cannot load the \
             manifest there"
        );
    }
}

/// Lays out the build stage's context as its COPY instructions would (after `.dockerignore`) and
/// checks that it compiles: catches a source the build needs but the context lacks (a new bench,
/// an `include_str!` outside src/, a build script).
#[test]
fn the_build_stage_context_compiles() {
    let (build, _) = build_and_runtime();
    let ignore = DockerIgnore::read();
    let base = repo_root().join("target/dockerfile-context");
    let root = base.join("build");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create context dir");
    let copies = context_copies(&build);
    for (index, copy) in &copies {
        let workdir = build.workdir_at(*index);
        let destination = if copy.destination.starts_with('/') {
            copy.destination
                .strip_prefix(workdir.as_str())
                .unwrap_or_else(|| panic!("COPY to {} outside WORKDIR {workdir}", copy.destination))
                .to_string()
        } else {
            copy.destination.clone()
        };
        let destination = root.join(destination.trim_start_matches("./").trim_matches('/'));
        let into_dir = copy.sources.len() > 1 || copy.destination.ends_with('/');
        for source in &copy.sources {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            let is_dir = repo_root().join(source).is_dir();
            for file in files_under(source)
                .into_iter()
                .filter(|f| !ignore.excludes(f))
            {
                // A directory's contents go into the destination; a file goes to it, or into it.
                let target = if is_dir {
                    destination.join(file.strip_prefix(&format!("{source}/")).expect("below"))
                } else if into_dir {
                    destination.join(Path::new(source).file_name().expect("file name"))
                } else {
                    destination.clone()
                };
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::copy(repo_root().join(&file), &target).expect("copy");
                // Keep mtimes, so cargo sees unchanged sources as fresh on the next run.
                let modified = std::fs::metadata(repo_root().join(&file))
                    .and_then(|meta| meta.modified())
                    .expect("mtime");
                std::fs::File::options()
                    .write(true)
                    .open(&target)
                    .and_then(|f| f.set_modified(modified))
                    .expect("set mtime");
            }
        }
    }
    let binary = Manifest::read().shipped_binary();
    let output = Command::new(env!("CARGO"))
        .args(["check", "--locked", "--offline", "--bin", &binary])
        .current_dir(&root)
        // The crate's own target directory: the dependencies `cargo clippy` / `cargo test` already
        // checked are reused (cargo test has released its lock by the time tests run), so only
        // this copy of the crate is checked.
        .env("CARGO_TARGET_DIR", repo_root().join("target"))
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "the build stage's context does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
