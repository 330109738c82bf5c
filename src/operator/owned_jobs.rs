//! The controller's local copy of the export Jobs, indexed by the ScheduledExport that controls
//! each one, so a reconcile reads its object's Jobs from memory.
//!
//! Asking the API server instead (a LIST by the owner-UID label, even from its watch cache) makes
//! it scan every Job in the namespace for each reconcile: a restart's pass over N objects with
//! their Job history costs the control plane N × Jobs, which the scale benchmark showed growing
//! faster than the number of objects. The copy is fed by the same watch that wakes reconciles, so
//! a reconcile a Job's change triggers always sees that change; it is no staler than the API
//! server's watch cache was, and a Job it has not seen yet is still caught by its deterministic
//! name (the create answers 409).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::operator::job;

/// Where a Job is filed: its namespace and name.
type JobKey = (String, String);

#[derive(Default)]
struct Index {
    /// Controller UID → the Jobs it controls, by name.
    by_owner: HashMap<String, BTreeMap<String, Arc<Job>>>,
    /// Each filed Job's controller UID, so an update that changes it or a delete that no longer
    /// names it still finds where the Job was filed.
    owner_of: HashMap<JobKey, String>,
}

impl Index {
    fn apply(&mut self, job: Job) {
        let key = key_of(&job);
        if self.holds_newer(&key, &job) {
            return;
        }
        self.remove(&key);
        if let Some(owner) = job::controller_uid(&job).map(str::to_owned) {
            self.by_owner
                .entry(owner.clone())
                .or_default()
                .insert(key.1.clone(), Arc::new(job));
            self.owner_of.insert(key, owner);
        }
    }

    /// Whether the filed copy is newer than `job`: the copy written through from a response can
    /// be ahead of the watch for a moment. resourceVersions are opaque to clients, but the API
    /// server's are etcd revisions, increasing integers; when either does not parse, the later
    /// event wins.
    fn holds_newer(&self, key: &JobKey, job: &Job) -> bool {
        let version = |job: &Job| {
            job.metadata
                .resource_version
                .as_deref()?
                .parse::<u64>()
                .ok()
        };
        let filed = self
            .owner_of
            .get(key)
            .and_then(|owner| self.by_owner.get(owner))
            .and_then(|jobs| jobs.get(&key.1));
        match (filed.and_then(|filed| version(filed)), version(job)) {
            (Some(filed), Some(incoming)) => filed > incoming,
            _ => false,
        }
    }

    fn remove(&mut self, key: &JobKey) {
        let Some(owner) = self.owner_of.remove(key) else {
            return;
        };
        if let Some(jobs) = self.by_owner.get_mut(&owner) {
            jobs.remove(&key.1);
            if jobs.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }
}

#[derive(Default)]
struct State {
    live: Index,
    /// A (re-)list in progress: filled by its pages and swapped in whole when it completes, so a
    /// Job deleted while the watch was down disappears and reconciles never see half a list.
    relisting: Option<Index>,
}

/// The export Jobs by controlling object. Cheap to clone; clones share one copy.
#[derive(Clone)]
pub struct OwnedJobs {
    state: Arc<RwLock<State>>,
    /// True once a complete list has been applied since the last [`OwnedJobs::reset`].
    ready: Arc<watch::Sender<bool>>,
}

impl Default for OwnedJobs {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            ready: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl OwnedJobs {
    /// Folds one watch event into the copy.
    pub fn apply(&self, event: &watcher::Event<Job>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(job) => state.live.apply(job.clone()),
            watcher::Event::Delete(job) => state.live.remove(&key_of(job)),
            watcher::Event::Init => state.relisting = Some(Index::default()),
            watcher::Event::InitApply(job) => {
                state
                    .relisting
                    .get_or_insert_with(Index::default)
                    .apply(job.clone());
            }
            watcher::Event::InitDone => {
                state.live = state.relisting.take().unwrap_or_default();
                drop(state);
                self.ready.send_replace(true);
            }
        }
    }

