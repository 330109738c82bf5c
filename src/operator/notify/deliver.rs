//! Sending one alert: the webhook's Secret read at send time (so a rotated URL or key applies to
//! the next alert), the body signed afresh for each attempt, and retries with exponential backoff
//! for what a retry can fix (no answer, 408, 429, 5xx).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::body::{self, Body, Notice, Subject};
use super::sign;
use crate::adapters::kubernetes::secrets::{SecretError, WEBHOOK_SECRET_FIELD, read_secret};
use crate::redact;

/// Key of the webhook Secret holding the endpoint.
pub const URL_KEY: &str = "url";
/// Optional key of the webhook Secret holding the HMAC key.
pub const SIGNING_KEY_KEY: &str = "signingKey";

/// How hard one alert is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; each later wait doubles.
    pub first_backoff: Duration,
    /// Bound on each wait.
    pub max_backoff: Duration,
    /// Bound on each request, connect to last byte of the answer.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// About a minute and a half at most per alert: 1 s, 2 s, 4 s, 8 s between five attempts of
    /// at most 15 s each.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// The waits before the second, third, ... attempt.
    pub fn backoffs(&self) -> Vec<Duration> {
        (0..self.attempts.saturating_sub(1))
            .map(|retry| {
                self.first_backoff
                    .saturating_mul(2u32.saturating_pow(retry))
                    .min(self.max_backoff)
            })
            .collect()
    }
}

/// What one attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Delivered,
    /// Worth another attempt: the receiver is busy, down or slow.
    Retry,
    /// A retry would get the same answer (a wrong URL, a refused signature).
    Refused,
}

/// The meaning of an HTTP status. Redirects are not followed: a POST redirected is a URL to fix.
pub fn classify(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Delivered,
        408 | 429 | 500..=599 => Answer::Retry,
        _ => Answer::Refused,
    }
}

/// Where an alert goes. Debug shows neither the URL nor the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: url::Url,
    pub signing_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &redact::REDACTED)
            .field("signed", &self.signing_key.is_some())
            .finish()
    }
}

/// The target a webhook Secret's data describes. The URL and key are registered with the
/// redactor before anything can quote them.
pub fn target_of(
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<WebhookTarget, SecretError> {
    let text = |key: &'static str| {
        data.get(key)
            .map(|value| String::from_utf8(value.clone()).map(|text| text.trim().to_string()))
    };
    let url = match text(URL_KEY) {
        Some(Ok(url)) if !url.is_empty() => url,
        Some(Err(_)) => {
            return Err(SecretError::KeyInvalid {
                secret: name.to_string(),
                field: WEBHOOK_SECRET_FIELD,
                key: URL_KEY,
                problem: "must be an http:// or https:// URL (text)",
            });
        }
        _ => {
            return Err(SecretError::KeyMissing {
                secret: name.to_string(),
                field: WEBHOOK_SECRET_FIELD,
                key: URL_KEY,
                hint: ": add the webhook's https:// URL under key \"url\"",
            });
        }
    };
    // The whole URL is a credential (incoming-webhook URLs carry their token in the path).
    redact::register_url_credentials(&url);
    let invalid = || SecretError::KeyInvalid {
        secret: name.to_string(),
        field: WEBHOOK_SECRET_FIELD,
        key: URL_KEY,
        problem: "must be an http:// or https:// URL with a host",
    };
    let parsed = url::Url::parse(&url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid());
    }
    let path_and_query = &parsed[url::Position::BeforePath..];
    if path_and_query.len() > 1 {
        redact::register_secret(path_and_query);
    }
    let signing_key = match data.get(SIGNING_KEY_KEY) {
        None => None,
        Some(key) if key.is_empty() => None,
        Some(key) => {
            if let Ok(text) = std::str::from_utf8(key) {
                redact::register_secret(text);
            }
            Some(key.clone())
        }
    };
    Ok(WebhookTarget {
        url: parsed,
        signing_key,
    })
}

/// One alert waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub subject: Subject,
    pub secret: String,
    pub notice: Notice,
    pub time: chrono::DateTime<chrono::Utc>,
}

/// How one alert ended.
#[derive(Debug)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Every attempt failed, or the receiver refused it; the last cause (no secret in it).
    Failed(String),
    /// The Secret is missing or unusable.
    NoTarget(SecretError),
}

impl Outcome {
    /// The `result` label of the deliveries metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Failed(_) => "failed",
            Outcome::NoTarget(_) => "invalid_secret",
        }
    }
}

