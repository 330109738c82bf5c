//! Kubernetes Events about a ScheduledExport: what `kubectl describe` shows people. Publishing
//! is best effort; a failure is logged and never fails a reconcile or a check.

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use crate::operator::context::Context;
use crate::resource::{EventReason, ScheduledExport};

pub async fn publish(
    ctx: &Context,
    object: &ScheduledExport,
    type_: EventType,
    reason: EventReason,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        // Notes quote driver errors; whatever they carry, no credential is published.
        note: Some(crate::redact::scrub(note)),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(error = %err, reason = reason.as_str(), "could not publish an Event");
    }
}