    /// Files a Job as the API server returned it from a write, so the next reconcile sees what
    /// this one wrote (a published-Event mark) even before the watch delivers it.
    pub fn written(&self, mut job: Job) {
        trim_for_cache(&mut job);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.live.apply(job);
    }

    /// The Jobs in `namespace` whose controller is the object with `owner_uid`, oldest name first.
    pub fn controlled_by(&self, namespace: &str, owner_uid: &str) -> Vec<Job> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .live
            .by_owner
            .get(owner_uid)
            .into_iter()
            .flat_map(BTreeMap::values)
            // Kubernetes ignores an owner in another namespace; so does the controller.
            .filter(|job| job.metadata.namespace.as_deref() == Some(namespace))
            .map(|job| Job::clone(job))
            .collect()
    }

    /// Waits until the copy holds a complete list, so no reconcile plans from a partial one.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Forgets everything: a new term as leader starts from a fresh list, never from what an
    /// earlier term saw before a gap.
    pub fn reset(&self) {
        self.ready.send_replace(false);
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = State::default();
    }
}

/// Drops what no reconcile reads from a cached Job: the Pod template (the larger part, with its
/// environment and volumes) and `managedFields`. What stays is metadata and status: the slot, run
/// kind and published-Event annotations, the owner, the conditions and times.
pub fn trim_for_cache(job: &mut Job) {
    job.metadata.managed_fields = None;
    job.spec = None;
}

