//! The S3 settings of an artifact store: read from the environment the AWS tools and MinIO
//! clients share, and printable in logs because `Debug` hides the secret key.

use std::fmt;

use crate::redact::redact_url;

/// Explicit S3 settings; [`S3Options::from_env`] reads them from the standard environment.
///
/// `Debug` redacts the secret key, so the options can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// `http(s)://host:port` of a non-AWS endpoint (MinIO, Ceph, ...); `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// With `secret_access_key`, static credentials. Without both, `object_store` falls back to
    /// the instance metadata service (AWS only).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".to_string(),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Options {
    /// Reads the settings the AWS tools and MinIO clients use, so the operator's Deployment can
    /// share a Secret with them:
    ///
    /// - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// - `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`
    /// - `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else `S3_ENDPOINT` (the test bed's name)
    ///
    /// Empty values count as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable source, so the precedence rules are testable without
    /// touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        // Whatever the S3 client's errors quote, the secret key never reaches a message.
        for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            if let Some(value) = var(name) {
                crate::redact::register_secret(&value);
            }
        }
        Self {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("S3_ENDPOINT")),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let options = S3Options::from_lookup(env(&[
            ("S3_ENDPOINT", "http://minio:9000"),
            ("AWS_ENDPOINT_URL", "http://aws-endpoint"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]));
        assert_eq!(options.endpoint.as_deref(), Some("http://aws-endpoint"));
        assert_eq!(options.region, "eu-west-1");
        assert_eq!(options.access_key_id.as_deref(), Some("AKID"));
        assert!(!format!("{options:?}").contains("s3cr3t"));

        let options = S3Options::from_lookup(env(&[
            ("S3_ENDPOINT", "http://minio:9000"),
            ("AWS_REGION", ""),
        ]));
        assert_eq!(options.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(options.region, "us-east-1");
    }
}
