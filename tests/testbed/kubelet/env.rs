//! What a container's process gets: the program (only this project's binary), its arguments with
//! `$(VAR)` expansion, and its environment from `env` and `envFrom`, resolved like the kubelet does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};

/// Variables of the stand-in's own environment that reach the Pods' processes; nothing else does, so
/// a Pod never inherits credentials (DATABASE_URL, AWS_*, KUBECONFIG, ...) from the test bed.
pub const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "LOG_FORMAT",
];

/// The container's argv after the program: `command[1..] + args` when command[0] is this project's
/// binary, `args` when command is empty (the image's entrypoint, which is the binary); anything
/// else is refused since the stand-in runs nothing but this project's binary.
pub fn program_args(container: &Container) -> std::result::Result<Vec<String>, String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    match command.split_first() {
        None => Ok(args),
        Some((program, rest))
            if program == "scheduled-exports" || program.ends_with("/scheduled-exports") =>
        {
            Ok(rest.iter().cloned().chain(args).collect())
        }
        Some((program, _)) => Err(format!(
            "container {:?} runs {program:?}: the test bed's kubelet stand-in runs only this project's binary \
             (command[0] must be scheduled-exports or end in /scheduled-exports, or command must be empty)",
            container.name
        )),
    }
}

/// Kubelet-style `$(VAR)` expansion: `$$` is a literal `$`, a reference to an undefined variable or
/// an unclosed `$(` stays as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) => {
                    let name = &tail[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push_str(&rest[pos..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Debug, Default, Clone)]
pub struct EnvList {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl EnvList {
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value.into());
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order
            .iter()
            .map(|n| (n.as_str(), self.values[n].as_str()))
    }

    pub fn map_values(&mut self, f: impl Fn(&str) -> String) {
        for value in self.values.values_mut() {
            *value = f(value);
        }
    }
}

/// Reads ConfigMaps and Secrets of the Pod's namespace once per Pod.
pub struct Refs {
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    cm_cache: HashMap<String, Option<BTreeMap<String, String>>>,
    secret_cache: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Refs {
    pub fn new(client: &Client, namespace: &str) -> Self {
        Refs {
            configmaps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            cm_cache: HashMap::new(),
            secret_cache: HashMap::new(),
        }
    }

    async fn configmap(&mut self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        if let Some(hit) = self.cm_cache.get(name) {
            return Ok(hit.clone());
        }
        let data = self.configmaps.get_opt(name).await?.map(|cm| {
            let mut data = cm.data.unwrap_or_default();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            data
        });
        self.cm_cache.insert(name.to_string(), data.clone());
        Ok(data)
    }

    async fn secret(&mut self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        if let Some(hit) = self.secret_cache.get(name) {
            return Ok(hit.clone());
        }
        let data = self.secrets.get_opt(name).await?.map(|secret| {
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect::<BTreeMap<_, _>>()
        });
        self.secret_cache.insert(name.to_string(), data.clone());
        Ok(data)
    }
}

/// `valueFrom.fieldRef` for the fields the downward API offers as environment variables.
fn field_ref(pod: &Pod, node_name: &str, path: &str) -> Result<String> {
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|s| s.strip_suffix("']"))
            .map(str::to_string)
    };
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => node_name.to_string(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => "127.0.0.1".into(),
        _ => {
            if let Some(key) = quoted("metadata.labels['") {
                pod.labels().get(&key).cloned().unwrap_or_default()
            } else if let Some(key) = quoted("metadata.annotations['") {
                pod.annotations().get(&key).cloned().unwrap_or_default()
            } else {
                bail!("fieldRef {path:?} is not supported")
            }
        }
    })
}

