//! Keeping credentials out of everything the product writes: logs, status, Events, error
//! messages and the export Pod's termination message.
//!
//! Three layers, because no single one is enough:
//! - [`check_url_userinfo`] refuses a URL whose user name or password holds a character that
//!   URL parsers read as structure (`@`, `:`, `/`, ...): parsed, such a URL puts a piece of the
//!   password into the host or the path, where every later message would quote it.
//! - [`redact_url`] renders a URL without user name, password, query or fragment.
//! - [`scrub`] removes from any text every credential value this process has been handed
//!   ([`register_secret`]: database URLs, SFTP passwords and passphrases, S3 keys) in every
//!   spelling a message may carry it (as is, percent-encoded or decoded, JSON- or Debug-escaped),
//!   plus the user information of any URL in the text. Driver error text (PostgreSQL, libssh2,
//!   the S3 client) is not ours to control, so the sinks (log writer, status writer, Events,
//!   stderr) pass everything through it.

use std::borrow::Cow;
use std::io;
use std::sync::RwLock;

/// What a removed credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Values shorter than this are not registered: replacing a two-letter word everywhere would
/// garble every message, and such a value is no credential worth the name.
const MIN_SECRET_LEN: usize = 4;

/// Every spelling of every registered credential, longest first (so a value is never left
/// half-replaced by a shorter one that it contains).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Environment variables whose values are credentials wherever this binary runs.
const SECRET_ENV_VARS: [&str; 5] = [
    "DATABASE_URL",
    "PGPASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SFTP_PASSWORD",
];

/// Adds `value` (and its percent-encoded, percent-decoded and escaped spellings) to what
/// [`scrub`] removes, for the rest of the process's life.
pub fn register_secret(value: &str) {
    let value = value.trim_matches(|c: char| c == '\n' || c == '\r');
    if value.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let decoded = percent_decode(value);
    let mut spellings = vec![value.to_string(), percent_encode(value)];
    spellings.push(decoded.clone());
    for base in [value.to_string(), decoded] {
        spellings.push(json_escaped(&base));
        spellings.push(debug_escaped(&base));
    }
    let Ok(mut secrets) = SECRETS.write() else {
        return;
    };
    for spelling in spellings {
        if spelling.chars().count() >= MIN_SECRET_LEN && !secrets.contains(&spelling) {
            secrets.push(spelling);
        }
    }
    secrets.sort_by_key(|spelling| std::cmp::Reverse(spelling.len()));
}

/// Registers the credential parts of a URL (or libpq key=value string): the whole text, its
/// user information and its password.
pub fn register_url_credentials(url: &str) {
    register_secret(url.trim());
    if let Some((_, rest)) = url.trim().split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
    {
        register_secret(userinfo);
        if let Some((_, password)) = userinfo.split_once(':') {
            register_secret(password);
        }
    }
    // key=value form: `password=...`, optionally single-quoted.
    for word in url.split_whitespace() {
        if let Some(password) = word.strip_prefix("password=") {
            register_secret(password.trim_matches('\''));
        }
    }
}

/// Registers the credentials of the well-known variables of this process's environment.
pub fn register_env_secrets() {
    for name in SECRET_ENV_VARS {
        if let Ok(value) = std::env::var(name) {
            if name == "DATABASE_URL" {
                register_url_credentials(&value);
            } else {
                register_secret(&value);
            }
        }
    }
}

/// `text` with every registered credential and the user information of every URL in it replaced
/// by [`REDACTED`].
pub fn scrub(text: &str) -> String {
    let mut out = Cow::Borrowed(text);
    if let Ok(secrets) = SECRETS.read() {
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
    }
    scrub_url_userinfo(&out)
}

/// Replaces the user information of every `scheme://user:password@host` in `text`. The URL runs
/// to the next space or quote, and its user information to the last `@` in it, so a password
/// holding `@` or `/` is covered whole. A user name alone is kept.
pub fn scrub_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let (before, after) = rest.split_at(found + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        // Only user information with a password: `sftp://user@host` names an account, and
        // recorded destinations must stay comparable.
        match url.rfind('@') {
            Some(at) if &url[..at] != REDACTED && url[..at].contains(':') => {
                out.push_str(REDACTED);
                out.push_str(&url[at..]);
            }
            _ => out.push_str(url),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Why a URL's user information cannot be used as written. The message shows no part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "its user name or password holds a character URLs reserve (such as @ : / ? # % [ ] or a \
     space), so part of the password would be read as the host or the path; percent-encode the \
     user name and password (@ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25, a space \
     as %20). An @ in the database name or a query value must be encoded as %40 too"
)]
pub struct UserinfoUnencoded;

/// Refuses a URL whose user name or password would not parse as written: more than one `@`, a
/// `/`, `?` or `#` before the `@` (which parsers take as the end of the host), a second `:` (a
/// `:` the password holds), a space or bracket, or a `%` that starts no valid escape.
/// A URL without user information (or without any host, like `file:///path`) passes.
pub fn check_url_userinfo(url: &str) -> Result<(), UserinfoUnencoded> {
    let Some((_, rest)) = url.trim().split_once("://") else {
        return Ok(());
    };
    if rest.starts_with('/') || !rest.contains('@') {
        return Ok(());
    }
    if rest.matches('@').count() > 1 {
        return Err(UserinfoUnencoded);
    }
    let userinfo = rest
        .split_once('@')
        .map(|(userinfo, _)| userinfo)
        .unwrap_or_default();
    let password = userinfo.split_once(':').map(|(_, password)| password);
    let broken = userinfo.contains(['/', '?', '#', '[', ']'])
        || userinfo.chars().any(char::is_whitespace)
        || password.is_some_and(|password| password.contains(':'))
        || !percent_escapes_valid(userinfo);
    if broken {
        return Err(UserinfoUnencoded);
    }
    Ok(())
}

