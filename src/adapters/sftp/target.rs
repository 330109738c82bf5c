//! Where a file is delivered: host, port, account and directory from `destination.sftp`, checked before any
//! network step so that a malformed destination fails as a configuration error.

use super::SftpError;

/// Where to deliver: `destination.sftp` of the resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Absolute directory on the server, e.g. `/exports`.
    pub directory: String,
}

impl SftpTarget {
    /// The target that `spec.destination.sftp` names.
    pub fn of(destination: &crate::resource::SftpDestination) -> Self {
        Self {
            host: destination.host.clone(),
            port: destination.port,
            username: destination.username.clone(),
            directory: destination.directory.clone(),
        }
    }

    pub(super) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The directory as remote paths use it: without trailing slashes, the root as `/`.
    pub(super) fn directory(&self) -> &str {
        crate::resource::normalize_directory(&self.directory)
    }
}

pub(super) fn validate_target(target: &SftpTarget) -> Result<(), SftpError> {
    let invalid = |reason: &str| SftpError::InvalidTarget {
        reason: reason.to_string(),
    };
    if target.host.is_empty() || target.host.contains(['\0', '/', ' ']) {
        return Err(invalid("host must be a host name or IP address"));
    }
    if target.host.contains('@') {
        // `user:password@host` pasted into the host: the message must not repeat it.
        return Err(invalid(
            "host must be a host name or IP address without `@`: the user name goes into \
             destination.sftp.username and a password into the Secret",
        ));
    }
    if target.port == 0 {
        return Err(invalid("port must be between 1 and 65535"));
    }
    if target.username.is_empty() || target.username.contains('\0') {
        return Err(invalid("username must not be empty"));
    }
    if !target.directory.starts_with('/')
        || target.directory.contains('\0')
        || target.directory.split('/').any(|part| part == "..")
    {
        return Err(invalid("directory must be an absolute path without `..`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_validated() {
        let target = SftpTarget {
            host: "sftp.example.edu".to_string(),
            port: 22,
            username: "u".to_string(),
            directory: "/exports/".to_string(),
        };
        assert!(validate_target(&target).is_ok());
        assert_eq!(target.directory(), "/exports");
        assert_eq!(target.address(), "sftp.example.edu:22");
        let relative = SftpTarget {
            directory: "exports".to_string(),
            ..target.clone()
        };
        assert!(validate_target(&relative).is_err());
        let with_credentials = SftpTarget {
            host: "u:pa55word@sftp.example.edu".to_string(),
            ..target.clone()
        };
        let message = validate_target(&with_credentials).unwrap_err().to_string();
        assert!(!message.contains("pa55"), "{message}");
        let dotdot = SftpTarget {
            directory: "/exports/../etc".to_string(),
            ..target
        };
        assert!(validate_target(&dotdot).is_err());
    }
}
