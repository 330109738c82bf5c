//! The `Dockerfile` matches the crate, and the test bed builds the image it describes. This
//! machine has no container engine, so Docker never builds the image here; instead the Dockerfile
//! is parsed and its stages, paths, user and entrypoint are checked against `Cargo.toml`, the Job
//! builder, the binary itself and `tests/testbed/image/build` (which builds the same image from the
//! same recipe for the test bed's node), and the build stage's context (what its COPY instructions
//! take, after `.dockerignore`) is laid out in `target/dockerfile-context/build/` and compiled with
//! `cargo check --locked --offline`. The checks in `on_the_test_bed` read the image archive that
//! `tests/testbed/up` built; all others need no test bed.

mod common;

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

/// The Dockerfile's stages: `build` makes the release binary, `rootfs` lays out the runtime's
/// files with the shared recipe (tests/testbed/image/assemble), `runtime` is that tree FROM scratch.
struct Stages {
    build: Stage,
    rootfs: Stage,
    runtime: Stage,
}

fn dockerfile_stages() -> Stages {
    let mut stages = stages();
    assert_eq!(
        stages.len(),
        3,
        "a build, a rootfs and a runtime stage: {stages:#?}"
    );
    let runtime = stages.pop().expect("runtime stage");
    let rootfs = stages.pop().expect("rootfs stage");
    let build = stages.pop().expect("build stage");
    assert!(
        build.all("RUN").any(|run| run.args.contains("cargo build")),
        "the first stage builds the binary: {build:#?}"
    );
    Stages {
        build,
        rootfs,
        runtime,
    }
}

/// One `RUN DIR/assemble ...` of the rootfs stage, split into words.
#[derive(Debug)]
struct AssembleRun {
    script: String,
    args: Vec<String>,
}

/// The rootfs stage's RUN instructions, each a single call of the shared recipe: anything else
/// there (an `apt-get install`, a `chmod`) would be a difference from the test bed's image.
fn assemble_runs(rootfs: &Stage) -> Vec<AssembleRun> {
    rootfs
        .all("RUN")
        .map(|run| {
            let words: Vec<String> = split_words(&run.args)
                .into_iter()
                .map(str::to_string)
                .collect();
            assert!(
                words
                    .first()
                    .is_some_and(|word| word.ends_with("/assemble"))
                    && !words
                        .iter()
                        .any(|word| ["&&", "||", ";", "|"].contains(&word.as_str())),
                "the rootfs stage runs only the shared recipe, one call a RUN: RUN {}",
                run.args
            );
            AssembleRun {
                script: words[0].clone(),
                args: words[1..].to_vec(),
            }
        })
        .collect()
}

/// (the directory the rootfs stage assembles, the assemble run, the check run).
fn rootfs_recipe(rootfs: &Stage) -> (String, AssembleRun, AssembleRun) {
    let mut runs = assemble_runs(rootfs).into_iter();
    let (Some(assemble), Some(check), None) = (runs.next(), runs.next(), runs.next()) else {
        panic!("the rootfs stage runs `assemble ROOTFS DEBS`, then `assemble --check ROOTFS ...`");
    };
    assert_eq!(assemble.args.len(), 2, "assemble ROOTFS DEBS: {assemble:?}");
    let root = assemble.args[0].trim_end_matches('/').to_string();
    assert!(root.starts_with('/') && root != "/", "ROOTFS: {root}");
    assert_eq!(check.script, assemble.script, "one script");
    assert_eq!(check.args.first().map(String::as_str), Some("--check"));
    assert_eq!(
        check.args.get(1).map(|dir| dir.trim_end_matches('/')),
        Some(root.as_str()),
        "the check looks at the assembled directory: {check:?}"
    );
    (root, assemble, check)
}