/// Sends `pending`, retrying per `policy`.
pub async fn deliver(
    client: &kube::Client,
    http: &reqwest::Client,
    policy: &RetryPolicy,
    pending: &Pending,
) -> Outcome {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &pending.subject.namespace);
    let target = match read_secret(&secrets, &pending.secret, WEBHOOK_SECRET_FIELD)
        .await
        .and_then(|data| target_of(&pending.secret, &data))
    {
        Ok(target) => target,
        Err(err) => return Outcome::NoTarget(err),
    };
    // After the target's credentials are registered, so the body's texts are scrubbed of them.
    let body: Body = body::build(&pending.subject, &pending.notice, pending.time);
    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(err) => return Outcome::Failed(format!("cannot encode the alert: {err}")),
    };
    let mut waits = policy.backoffs().into_iter();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let cause = match post(http, policy, &target, &bytes).await {
            Ok(status) => match classify(status) {
                Answer::Delivered => return Outcome::Delivered { attempts },
                Answer::Refused => {
                    return Outcome::Failed(format!("the receiver answered {status}; not retried"));
                }
                Answer::Retry => format!("the receiver answered {status}"),
            },
            Err(err) => redact::scrub(&err),
        };
        match waits.next() {
            Some(wait) => {
                tracing::debug!(
                    attempt = attempts,
                    cause,
                    ?wait,
                    "alert not delivered; retrying"
                );
                tokio::time::sleep(wait).await;
            }
            None => {
                return Outcome::Failed(format!("{cause}, after {attempts} attempts"));
            }
        }
    }
}

/// One POST; the HTTP status, or why there was none.
async fn post(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    target: &WebhookTarget,
    body: &[u8],
) -> Result<u16, String> {
    let mut request = http
        .post(target.url.clone())
        .timeout(policy.request_timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(key) = &target.signing_key {
        let timestamp = chrono::Utc::now().timestamp();
        request = request
            .header(sign::TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                sign::SIGNATURE_HEADER,
                sign::signature(key, timestamp, body),
            );
    }
    match request.send().await {
        Ok(response) => Ok(response.status().as_u16()),
        // reqwest's message names the URL; say only what kind of failure it was.
        Err(err) if err.is_timeout() => {
            Err(format!("no answer within {:?}", policy.request_timeout))
        }
        Err(err) if err.is_connect() => Err("cannot connect to the receiver".to_string()),
        Err(_) => Err("the request failed before an answer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.backoffs(),
            [1, 2, 4, 8].map(Duration::from_secs).to_vec()
        );
        let long = RetryPolicy {
            attempts: 10,
            max_backoff: Duration::from_secs(30),
            ..policy
        };
        assert_eq!(long.backoffs().last(), Some(&Duration::from_secs(30)));
        assert!(
            RetryPolicy {
                attempts: 1,
                ..policy
            }
            .backoffs()
            .is_empty()
        );
    }

    #[test]
    fn only_what_a_retry_can_fix_is_retried() {
        for (status, answer) in [
            (200, Answer::Delivered),
            (204, Answer::Delivered),
            (301, Answer::Refused),
            (400, Answer::Refused),
            (401, Answer::Refused),
            (404, Answer::Refused),
            (408, Answer::Retry),
            (429, Answer::Retry),
            (500, Answer::Retry),
            (503, Answer::Retry),
        ] {
            assert_eq!(classify(status), answer, "{status}");
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_secret_gives_the_url_and_optional_key_and_registers_them() {
        let target = target_of(
            "hook",
            &data(&[
                (
                    "url",
                    "https://hooks.example.com/services/T1/B2/tok3nvalue\n",
                ),
                ("signingKey", "s3cret-signing-key"),
            ]),
        )
        .unwrap();
        assert_eq!(target.url.host_str(), Some("hooks.example.com"));
        assert_eq!(
            target.signing_key.as_deref(),
            Some(&b"s3cret-signing-key"[..])
        );
        let scrubbed =
            redact::scrub("posting to /services/T1/B2/tok3nvalue with s3cret-signing-key");
        assert!(
            !scrubbed.contains("tok3nvalue") && !scrubbed.contains("s3cret"),
            "{scrubbed}"
        );
        assert!(!format!("{target:?}").contains("tok3n"));

        let unsigned = target_of("hook", &data(&[("url", "http://127.0.0.1:9/x")])).unwrap();
        assert_eq!(unsigned.signing_key, None);
    }

    #[test]
    fn a_missing_or_unusable_url_is_refused_naming_the_field_not_the_value() {
        let missing = target_of("hook", &data(&[("signingKey", "k")])).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("spec.notify.webhook.secretRef"),
            "{missing}"
        );
        for url in ["ftp://example.com/x", "not a url at all", "https://:443/"] {
            let err = target_of("hook", &data(&[("url", url)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("http:// or https://"), "{text}");
            assert!(!text.contains(url), "{text}");
        }
    }
}