fn key_of(job: &Job) -> JobKey {
    (job.namespace().unwrap_or_default(), job.name_any())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn job(namespace: &str, name: &str, owner: Option<&str>) -> Job {
        Job {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "exports.crm.dev/v1alpha1".into(),
                        kind: "ScheduledExport".into(),
                        name: "daily".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..ObjectMeta::default()
            },
            ..Job::default()
        }
    }

    fn names(jobs: &[Job]) -> Vec<String> {
        jobs.iter().map(ResourceExt::name_any).collect()
    }

    fn listed(jobs: &OwnedJobs, list: Vec<Job>) {
        jobs.apply(&watcher::Event::Init);
        for job in list {
            jobs.apply(&watcher::Event::InitApply(job));
        }
        jobs.apply(&watcher::Event::InitDone);
    }

    #[test]
    fn jobs_are_found_by_their_controller_and_namespace() {
        let jobs = OwnedJobs::default();
        listed(
            &jobs,
            vec![
                job("univ-a", "export-b", Some("uid-1")),
                job("univ-a", "export-a", Some("uid-1")),
                job("univ-a", "other", Some("uid-2")),
                job("univ-b", "elsewhere", Some("uid-1")),
                job("univ-a", "orphan", None),
            ],
        );
        assert_eq!(
            names(&jobs.controlled_by("univ-a", "uid-1")),
            ["export-a", "export-b"]
        );
        assert_eq!(names(&jobs.controlled_by("univ-a", "uid-2")), ["other"]);
        assert!(jobs.controlled_by("univ-a", "").is_empty());
    }

    #[test]
    fn a_non_controlling_owner_does_not_claim_a_job() {
        let jobs = OwnedJobs::default();
        let mut adopted = job("univ-a", "export-a", Some("uid-1"));
        if let Some(owners) = adopted.metadata.owner_references.as_mut() {
            owners[0].controller = Some(false);
        }
        jobs.apply(&watcher::Event::Apply(adopted));
        assert!(jobs.controlled_by("univ-a", "uid-1").is_empty());
    }

    #[test]
    fn updates_replace_and_deletes_remove_even_when_the_owner_changed() {
        let jobs = OwnedJobs::default();
        listed(&jobs, vec![job("univ-a", "export-a", Some("uid-1"))]);
        let mut finished = job("univ-a", "export-a", Some("uid-1"));
        finished.status = Some(JobStatus {
            succeeded: Some(1),
            ..JobStatus::default()
        });
        jobs.apply(&watcher::Event::Apply(finished));
        let seen = jobs.controlled_by("univ-a", "uid-1");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].status.as_ref().and_then(|s| s.succeeded), Some(1));

        // Orphaned by hand: no longer this object's run.
        jobs.apply(&watcher::Event::Apply(job("univ-a", "export-a", None)));
        assert!(jobs.controlled_by("univ-a", "uid-1").is_empty());

        jobs.apply(&watcher::Event::Apply(job(
            "univ-a",
            "export-a",
            Some("uid-2"),
        )));
        jobs.apply(&watcher::Event::Delete(job("univ-a", "export-a", None)));
        assert!(jobs.controlled_by("univ-a", "uid-2").is_empty());
    }

    fn at_version(mut job: Job, version: &str, annotation: Option<&str>) -> Job {
        job.metadata.resource_version = Some(version.into());
        job.metadata.annotations =
            annotation.map(|mark| [(mark.to_string(), "true".to_string())].into());
        job
    }

    #[test]
    fn a_written_copy_is_not_undone_by_an_older_watch_event() {
        let jobs = OwnedJobs::default();
        let fresh = || job("univ-a", "export-a", Some("uid-1"));
        listed(&jobs, vec![at_version(fresh(), "10", None)]);
        // The reconcile marks the Job; the watch still has an update from before the mark queued.
        jobs.written(at_version(fresh(), "12", Some("reported")));
        jobs.apply(&watcher::Event::Apply(at_version(fresh(), "11", None)));
        let seen = jobs.controlled_by("univ-a", "uid-1");
        assert!(seen[0].annotations().contains_key("reported"));
        // Then the watch catches up, and later changes apply as usual.
        jobs.apply(&watcher::Event::Apply(at_version(
            fresh(),
            "12",
            Some("reported"),
        )));
        jobs.apply(&watcher::Event::Apply(at_version(fresh(), "13", None)));
        let seen = jobs.controlled_by("univ-a", "uid-1");
        assert!(!seen[0].annotations().contains_key("reported"));
    }

    #[test]
    fn a_relist_replaces_the_copy_only_when_complete() {
        let jobs = OwnedJobs::default();
        listed(
            &jobs,
            vec![
                job("univ-a", "export-a", Some("uid-1")),
                job("univ-a", "export-b", Some("uid-1")),
            ],
        );
        jobs.apply(&watcher::Event::Init);
        jobs.apply(&watcher::Event::InitApply(job(
            "univ-a",
            "export-b",
            Some("uid-1"),
        )));
        // Mid-list, reconciles still read the last complete copy.
        assert_eq!(jobs.controlled_by("univ-a", "uid-1").len(), 2);
        jobs.apply(&watcher::Event::InitDone);
        // export-a was deleted while the watch was down.
        assert_eq!(names(&jobs.controlled_by("univ-a", "uid-1")), ["export-b"]);
    }

    #[tokio::test]
    async fn ready_only_after_a_complete_list_and_not_after_a_reset() {
        let jobs = OwnedJobs::default();
        jobs.apply(&watcher::Event::Init);
        let waiting = tokio::spawn({
            let jobs = jobs.clone();
            async move { jobs.wait_until_ready().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        jobs.apply(&watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("ready after the list")
            .expect("waiter");

        jobs.reset();
        assert!(!*jobs.ready.borrow());
        assert!(jobs.controlled_by("univ-a", "uid-1").is_empty());
    }

    #[test]
    fn the_cached_copy_keeps_metadata_and_status_only() {
        let mut cached = job("univ-a", "export-a", Some("uid-1"));
        cached.spec = Some(JobSpec::default());
        cached.metadata.managed_fields = Some(Vec::new());
        cached.status = Some(JobStatus::default());
        trim_for_cache(&mut cached);
        assert!(cached.spec.is_none());
        assert!(cached.metadata.managed_fields.is_none());
        assert!(cached.status.is_some());
        assert!(cached.metadata.owner_references.is_some());
    }
}