/// `tests/testbed/image/build --print-plan`: what the test bed's image build does.
fn test_bed_build_plan() -> BTreeMap<String, String> {
    let output = Command::new(repo_root().join("tests/testbed/image/build"))
        .arg("--print-plan")
        .output()
        .expect("run tests/testbed/image/build --print-plan");
    assert!(
        output.status.success(),
        "build --print-plan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').expect("NAME=VALUE");
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Words of a Dockerfile argument list as a shell reads them: quotes group, backslash escapes.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    let mut quote = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.get_or_insert_with(String::new).push(c),
            (_, '\\') => word.get_or_insert_with(String::new).extend(chars.next()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quotes: {text}");
    words.extend(word);
    words
}

/// `NAME=value` pairs of the stage's instructions with this keyword (ENV, LABEL), in order.
fn pairs(stage: &Stage, keyword: &str) -> Vec<(String, String)> {
    stage
        .all(keyword)
        .flat_map(|instruction| shell_words(&instruction.args))
        .map(|word| {
            let (name, value) = word
                .split_once('=')
                .unwrap_or_else(|| panic!("{keyword} {word}: expected NAME=value"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The image config Docker gives the runtime stage (the parts a FROM scratch image has).
fn expected_image_config(runtime: &Stage) -> serde_json::Value {
    let mut config = serde_json::Map::new();
    if let Some(user) = runtime.last("USER") {
        config.insert("User".into(), user.args.clone().into());
    }
    if let Some(entrypoint) = runtime.last("ENTRYPOINT") {
        config.insert("Entrypoint".into(), exec_form(entrypoint).into());
    }
    if let Some(command) = runtime.last("CMD") {
        config.insert("Cmd".into(), exec_form(command).into());
    }
    if runtime.last("WORKDIR").is_some() {
        let workdir = runtime.workdir_at(runtime.instructions.len());
        config.insert("WorkingDir".into(), workdir.into());
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in pairs(runtime, "ENV") {
        match env.iter_mut().find(|(known, _)| *known == name) {
            Some(entry) => entry.1 = value,
            None => env.push((name, value)),
        }
    }
    if !env.is_empty() {
        let env: Vec<String> = env
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        config.insert("Env".into(), env.into());
    }
    let labels: serde_json::Map<String, serde_json::Value> = pairs(runtime, "LABEL")
        .into_iter()
        .map(|(name, value)| (name, value.into()))
        .collect();
    if !labels.is_empty() {
        config.insert("Labels".into(), labels.into());
    }
    serde_json::Value::Object(config)
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

    let Stages { build, .. } = dockerfile_stages();
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
fn the_builders_rust_is_at_least_the_crates_rust_version_and_the_runtime_is_its_debian() {
    let manifest = Manifest::read();
    let required = version_tuple(&manifest.package["rust-version"]);
    let Stages {
        build,
        rootfs,
        runtime,
    } = dockerfile_stages();
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

    // The binary links the builder's glibc, libssl and libz dynamically: the runtime's packages
    // come from the same Debian release (the rootfs stage downloads them for its own release).
    let (repository, rootfs_tag) = rootfs
        .image
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("pin the rootfs stage's Debian release: {}", rootfs.image));
    assert!(
        repository.ends_with("/debian") || repository == "debian",
        "the rootfs stage starts from the official debian image: {}",
        rootfs.image
    );
    assert!(
        rootfs_tag == debian || rootfs_tag.starts_with(&format!("{debian}-")),
        "the runtime's packages come from {debian}, like the builder's: {}",
        rootfs.image
    );
    assert_eq!(runtime.image, "scratch", "the runtime has no base image");
}

#[test]
fn the_runtime_is_the_assembled_tree_with_the_binary_from_where_the_build_stage_produced_it() {
    let binary = Manifest::read().shipped_binary();
    let Stages {
        build,
        rootfs,
        runtime,
    } = dockerfile_stages();
    let build_name = build.name.clone().expect("the build stage is named");
    let rootfs_name = rootfs.name.clone().expect("the rootfs stage is named");
    let build_index = build
        .instructions
        .iter()
        .rposition(|run| run.keyword == "RUN" && run.args.contains("cargo build"))
        .expect("cargo build");
    let produced = format!(
        "{}/target/release/{binary}",
        build.workdir_at(build_index).trim_end_matches('/')
    );
    let (root, _, _) = rootfs_recipe(&rootfs);

    let from_build: Vec<Copy> = rootfs
        .all("COPY")
        .map(parse_copy)
        .filter(|copy| copy.from.is_some())
        .collect();
    assert_eq!(
        from_build.len(),
        1,
        "the rootfs stage takes one file from another stage, the binary: {from_build:?}"
    );
    assert_eq!(from_build[0].from.as_deref(), Some(build_name.as_str()));
    assert_eq!(from_build[0].sources, vec![produced]);
    assert_eq!(
        from_build[0].destination,
        format!("{root}/usr/local/bin/{binary}")
    );

    let copies: Vec<Copy> = runtime.all("COPY").map(parse_copy).collect();
    assert_eq!(
        copies.len(),
        1,
        "the runtime stage is one COPY of the assembled tree: {copies:?}"
    );
    assert_eq!(copies[0].from.as_deref(), Some(rootfs_name.as_str()));
    assert_eq!(copies[0].sources, vec![format!("{root}/")]);
    assert_eq!(copies[0].destination, "/");
}

#[test]
fn the_entrypoint_is_the_binary_and_the_default_command_is_the_controller() {
    let binary = Manifest::read().shipped_binary();
    let Stages { runtime, .. } = dockerfile_stages();
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
    let Stages { runtime, .. } = dockerfile_stages();
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
    let Stages { runtime, .. } = dockerfile_stages();
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

/// Where each file of the stage's context copies lands: (image path, repository path).
fn context_files_in_image(stage: &Stage, ignore: &DockerIgnore) -> BTreeMap<String, String> {
    let mut placed = BTreeMap::new();
    for (index, copy) in context_copies(stage) {
        let destination = if copy.destination.starts_with('/') {
            copy.destination.clone()
        } else {
            format!(
                "{}/{}",
                stage.workdir_at(index).trim_end_matches('/'),
                copy.destination.trim_start_matches("./")
            )
        };
        let into_dir = copy.sources.len() > 1 || destination.ends_with('/');
        let destination = destination.trim_end_matches('/').to_string();
        for source in &copy.sources {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            let is_dir = repo_root().join(source).is_dir();
            for file in files_under(source)
                .into_iter()
                .filter(|file| !ignore.excludes(file))
            {
                let target = if is_dir {
                    format!(
                        "{destination}/{}",
                        file.strip_prefix(&format!("{source}/")).expect("below")
                    )
                } else if into_dir {
                    format!("{destination}/{}", file.rsplit('/').next().expect("name"))
                } else {
                    destination.clone()
                };
                placed.insert(target, file);
            }
        }
    }
    placed
}

#[test]
fn the_build_context_holds_everything_the_stages_copy() {
    let ignore = DockerIgnore::read();
    for (path, excluded) in [
        ("target/debug/scheduled-exports", true),
        (".git/HEAD", true),
        ("tests/controller.rs", true),
        ("tests/testbed/image/build", true),
        ("src/main.rs", false),
        ("tests/testbed/image/packages", false),
    ] {
        assert_eq!(
            ignore.excludes(path),
            excluded,
            ".dockerignore should {}exclude {path}",
            if excluded { "" } else { "not " }
        );
    }

    let Stages { build, rootfs, .. } = dockerfile_stages();
    let mut build_copied = Vec::new();
    for (stage, copies) in [
        ("build", context_copies(&build)),
        ("rootfs", context_copies(&rootfs)),
    ] {
        assert!(
            !copies.is_empty(),
            "the {stage} stage copies from the context"
        );
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
                    if stage == "build" {
                        build_copied.push(file);
                    }
                }
            }
        }
    }
    for needed in Manifest::read().files_cargo_needs() {
        assert!(
            build_copied.contains(&needed),
            "cargo needs {needed}, which the build stage does not copy"
        );
    }
}

/// The Dockerfile's rootfs stage and tests/testbed/image/build make the image from one recipe:
/// the same script with the same package list and files, the same cargo command, the binary at
/// the same path, the same check.
#[test]
fn the_test_bed_builds_the_image_with_the_dockerfiles_recipe() {
    let binary = Manifest::read().shipped_binary();
    let Stages {
        build,
        rootfs,
        runtime,
    } = dockerfile_stages();
    let plan = test_bed_build_plan();
    let (root, assemble, check) = rootfs_recipe(&rootfs);

    // The script the Dockerfile runs is the one the test bed runs, with every file it reads (the
    // package list, rootfs/) beside it; only the test bed's own driver and archive writer stay out.
    let recipe_dir = "tests/testbed/image";
    assert_eq!(plan["assemble"], format!("{recipe_dir}/assemble"));
    let script_dir = assemble
        .script
        .strip_suffix("/assemble")
        .expect("DIR/assemble");
    let in_image = context_files_in_image(&rootfs, &DockerIgnore::read());
    let expected: BTreeMap<String, String> = files_under(recipe_dir)
        .into_iter()
        .filter(|file| ![format!("{recipe_dir}/build"), plan["oci"].clone()].contains(file))
        .map(|file| {
            let relative = file.strip_prefix(&format!("{recipe_dir}/")).expect("below");
            (format!("{script_dir}/{relative}"), file.clone())
        })
        .collect();
    assert!(
        expected.contains_key(&format!("{script_dir}/packages")),
        "the package list is part of the recipe: {expected:?}"
    );
    assert_eq!(
        in_image, expected,
        "the rootfs stage copies the recipe, all of it and nothing else, beside its script"
    );
    let script = std::fs::read_to_string(repo_root().join(&plan["assemble"])).expect("assemble");
    assert!(
        script.contains("\"$here/packages\"") && script.contains("\"$here/rootfs"),
        "assemble reads the package list and rootfs/ from beside itself"
    );

    let cargo_build = build
        .all("RUN")
        .filter(|run| run.args.contains("cargo build"))
        .last()
        .expect("cargo build");
    assert_eq!(
        split_words(&cargo_build.args),
        split_words(&plan["cargo"]),
        "the test bed builds the binary as the Dockerfile does"
    );

    let installed = format!("/usr/local/bin/{binary}");
    let binary_copy = rootfs
        .all("COPY")
        .map(parse_copy)
        .find(|copy| copy.from.is_some())
        .expect("the rootfs stage copies the binary");
    assert_eq!(binary_copy.destination, format!("{root}{installed}"));
    let position = |keyword: &str, needle: &str| {
        rootfs
            .instructions
            .iter()
            .position(|instruction| {
                instruction.keyword == keyword && instruction.args.contains(needle)
            })
            .expect("instruction")
    };
    assert!(
        position("COPY", "--from=") < position("RUN", "--check"),
        "the check runs the binary, so it comes after the binary's COPY"
    );
    assert_eq!(plan["binary"], installed);
    assert_eq!(
        exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT")),
        vec![plan["binary"].clone()]
    );
    assert_eq!(
        check.args[2..].join(" "),
        plan["check"],
        "the same check of the assembled tree"
    );
    assert_eq!(
        plan["dockerfile"], "Dockerfile",
        "the test bed's image takes its config from this Dockerfile"
    );
}

/// The test bed's archive writer reads the config from the Dockerfile's final stage; its reading
/// must be Docker's (as modelled here): user, entrypoint, command, environment, working directory,
/// labels.
#[test]
fn the_test_bed_image_config_is_the_dockerfiles() {
    let Stages { runtime, .. } = dockerfile_stages();
    let plan = test_bed_build_plan();
    let output = Command::new("python3")
        .arg(repo_root().join(&plan["oci"]))
        .arg("config")
        .arg(repo_root().join("Dockerfile"))
        .output()
        .expect("run python3 oci.py config");
    assert!(
        output.status.success(),
        "oci.py config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(config, expected_image_config(&runtime));
    assert_eq!(config["User"], "65532:65532");
}

/// The archive is a function of the tree's content alone: mtimes do not matter, any content change
/// gives another tag (so a Pod never runs a stale image under an old name).
#[test]
fn the_test_bed_archive_is_deterministic_and_tagged_by_its_content() {
    let plan = test_bed_build_plan();
    let scratch = repo_root().join("target/dockerfile-archive");
    let _ = std::fs::remove_dir_all(&scratch);
    let root = scratch.join("rootfs");
    std::fs::create_dir_all(root.join("usr/local/bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(
        root.join("etc/passwd"),
        "nonroot:x:65532:65532::/:/sbin/nologin\n",
    )
    .expect("write");
    let program = root.join("usr/local/bin/program");
    std::fs::write(&program, "first").expect("write");

    let write = |name: &str| -> (String, Vec<u8>) {
        let archive = scratch.join(name);
        let output = Command::new("python3")
            .arg(repo_root().join(&plan["oci"]))
            .args(["write", "--architecture", "amd64"])
            .arg("--repository")
            .arg(&plan["repository"])
            .arg("--rootfs")
            .arg(&root)
            .arg("--dockerfile")
            .arg(repo_root().join("Dockerfile"))
            .arg("--output")
            .arg(&archive)
            .output()
            .expect("run python3 oci.py write");
        assert!(
            output.status.success(),
            "oci.py write failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let reference = String::from_utf8(output.stdout).expect("utf-8");
        (
            reference.trim().to_string(),
            std::fs::read(&archive).expect("archive"),
        )
    };
    let (first, first_bytes) = write("first.tar");
    assert!(
        first.starts_with(&format!("{}:testbed-", plan["repository"])),
        "{first}"
    );
    std::fs::File::options()
        .write(true)
        .open(&program)
        .and_then(|file| {
            file.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
            )
        })
        .expect("set mtime");
    let (again, again_bytes) = write("again.tar");
    assert_eq!(again, first, "an mtime is not content");
    assert!(
        again_bytes == first_bytes,
        "the same tree gives the same bytes"
    );

    std::fs::write(&program, "second").expect("write");
    let (changed, _) = write("changed.tar");
    assert_ne!(changed, first, "another binary, another tag");
}

/// Every shared library the binary loads is in a package of the runtime's list (resolved on this
/// Debian machine with `ldd` and `dpkg -S`), so a new dependency that links another system library
/// fails here before any image is built.
#[test]
fn every_library_the_binary_links_comes_from_a_listed_package() {
    let packages: Vec<String> =
        std::fs::read_to_string(repo_root().join("tests/testbed/image/packages"))
            .expect("packages")
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim().to_string())
            .filter(|line| !line.is_empty())
            .collect();
    let output = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_scheduled-exports"))
        .output()
        .expect("run ldd");
    assert!(output.status.success(), "ldd failed");
    let listing = String::from_utf8(output.stdout).expect("utf-8");
    let mut libraries = Vec::new();
    for line in listing.lines().map(str::trim) {
        assert!(!line.contains("not found"), "ldd: {line}");
        let path = match line.split_once(" => ") {
            Some((_, resolved)) => resolved.split_whitespace().next().unwrap_or(""),
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libraries.push(path.to_string());
        }
    }
    assert!(
        libraries.iter().any(|path| path.ends_with("/libc.so.6")),
        "ldd lists the libraries: {listing}"
    );
    for library in &libraries {
        // dpkg records the path a package ships (/lib/... or /usr/lib/...); with merged /usr the
        // loader may name the other one.
        let candidates = [
            library.clone(),
            format!("/usr{library}"),
            library.strip_prefix("/usr").unwrap_or(library).to_string(),
        ];
        let owner = candidates
            .iter()
            .find_map(|candidate| {
                let output = Command::new("dpkg").args(["-S", candidate]).output().ok()?;
                output.status.success().then(|| {
                    let text = String::from_utf8_lossy(&output.stdout).to_string();
                    text.split(':').next().unwrap_or("").trim().to_string()
                })
            })
            .unwrap_or_else(|| panic!("no Debian package owns {library}"));
        assert!(
            packages.contains(&owner),
            "the binary loads {library} from {owner}, which tests/testbed/image/packages lacks"
        );
    }
}

#[test]
fn the_dependency_layer_stubs_every_target_cargo_needs() {
    let Stages { build, .. } = dockerfile_stages();
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
    let Stages { build, .. } = dockerfile_stages();
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
        // A target directory of its own, inside the crate's (which CI keeps outside the clone, so
        // it stays warm): cargo names a path package's build by name and version, not by path, so
        // checking this copy in the crate's own directory would record the copy's sources as the
        // crate's, and later builds of the real tree would look fresh while they are stale.
        .env(
            "CARGO_TARGET_DIR",
            std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"))
                .join("dockerfile-check"),
        )
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "the build stage's context does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Checks of the image the test bed built (`tests/testbed/up` runs tests/testbed/image/build and
/// exports the archive's path and the image's name in `target/testbed/env`).
mod on_the_test_bed {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// An OCI image archive, unpacked: its index, manifest and config, and where its layer is.
    struct Archive {
        _dir: tempfile::TempDir,
        index: serde_json::Value,
        config: serde_json::Value,
        layer: PathBuf,
    }

    fn tar(args: &[&str], path: &Path) -> Vec<u8> {
        let output = Command::new("tar")
            .args(args)
            .arg(path)
            .output()
            .expect("run tar");
        assert!(
            output.status.success(),
            "tar {args:?} {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn blob(dir: &Path, digest: &serde_json::Value) -> PathBuf {
        let digest = digest.as_str().expect("digest");
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = dir.join("blobs/sha256").join(hex);
        assert!(path.is_file(), "no blob {digest}");
        // sha256sum, not the sha2 crate: unoptimised test builds hash the 50 MB layer slowly.
        let output = Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("run sha256sum");
        assert!(output.status.success(), "sha256sum {}", path.display());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .next(),
            Some(hex),
            "blob {digest} does not match its digest"
        );
        path
    }

    /// The test bed's value, unless the process environment sets it (to check an archive that
    /// `tests/testbed/image/build --output FILE` wrote).
    fn setting(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| common::env_var(name))
    }

    fn unpack_archive() -> Archive {
        let archive = PathBuf::from(setting("SCHEDULED_EXPORTS_IMAGE_ARCHIVE"));
        let dir = tempfile::tempdir_in(repo_root().join("target")).expect("temp dir");
        let output = Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .output()
            .expect("run tar");
        assert!(output.status.success(), "unpack {}", archive.display());
        let read_json = |path: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
        };
        let index = read_json(&dir.path().join("index.json"));
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 1, "one image: {index}");
        let manifest = read_json(&blob(dir.path(), &manifests[0]["digest"]));
        let config_path = blob(dir.path(), &manifest["config"]["digest"]);
        let config = read_json(&config_path);
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 1, "one layer: {manifest}");
        let layer = blob(dir.path(), &layers[0]["digest"]);
        assert_eq!(
            config["rootfs"]["diff_ids"][0], layers[0]["digest"],
            "an uncompressed layer is its own diff id"
        );
        Archive {
            _dir: dir,
            index,
            config,
            layer,
        }
    }

    /// (mode, owner, path) of every entry of the layer, from `tar -tv`.
    fn layer_entries(layer: &Path) -> Vec<(String, String, String)> {
        let listing = tar(&["--numeric-owner", "--utc", "-tvf"], layer);
        String::from_utf8(listing)
            .expect("utf-8")
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                assert!(fields.len() >= 6, "tar -tv line: {line}");
                assert_eq!(
                    (fields[3], fields[4]),
                    ("1970-01-01", "00:00"),
                    "every mtime is fixed: {line}"
                );
                let path = fields[5].trim_end_matches('/').to_string();
                (fields[0].to_string(), fields[1].to_string(), path)
            })
            .collect()
    }

    #[test]
    fn the_test_bed_image_is_named_and_configured_as_the_dockerfile_says() {
        let archive = unpack_archive();
        let image = setting("SCHEDULED_EXPORTS_IMAGE");
        let annotations = &archive.index["manifests"][0]["annotations"];
        assert_eq!(annotations["io.containerd.image.name"], image.as_str());
        let (_, tag) = image.rsplit_once(':').expect("a tagged name");
        assert!(
            tag.starts_with("testbed-"),
            "a content-derived tag: {image}"
        );
        assert_eq!(annotations["org.opencontainers.image.ref.name"], tag);

        let Stages { runtime, .. } = dockerfile_stages();
        assert_eq!(archive.config["config"], expected_image_config(&runtime));
        assert_eq!(archive.config["config"]["User"], "65532:65532");
        assert_eq!(
            archive.config["config"]["Entrypoint"],
            serde_json::json!(["/usr/local/bin/scheduled-exports"])
        );
        assert_eq!(archive.config["os"], "linux");
    }

    #[test]
    fn the_test_bed_image_is_the_binary_on_a_distroless_base() {
        let archive = unpack_archive();
        let entries = layer_entries(&archive.layer);
        let entry = |path: &str| {
            entries
                .iter()
                .find(|(_, _, name)| name == path)
                .unwrap_or_else(|| panic!("the image has no {path}"))
        };
        let (mode, owner, _) = entry("usr/local/bin/scheduled-exports");
        assert_eq!((mode.as_str(), owner.as_str()), ("-rwxr-xr-x", "0/0"));
        let (mode, owner, _) = entry("tmp");
        assert_eq!((mode.as_str(), owner.as_str()), ("drwxrwxrwt", "0/0"));
        let (mode, owner, _) = entry("home/nonroot");
        assert_eq!(
            (mode.as_str(), owner.as_str()),
            ("drwx------", "65532/65532")
        );
        entry("etc/ssl/certs/ca-certificates.crt");

        let forbidden = [
            "sh", "bash", "dash", "ash", "zsh", "busybox", "dpkg", "apt", "apt-get",
        ];
        for (mode, _, path) in &entries {
            let name = path.rsplit('/').next().unwrap_or(path);
            assert!(
                mode.starts_with('d') || !forbidden.contains(&name),
                "the image has a shell or package manager: {path}"
            );
        }

        let file = |path: &str| {
            let output = Command::new("tar")
                .arg("-xOf")
                .arg(&archive.layer)
                .arg(path)
                .output()
                .expect("run tar");
            assert!(output.status.success(), "read {path} from the layer");
            String::from_utf8(output.stdout).expect("utf-8")
        };
        let passwd = file("etc/passwd");
        for user in [
            "root:x:0:0:",
            "nobody:x:65534:65534:",
            "nonroot:x:65532:65532:",
        ] {
            assert!(
                passwd.lines().any(|line| line.starts_with(user)),
                "/etc/passwd lacks {user}: {passwd}"
            );
        }
        let group = file("etc/group");
        assert!(
            group
                .lines()
                .any(|line| line.starts_with("nonroot:x:65532:")),
            "/etc/group lacks nonroot: {group}"
        );
        let certificates = file("etc/ssl/certs/ca-certificates.crt")
            .matches("-----BEGIN CERTIFICATE-----")
            .count();
        assert!(
            certificates >= 100,
            "the CA bundle has {certificates} certificates"
        );
    }

    /// The image's files alone run the binary as 65532: every shared library resolves inside, and
    /// time zones need no tz database (there is none).
    #[test]
    fn the_binary_runs_in_the_test_bed_image_as_nonroot() {
        let archive = unpack_archive();
        let root = tempfile::tempdir_in(repo_root().join("target")).expect("temp dir");
        // The image's `/`: nonroot must be able to look inside (tempdir makes it 0700).
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let output = Command::new("tar")
            .args(["--numeric-owner", "--same-owner", "-p", "-xf"])
            .arg(&archive.layer)
            .arg("-C")
            .arg(root.path())
            .output()
            .expect("run tar");
        assert!(output.status.success(), "unpack the layer");
        assert!(
            !root.path().join("usr/share/zoneinfo").exists(),
            "no tz database in the image"
        );

        let env: Vec<String> = archive.config["config"]["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .map(|value| value.as_str().expect("string").to_string())
            .collect();
        // By path: the environment below is the image's, whose PATH has no sbin.
        let output = Command::new("/usr/sbin/chroot")
            .arg("--userspec=65532:65532")
            .arg(root.path())
            .args([
                "/usr/local/bin/scheduled-exports",
                "next",
                "--time",
                "07:00",
                "--time-zone",
                "Europe/Paris",
                "--after",
                "2026-01-01T00:00:00Z",
                "--count",
                "1",
            ])
            .env_clear()
            .envs(env.iter().filter_map(|pair| pair.split_once('=')))
            .output()
            .expect("run chroot (the test bed runs as root)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the binary does not run in the image: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        // 07:00 in Paris on 1 January is 06:00 UTC.
        assert!(
            stdout.contains("2026-01-01T06:00:00Z"),
            "next run: {stdout}"
        );
    }
}