/// The URL without user name, password, query or fragment, safe for logs and messages. A URL with
/// none of those is shown exactly as written, so the message quotes what the operator typed.
pub fn redact_url(raw: &str) -> String {
    let raw = raw.trim();
    if check_url_userinfo(raw).is_err() {
        return match raw.split_once("://") {
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("{scheme}://{REDACTED}")
            }
            _ => "<unparseable URL>".to_string(),
        };
    }
    match url::Url::parse(raw) {
        Ok(url)
            if url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            raw.to_string()
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
        Err(_) => raw.to_string(),
    }
}

/// A writer for log lines that scrubs each write (the log formatter writes one whole line per
/// call) before it reaches stderr.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrubbingStderr;

impl io::Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingStderr
    }
}

fn percent_escapes_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(index, &byte)| {
        byte != b'%'
            || (bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Every byte but RFC 3986's unreserved ones as `%XX`, as URL builders encode a password.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

fn debug_escaped(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
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
        // A password with a slash parses as a port and a path: nothing of it is shown.
        assert_eq!(redact_url("s3://key:12/34@bucket/x"), "s3://<redacted>");
        assert_eq!(
            redact_url("postgres://u:p@ss@host/db"),
            "postgres://<redacted>"
        );
    }

    #[test]
    fn userinfo_with_reserved_characters_is_refused() {
        for bad in [
            "postgres://u:p@ss@host/db",
            "postgres://u:p/ss@host/db",
            "postgres://u:p:ss@host/db",
            "postgres://u:p?ss@host/db",
            "postgres://u:p#ss@host/db",
            "postgres://u:p ss@host/db",
            "postgres://u:p%zzss@host/db",
            "postgres://u:p[ss]@host/db",
            "s3://key:se@cret@bucket/prefix",
            "postgres://host/db?application_name=a@b",
        ] {
            let err = check_url_userinfo(bad).expect_err(bad);
            let message = err.to_string();
            for fragment in ["ss@host", "p@ss", "cret"] {
                assert!(!message.contains(fragment), "{message}");
            }
        }
        for good in [
            "postgres://u:p%40ss%3A%2F@host:5432/db?sslmode=require",
            "postgres://host/db",
            "postgres:///db?host=/run/postgresql",
            "file:///var/lib/exports/a@b",
            "s3://bucket/prefix",
            "host=db user=u password=secret",
        ] {
            assert!(check_url_userinfo(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn scrub_removes_every_spelling_of_a_registered_secret() {
        let password = "Zq7@x:y/w?#%\"\\Lm";
        register_secret(password);
        let encoded = percent_encode(password);
        let texts = [
            format!("error: password {password} refused"),
            format!("url postgres://user:{encoded}@host/db failed"),
            format!(
                "{{\"message\":{}}}",
                serde_json::to_string(password).unwrap()
            ),
            format!("detail: {password:?}"),
        ];
        for text in texts {
            let scrubbed = scrub(&text);
            assert!(
                !scrubbed.contains("Zq7@") && !scrubbed.contains("Zq7%40"),
                "{scrubbed}"
            );
            assert!(!scrubbed.contains("Lm"), "{scrubbed}");
        }
        // Short values would garble messages and are not registered.
        register_secret("ab");
        assert_eq!(scrub("about"), "about");
    }

    #[test]
    fn scrub_removes_url_userinfo_it_was_not_told_about() {
        assert_eq!(
            scrub_url_userinfo("connecting to postgres://u:p@ss@host/db: refused"),
            "connecting to postgres://<redacted>@host/db: refused"
        );
        assert_eq!(
            scrub_url_userinfo("\"s3://k:a/b@bucket\" and http://host/x"),
            "\"s3://<redacted>@bucket\" and http://host/x"
        );
        assert_eq!(scrub_url_userinfo("no urls here"), "no urls here");
        assert_eq!(
            scrub_url_userinfo("sftp://univ@sftp.example.edu:22/exports"),
            "sftp://univ@sftp.example.edu:22/exports"
        );
        let once = scrub_url_userinfo("postgres://u:pw@host");
        assert_eq!(scrub_url_userinfo(&once), once);
    }

    #[test]
    fn url_credentials_are_registered_decoded_and_encoded() {
        register_url_credentials("postgres://exporter:Kx%40q%2F9v%3Aw@db.example/crm");
        let scrubbed = scrub("auth failed for password Kx@q/9v:w (Kx%40q%2F9v%3Aw)");
        assert!(
            !scrubbed.contains("Kx@q") && !scrubbed.contains("9v:w"),
            "{scrubbed}"
        );
        register_url_credentials("host=db user=u password='Pw-kv-7781'");
        assert!(!scrub("Pw-kv-7781").contains("Pw-kv"));
    }
}
