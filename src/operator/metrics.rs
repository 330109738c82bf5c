//! Prometheus metrics of the operator, served on `/metrics` in the OpenMetrics text format.
//!
//! Counters are this replica's since it started (Prometheus handles resets). "Seconds until next
//! run" and "preflight failing" are computed from the objects' status at scrape time, so they
//! never go stale between reconciles and are right after a leader change.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::resource::{CheckResult, ConditionType, FileType, ScheduledExport};

/// Every file type and check result, so each counter series exists at 0 from the start: an alert on
/// `increase()` then sees the first failure, which a series born at 1 would hide.
const FILE_TYPES: [FileType; 3] = [
    FileType::Interactions,
    FileType::Proposals,
    FileType::Constituents,
];
const CHECK_RESULTS: [CheckResult; 5] = [
    CheckResult::Present,
    CheckResult::Moved,
    CheckResult::Recopied,
    CheckResult::Unreachable,
    CheckResult::Missing,
];

/// Fails to compile when a file type or a check result is added without being listed above.
#[allow(dead_code)]
fn listed(file_type: FileType, result: CheckResult) {
    match file_type {
        FileType::Interactions | FileType::Proposals | FileType::Constituents => {}
    }
    match result {
        CheckResult::Present
        | CheckResult::Moved
        | CheckResult::Recopied
        | CheckResult::Unreachable
        | CheckResult::Missing
        | CheckResult::Unknown => {}
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub file_type: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileTypeLabels {
    pub file_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// A `delivery.lastCheckResult` value.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `delivered`, `failed` (refused, or every attempt failed), `invalid_secret` or `dropped`
    /// (the queue was full).
    pub result: String,
}

/// Every `result` of the webhook deliveries counter, each series exported from the start.
pub const WEBHOOK_RESULTS: [&str; 4] = ["delivered", "failed", "invalid_secret", "dropped"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileFailureLabels {
    /// What failed: `kubernetes_api`, `job`, `job_name_conflict`, `no_namespace`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PreflightLabels {
    /// `passed` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PreflightFailingLabels {
    pub namespace: String,
    pub name: String,
    /// The Preflight condition's reason.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Export runs last from seconds (a small institution) to an hour (the Job's deadline).
fn duration_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub rows_exported: Family<FileTypeLabels, Counter>,
    pub bytes_exported: Family<FileTypeLabels, Counter>,
    pub export_duration: HistogramFamily<FileTypeLabels>,
    pub rechecks: Family<CheckLabels, Counter>,
    pub recopies: Counter,
    pub files_pruned: Counter,
    pub sftp_connections: Counter,
    pub reconcile_errors: Counter,
    pub reconciles: Counter,
    pub reconcile_failures: Family<ReconcileFailureLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub leader: Gauge,
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    next_run_seconds: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    pub preflight_checks: Family<PreflightLabels, Counter>,
    /// One series per object whose Preflight condition is False (none for the others, so the
    /// series count follows the failures, not the objects).
    preflight_failing: Family<PreflightFailingLabels, Gauge>,
    /// The controller's cache of objects, while this replica runs the controller.
    objects: Mutex<Option<Store<ScheduledExport>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scheduled_exports");
        let metrics = Self {
            runs: Family::default(),
            rows_exported: Family::default(),
            bytes_exported: Family::default(),
            export_duration: Family::new_with_constructor(duration_histogram),
            rechecks: Family::default(),
            recopies: Counter::default(),
            files_pruned: Counter::default(),
            sftp_connections: Counter::default(),
            reconcile_errors: Counter::default(),
            reconciles: Counter::default(),
            reconcile_failures: Family::default(),
            // A reconcile is a handful of API calls: milliseconds, seconds when the server is slow.
            reconcile_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            leader: Gauge::default(),
            webhook_deliveries: Family::default(),
            next_run_seconds: Family::default(),
            preflight_checks: Family::default(),
            preflight_failing: Family::default(),
            objects: Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "runs",
            "Export runs that ended, by file type and outcome (succeeded, failed)",
            metrics.runs.clone(),
        );
        registry.register(
            "rows_exported",
            "Rows written to delivered files",
            metrics.rows_exported.clone(),
        );
        registry.register(
            "bytes_exported",
            "Bytes of delivered files",
            metrics.bytes_exported.clone(),
        );
        registry.register(
            "export_duration_seconds",
            "Wall time of successful export Jobs, from start to completion",
            metrics.export_duration.clone(),
        );
        registry.register(
            "rechecks",
            "Checks of delivered files, by result (present, moved, recopied, unreachable, missing)",
            metrics.rechecks.clone(),
        );
        registry.register(
            "recopies",
            "Delivered files copied again after they went missing",
            metrics.recopies.clone(),
        );
        registry.register(
            "files_pruned",
            "Files deleted by retention",
            metrics.files_pruned.clone(),
        );
        registry.register(
            "sftp_connections",
            "SFTP connections opened by check rounds (one per destination per round)",
            metrics.sftp_connections.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and will be retried",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles run, successful or not",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            metrics.reconcile_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of one reconcile",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the controller (holds the leader Lease), else 0",
            metrics.leader.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Alerts sent to spec.notify webhooks, by result (delivered, failed, invalid_secret, dropped)",
            metrics.webhook_deliveries.clone(),
        );
        registry.register(
            "next_run_seconds",
            "Seconds until each object's next scheduled run (negative while a due run waits)",
            metrics.next_run_seconds.clone(),
        );
        registry.register(
            "preflight_checks",
            "Preflight checks of what runs need, by result (passed, failed)",
            metrics.preflight_checks.clone(),
        );
        registry.register(
            "preflight_failing",
            "1 for each object whose Preflight condition is False, labelled with its reason",
            metrics.preflight_failing.clone(),
        );
        metrics.create_zero_series();
        Self {
            registry,
            ..metrics
        }
    }

    /// Creating a family's series is enough: it is exposed at 0 until counted.
    fn create_zero_series(&self) {
        for file_type in FILE_TYPES {
            let labels = FileTypeLabels {
                file_type: file_type.as_str().to_string(),
            };
            for outcome in ["succeeded", "failed"] {
                let _ = self.runs.get_or_create(&RunLabels {
                    file_type: labels.file_type.clone(),
                    outcome: outcome.to_string(),
                });
            }
            let _ = self.rows_exported.get_or_create(&labels);
            let _ = self.bytes_exported.get_or_create(&labels);
            let _ = self.export_duration.get_or_create(&labels);
        }
        for result in WEBHOOK_RESULTS {
            let _ = self.webhook_deliveries.get_or_create(&WebhookLabels {
                result: result.to_string(),
            });
        }
        for result in ["passed", "failed"] {
            let _ = self.preflight_checks.get_or_create(&PreflightLabels {
                result: result.to_string(),
            });
        }
        for result in CHECK_RESULTS {
            let _ = self.rechecks.get_or_create(&CheckLabels {
                result: result.to_string(),
            });
        }
    }

    /// Gives the scrape access to the controller's object cache (`None` when it stops).
    pub fn watch_objects(&self, store: Option<Store<ScheduledExport>>) {
        *self
            .objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = store;
    }

    /// The OpenMetrics text of every metric, as of `now`.
    pub fn encode(&self, now: DateTime<Utc>) -> Result<String, std::fmt::Error> {
        self.refresh_object_gauges(now);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The per-object gauges (next run, failing preflight), from the objects' status as cached.
    fn refresh_object_gauges(&self, now: DateTime<Utc>) {
        self.next_run_seconds.clear();
        self.preflight_failing.clear();
        let store = self
            .objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for object in store.iter().flat_map(|store| store.state()) {
            let failing = object.status.as_ref().and_then(|status| {
                crate::status::condition(&status.conditions, ConditionType::Preflight)
                    .filter(|condition| condition.status == "False")
            });
            if let Some(condition) = failing {
                let labels = PreflightFailingLabels {
                    namespace: object.namespace().unwrap_or_default(),
                    name: object.name_any(),
                    reason: condition.reason.clone(),
                };
                self.preflight_failing.get_or_create(&labels).set(1);
            }
            let Some(next) = object.status.as_ref().and_then(|s| s.next_run_time) else {
                continue;
            };
            let labels = ObjectLabels {
                namespace: object.namespace().unwrap_or_default(),
                name: object.name_any(),
            };
            // Milliseconds fit an f64 exactly for any realistic distance.
            #[allow(clippy::cast_precision_loss)]
            let seconds = (next - now).num_milliseconds() as f64 / 1000.0;
            self.next_run_seconds.get_or_create(&labels).set(seconds);
        }
    }

    pub fn record_webhook_delivery(&self, result: &str) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn record_run(&self, file_type: &str, succeeded: bool) {
        self.runs
            .get_or_create(&RunLabels {
                file_type: file_type.to_string(),
                outcome: if succeeded { "succeeded" } else { "failed" }.to_string(),
            })
            .inc();
    }

    pub fn record_delivery(&self, file_type: &str, rows: u64, bytes: u64, seconds: Option<f64>) {
        let labels = FileTypeLabels {
            file_type: file_type.to_string(),
        };
        self.rows_exported.get_or_create(&labels).inc_by(rows);
        self.bytes_exported.get_or_create(&labels).inc_by(bytes);
        if let Some(seconds) = seconds {
            self.export_duration.get_or_create(&labels).observe(seconds);
        }
    }

    /// One preflight check ended.
    pub fn record_preflight(&self, passed: bool) {
        self.preflight_checks
            .get_or_create(&PreflightLabels {
                result: if passed { "passed" } else { "failed" }.to_string(),
            })
            .inc();
    }

    pub fn record_check(&self, result: CheckResult) {
        self.rechecks
            .get_or_create(&CheckLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// One reconcile ended after `seconds`; `failure` names what failed, if anything did.
    pub fn record_reconcile(&self, seconds: f64, failure: Option<&str>) {
        self.reconciles.inc();
        self.reconcile_duration.observe(seconds);
        if let Some(reason) = failure {
            self.reconcile_errors.inc();
            self.reconcile_failures
                .get_or_create(&ReconcileFailureLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_its_prefix_and_values() {
        let metrics = Metrics::new();
        metrics.record_run("interactions", true);
        metrics.record_run("interactions", false);
        metrics.record_delivery("interactions", 120, 4096, Some(42.0));
        metrics.record_check(CheckResult::Recopied);
        metrics.recopies.inc();
        metrics.files_pruned.inc_by(2);
        let text = metrics.encode(Utc::now()).unwrap();
        for line in [
            "scheduled_exports_runs_total{file_type=\"interactions\",outcome=\"succeeded\"} 1",
            "scheduled_exports_runs_total{file_type=\"interactions\",outcome=\"failed\"} 1",
            "scheduled_exports_rows_exported_total{file_type=\"interactions\"} 120",
            "scheduled_exports_bytes_exported_total{file_type=\"interactions\"} 4096",
            "scheduled_exports_export_duration_seconds_bucket{le=\"60.0\",file_type=\"interactions\"} 1",
            "scheduled_exports_rechecks_total{result=\"recopied\"} 1",
            "scheduled_exports_recopies_total 1",
            "scheduled_exports_files_pruned_total 2",
            "scheduled_exports_leader 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counters_of_every_file_type_and_check_result_start_at_zero() {
        let text = Metrics::new().encode(Utc::now()).unwrap();
        for file_type in ["interactions", "proposals"] {
            for outcome in ["succeeded", "failed"] {
                let line = format!(
                    "scheduled_exports_runs_total{{file_type=\"{file_type}\",outcome=\"{outcome}\"}} 0"
                );
                assert!(text.contains(&line), "missing {line:?} in\n{text}");
            }
            for line in [
                format!("scheduled_exports_rows_exported_total{{file_type=\"{file_type}\"}} 0"),
                format!("scheduled_exports_bytes_exported_total{{file_type=\"{file_type}\"}} 0"),
                format!(
                    "scheduled_exports_export_duration_seconds_count{{file_type=\"{file_type}\"}} 0"
                ),
            ] {
                assert!(text.contains(&line), "missing {line:?} in\n{text}");
            }
        }
        for result in ["present", "moved", "recopied", "unreachable", "missing"] {
            let line = format!("scheduled_exports_rechecks_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("result=\"unknown\""), "{text}");
        for result in ["passed", "failed"] {
            let line = format!("scheduled_exports_preflight_checks_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn only_objects_whose_preflight_fails_have_a_failing_series() {
        use kube::runtime::{reflector, watcher};
        let object = |name: &str, status: &str, reason: &str| -> ScheduledExport {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "exports.crm.dev/v1alpha1",
                "kind": "ScheduledExport",
                "metadata": {"name": name, "namespace": "univ", "uid": name},
                "spec": {"fileType": "interactions", "time": "07:00",
                    "source": {"secretRef": {"name": "db"}},
                    "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}},
                "status": {"conditions": [{"type": "Preflight", "status": status, "reason": reason,
                    "message": "", "lastTransitionTime": "2026-12-01T06:00:00Z"}]}
            }))
            .unwrap()
        };
        let (store, mut writer) = reflector::store::<ScheduledExport>();
        writer.apply_watcher_event(&watcher::Event::Apply(object("good", "True", "Passed")));
        writer.apply_watcher_event(&watcher::Event::Apply(object(
            "bad",
            "False",
            "HostKeyMismatch",
        )));
        let metrics = Metrics::new();
        metrics.watch_objects(Some(store));
        let text = metrics.encode(Utc::now()).unwrap();
        assert!(
            text.contains("scheduled_exports_preflight_failing{namespace=\"univ\",name=\"bad\",reason=\"HostKeyMismatch\"} 1"),
            "{text}"
        );
        assert!(!text.contains("name=\"good\",reason"), "{text}");
    }
}
