//! The Pod status the stand-in reports, as the kubelet would: phase, start time, host/pod IP,
//! conditions and one status per (init) container, sent as a strategic-merge patch of the status
//! subresource with the Pod's uid as a precondition.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Debug, Clone)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
}

#[derive(Debug, Clone)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated(Terminated),
}

impl State {
    /// All three keys, the two unused ones null, so the merge patch never leaves a stale state.
    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => json!({
                "waiting": {"reason": reason, "message": message},
                "running": null, "terminated": null,
            }),
            State::Running { started_at } => json!({
                "waiting": null, "running": {"startedAt": started_at}, "terminated": null,
            }),
            State::Terminated(t) => json!({
                "waiting": null, "running": null, "terminated": terminated_json(t),
            }),
        }
    }
}

fn terminated_json(t: &Terminated) -> Value {
    json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "message": t.message,
        "startedAt": t.started_at,
        "finishedAt": t.finished_at,
        "containerID": null,
    })
}

#[derive(Debug, Clone)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<Terminated>,
    pub restart_count: i32,
    pub pid: Option<u32>,
}

impl ContainerState {
    pub fn new(name: &str, image: &str, waiting_reason: &str) -> Self {
        ContainerState {
            name: name.to_string(),
            image: image.to_string(),
            state: State::Waiting {
                reason: waiting_reason.to_string(),
                message: None,
            },
            last: None,
            restart_count: 0,
            pid: None,
        }
    }

    fn to_json(&self) -> Value {
        let running = matches!(self.state, State::Running { .. });
        json!({
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": self.pid.map(|pid| format!("testbed://{pid}")),
            "state": self.state.to_json(),
            "lastState": match &self.last {
                Some(t) => json!({"terminated": terminated_json(t)}),
                None => json!({}),
            },
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
        })
    }
}

#[derive(Debug, Clone)]
pub struct PodStatus {
    pub uid: String,
    pub phase: &'static str,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub start_time: String,
    pub init: Vec<ContainerState>,
    pub main: Vec<ContainerState>,
    /// type -> (status, reason, lastTransitionTime)
    conditions: BTreeMap<&'static str, (bool, Option<&'static str>, String)>,
}

impl PodStatus {
    pub fn new(uid: String, init: Vec<ContainerState>, main: Vec<ContainerState>) -> Self {
        let mut status = PodStatus {
            uid,
            phase: "Pending",
            reason: None,
            message: None,
            start_time: now(),
            init,
            main,
            conditions: BTreeMap::new(),
        };
        let initialized = status.init.is_empty();
        status.set_condition("PodReadyToStartContainers", true, None);
        status.set_condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
        );
        status.set_condition("ContainersReady", false, Some("ContainersNotReady"));
        status.set_condition("Ready", false, Some("ContainersNotReady"));
        status
    }

    pub fn set_condition(
        &mut self,
        type_: &'static str,
        value: bool,
        reason: Option<&'static str>,
    ) {
        let time = match self.conditions.get(type_) {
            Some((old, _, time)) if *old == value => time.clone(),
            _ => now(),
        };
        self.conditions.insert(type_, (value, reason, time));
    }

    /// App containers are running (one at a time in this stand-in): the Pod is Running and Ready.
    pub fn running(&mut self) {
        self.phase = "Running";
        self.set_condition("Initialized", true, None);
        self.set_condition("ContainersReady", true, None);
        self.set_condition("Ready", true, None);
    }

    /// Between two app containers, or while one is restarted (restartPolicy OnFailure).
    pub fn not_ready(&mut self) {
        self.set_condition("ContainersReady", false, Some("ContainersNotReady"));
        self.set_condition("Ready", false, Some("ContainersNotReady"));
    }

    /// A terminal phase; containers not yet terminated are reported as never run or lost.
    pub fn finish(&mut self, phase: &'static str, reason: Option<String>, message: Option<String>) {
        self.phase = phase;
        self.reason = reason;
        self.message = message;
        let finished_at = now();
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            match &c.state {
                State::Terminated(_) => {}
                State::Running { started_at } => {
                    c.state = State::Terminated(Terminated {
                        exit_code: 137,
                        reason: "Error".into(),
                        message: None,
                        started_at: Some(started_at.clone()),
                        finished_at: finished_at.clone(),
                    });
                }
                State::Waiting { .. } => {
                    c.state = State::Terminated(Terminated {
                        exit_code: 137,
                        reason: "ContainerStatusUnknown".into(),
                        message: Some(
                            "The container could not be located when the pod was terminated".into(),
                        ),
                        started_at: None,
                        finished_at: finished_at.clone(),
                    });
                }
            }
        }
        self.set_condition("PodReadyToStartContainers", false, None);
        self.set_condition("ContainersReady", false, Some("PodCompleted"));
        self.set_condition("Ready", false, Some("PodCompleted"));
    }

    pub fn patch(&self) -> Value {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|(type_, (value, reason, time))| {
                json!({
                    "type": type_,
                    "status": if *value { "True" } else { "False" },
                    "reason": reason,
                    "lastProbeTime": null,
                    "lastTransitionTime": time,
                })
            })
            .collect();
        let mut status = json!({
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "startTime": self.start_time,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": conditions,
            "containerStatuses": self.main.iter().map(ContainerState::to_json).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            status["initContainerStatuses"] =
                Value::Array(self.init.iter().map(ContainerState::to_json).collect());
        }
        json!({"metadata": {"uid": self.uid}, "status": status})
    }
}
