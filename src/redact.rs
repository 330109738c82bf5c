//! Renderings of URLs that are safe to show: in logs, status, Events and error messages.

/// The URL without user name, password, query or fragment, safe for logs and messages. A URL with
/// none of those is shown exactly as written, so the message quotes what the operator typed.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(url)
            if url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            raw.trim().to_string()
        }
        Ok(mut url) => {
            // These setters only fail for URLs that cannot have credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) if raw.contains('@') => "<unparseable URL>".to_string(),
        Err(_) => raw.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_credentials() {
        assert_eq!(
            redact_url("http://user:pw@host:9000/x?X-Amz-Signature=abc"),
            "http://host:9000/x"
        );
        assert_eq!(redact_url("not a url@secret"), "<unparseable URL>");
    }
}
