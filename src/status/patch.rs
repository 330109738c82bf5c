//! The JSON merge patch (RFC 7386) that turns one status into another, naming only what changed.
//!
//! Three writers share a ScheduledExport's status (the controller, the export Job, the delivery
//! checker), and during an upgrade they can be of different versions. A writer that replaced the
//! whole status would drop every field its version does not know; a patch of exactly the fields
//! it changed leaves the rest, known or not, as the server has it.

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`, or `None` when they are equal. Objects are
/// compared key by key (a removed key becomes `null`); anything else, arrays included, is
/// replaced whole, as RFC 7386 prescribes.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, new_value) in new {
                let changed = match old.get(key) {
                    None => Some(new_value.clone()),
                    Some(old_value) if old_value.is_object() && new_value.is_object() => {
                        merge_patch(old_value, new_value)
                    }
                    Some(old_value) => (old_value != new_value).then(|| new_value.clone()),
                };
                if let Some(changed) = changed {
                    patch.insert(key.clone(), changed);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ => (old != new).then(|| new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386 section 2, applied in Rust, to check that a patch really produces `new`.
    fn apply(target: &Value, patch: &Value) -> Value {
        match patch {
            Value::Object(patch) => {
                let mut result = target.as_object().cloned().unwrap_or_default();
                for (key, value) in patch {
                    if value.is_null() {
                        result.remove(key);
                    } else {
                        let current = result.get(key).cloned().unwrap_or(Value::Null);
                        result.insert(key.clone(), apply(&current, value));
                    }
                }
                Value::Object(result)
            }
            other => other.clone(),
        }
    }

    #[test]
    fn only_changed_fields_are_named() {
        let old = json!({
            "watermark": "1:2:",
            "lastRun": {"phase": "Running", "slot": "2026-11-30T12:00:00Z", "jobName": "j"},
            "conditions": [{"type": "Ready", "status": "True"}],
        });
        let new = json!({
            "watermark": "1:2:",
            "lastRun": {"phase": "Failed", "slot": "2026-11-30T12:00:00Z", "error": "boom"},
            "conditions": [{"type": "Ready", "status": "True"}],
        });
        let patch = merge_patch(&old, &new).expect("a change");
        assert_eq!(
            patch,
            json!({"lastRun": {"phase": "Failed", "jobName": null, "error": "boom"}})
        );
        assert_eq!(apply(&old, &patch), new);
    }

    #[test]
    fn fields_the_writer_does_not_know_are_left_alone() {
        // What the server holds carries a field from a newer version; the writer's own view of
        // the old status does not, so its patch never mentions it.
        let server = json!({"watermark": "1:2:", "fromNewerVersion": {"kept": true}});
        let seen = json!({"watermark": "1:2:"});
        let wanted = json!({"watermark": "3:4:"});
        let patch = merge_patch(&seen, &wanted).expect("a change");
        assert_eq!(
            apply(&server, &patch),
            json!({"watermark": "3:4:", "fromNewerVersion": {"kept": true}})
        );
    }

    #[test]
    fn equal_values_need_no_patch_and_arrays_are_replaced_whole() {
        let value = json!({"conditions": [{"type": "Ready"}], "a": {"b": 1}});
        assert_eq!(merge_patch(&value, &value), None);
        let more = json!({"conditions": [{"type": "Ready"}, {"type": "Exported"}], "a": {"b": 1}});
        assert_eq!(
            merge_patch(&value, &more),
            Some(json!({"conditions": [{"type": "Ready"}, {"type": "Exported"}]}))
        );
        assert_eq!(
            merge_patch(&json!({"a": {"b": 1}}), &json!({})),
            Some(json!({"a": null}))
        );
    }
}