/// The container's own environment (`envFrom`, then `env`, later entries replacing earlier ones and
/// `$(VAR)` in values referring to variables defined before), as the kubelet builds it.
pub async fn container_env(
    refs: &mut Refs,
    pod: &Pod,
    node_name: &str,
    container: &Container,
) -> Result<EnvList> {
    let mut env = EnvList::default();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &source.config_map_ref {
            match refs.configmap(&cm.name).await? {
                Some(data) => data,
                None if cm.optional == Some(true) => continue,
                None => bail!("configmap {:?} not found (envFrom)", cm.name),
            }
        } else if let Some(secret) = &source.secret_ref {
            match refs.secret(&secret.name).await? {
                Some(data) => data,
                None if secret.optional == Some(true) => continue,
                None => bail!("secret {:?} not found (envFrom)", secret.name),
            }
        } else {
            continue;
        };
        for (key, value) in data {
            env.set(format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), |n| env.get(n)),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    field_ref(pod, node_name, &field.field_path)?
                } else if let Some(key) = &from.secret_key_ref {
                    let data = refs.secret(&key.name).await?;
                    match referenced_key(
                        "secret",
                        &key.name,
                        &key.key,
                        key.optional,
                        data,
                        &var.name,
                    )? {
                        Some(value) => value,
                        None => continue,
                    }
                } else if let Some(key) = &from.config_map_key_ref {
                    let data = refs.configmap(&key.name).await?;
                    match referenced_key(
                        "configmap",
                        &key.name,
                        &key.key,
                        key.optional,
                        data,
                        &var.name,
                    )? {
                        Some(value) => value,
                        None => continue,
                    }
                } else {
                    bail!(
                        "env {}: this valueFrom is not supported by the stand-in",
                        var.name
                    )
                }
            }
        };
        env.set(var.name.clone(), value);
    }
    Ok(env)
}

/// The value of a `secretKeyRef`/`configMapKeyRef`: `None` when it is absent and optional (the
/// variable is then left unset, as the kubelet does), an error when it is absent and required.
fn referenced_key(
    kind: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    data: Option<BTreeMap<String, String>>,
    variable: &str,
) -> Result<Option<String>> {
    match data.and_then(|data| data.get(key).cloned()) {
        Some(value) => Ok(Some(value)),
        None if optional == Some(true) => Ok(None),
        None => bail!("{kind} {name:?} or its key {key:?} not found (env {variable})"),
    }
}

/// Local directories standing in for the container's emptyDir mounts: mountPath -> directory,
/// longest mount path first.
pub fn empty_dir_mounts(
    pod: &Pod,
    container: &Container,
    volumes_dir: &Path,
) -> Vec<(String, PathBuf)> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            volumes
                .iter()
                .any(|v| v.name == m.name && v.empty_dir.is_some())
        })
        .map(|m| {
            let mut dir = volumes_dir.join(&m.name);
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                dir = dir.join(sub);
            }
            (m.mount_path.trim_end_matches('/').to_string(), dir)
        })
        .filter(|(path, _)| !path.is_empty())
        .collect();
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    mounts
}

/// Rewrites a value that is an emptyDir mount path, or a path below one, to the local directory.
pub fn rewrite_mount_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, dir) in mounts {
        if value == mount {
            return dir.display().to_string();
        }
        if let Some(rest) = value
            .strip_prefix(mount.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return dir.join(rest).display().to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_the_kubelet() {
        assert_eq!(expand("$(A)-$(A)", lookup), "x-x");
        assert_eq!(expand("$(B)", lookup), "$(B)");
        assert_eq!(expand("$$(A)", lookup), "$(A)");
        assert_eq!(expand("a$b$", lookup), "a$b$");
        assert_eq!(expand("$(A", lookup), "$(A");
        assert_eq!(expand("[$(EMPTY)]", lookup), "[]");
    }

    #[test]
    fn rewrites_mount_paths_only_at_component_boundaries() {
        let mounts = vec![("/spool".to_string(), PathBuf::from("/tmp/pod/spool"))];
        assert_eq!(rewrite_mount_path("/spool", &mounts), "/tmp/pod/spool");
        assert_eq!(
            rewrite_mount_path("/spool/a.csv", &mounts),
            "/tmp/pod/spool/a.csv"
        );
        assert_eq!(rewrite_mount_path("/spooler", &mounts), "/spooler");
    }
}
