//! Putting a streamed file under its final name: what is already there is looked at before the
//! stream, and once the stream's digest is known, [`decide`] says whether to publish, keep what
//! is there, replace an earlier attempt's file, or refuse another's file. The data file and its
//! checksum file follow the same rules, on the run's one SFTP session.

use tracing::warn;

use crate::adapters::sftp::{RemoteFile, SftpError, SftpSession, StagedFile};
use crate::status::ownership::Content;

/// What to do about a final name on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Nothing is there: publish.
    New,
    /// This run's very file is there (an earlier attempt delivered the same bytes): keep it.
    Adopt,
    /// An earlier attempt of this object left its file there without recording it (its status
    /// write was lost): the artifact it stored under this object's key holds the same bytes. That
    /// window started at the same watermark, so this file holds all of its rows and more.
    ReplaceEarlierAttempt,
}

/// The placement of a name that this run fills with `ours`, found holding `existing` before the
/// stream, an earlier attempt having filled it with `earlier` (from the artifact it stored).
/// `None`: the file there is provably nobody's of this object, and must be left alone.
pub fn decide(
    existing: Option<&Content>,
    earlier: Option<&Content>,
    ours: &Content,
) -> Option<Placement> {
    let Some(existing) = existing else {
        return Some(Placement::New);
    };
    if ours.matches(existing.bytes, &existing.sha256) {
        return Some(Placement::Adopt);
    }
    earlier
        .is_some_and(|earlier| earlier.matches(existing.bytes, &existing.sha256))
        .then_some(Placement::ReplaceEarlierAttempt)
}

/// A file found under a final name before the stream, and what it holds.
#[derive(Debug, Clone)]
pub struct Found {
    pub file: RemoteFile,
    pub content: Content,
}

/// The regular file of this name directly in the target directory, if any, with its content.
pub fn survey(session: &SftpSession, name: &str) -> Result<Option<Found>, SftpError> {
    let Some(file) = session.stat_file(name)? else {
        return Ok(None);
    };
    let digest = session.content_digest(&file)?;
    Ok(Some(Found {
        file,
        content: Content {
            bytes: digest.bytes,
            sha256: digest.sha256,
        },
    }))
}

/// The checksum file to publish beside the data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumFile {
    pub name: String,
    pub line: String,
    pub placement: Placement,
}

/// Puts the staged data file in place as `placement` says, then the checksum file. When the
/// checksum file cannot be published, the data file this call put there is taken back, so the
/// run leaves neither. A file under a final name is removed only for
/// [`Placement::ReplaceEarlierAttempt`] (what the survey found there moments before); otherwise
/// a file there makes the rename fail, so no file is ever overwritten.
pub fn publish(
    session: &SftpSession,
    staged: &StagedFile,
    placement: Placement,
    checksum: Option<&ChecksumFile>,
) -> Result<(), SftpError> {
    place(session, &staged.file_name, placement, |session| {
        session.publish(staged)
    })
    .inspect_err(|_| session.discard(staged))?;
    if placement == Placement::Adopt {
        session.discard(staged);
    }
    let Some(checksum) = checksum else {
        return Ok(());
    };
    let published = place(session, &checksum.name, checksum.placement, |session| {
        session
            .upload_from(
                &mut checksum.line.as_bytes(),
                checksum.line.len() as u64,
                &checksum.name,
            )
            .map(drop)
    });
    if let Err(err) = published {
        if placement != Placement::Adopt
            && let Ok(Some(delivered)) = session.stat_file(&staged.file_name)
            && session.remove(&delivered).is_err()
        {
            warn!(file = %staged.file_name, "could not remove the file whose checksum file failed");
        }
        return Err(err);
    }
    Ok(())
}

/// One name, as `placement` decided.
fn place(
    session: &SftpSession,
    name: &str,
    placement: Placement,
    put: impl FnOnce(&SftpSession) -> Result<(), SftpError>,
) -> Result<(), SftpError> {
    match placement {
        Placement::Adopt => return Ok(()),
        Placement::ReplaceEarlierAttempt => {
            if let Some(existing) = session.stat_file(name)? {
                warn!(file = %name, "replacing the file of an earlier attempt of this object at this slot");
                session.remove(&existing)?;
            }
        }
        Placement::New => {}
    }
    put(session)
}

/// Runs `work` with the session on the blocking pool (libssh2 blocks) and hands the session
/// back, so one connection serves the whole run.
pub async fn on_session<T: Send + 'static>(
    session: SftpSession,
    work: impl FnOnce(&SftpSession) -> T + Send + 'static,
) -> Result<(SftpSession, T), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let result = work(&session);
        (session, result)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(bytes: u64, sha256: &str) -> Content {
        Content {
            bytes,
            sha256: sha256.to_string(),
        }
    }

    #[test]
    fn a_free_name_is_published() {
        assert_eq!(decide(None, None, &content(3, "aa")), Some(Placement::New));
    }

    #[test]
    fn this_runs_bytes_are_kept_and_an_earlier_attempts_replaced() {
        let ours = content(3, "aa");
        assert_eq!(
            decide(Some(&content(3, "AA")), None, &ours),
            Some(Placement::Adopt),
            "the same bytes, even without an artifact"
        );
        let earlier = content(2, "bb");
        assert_eq!(
            decide(Some(&earlier), Some(&earlier), &ours),
            Some(Placement::ReplaceEarlierAttempt)
        );
    }

    #[test]
    fn anything_else_is_anothers_file() {
        let ours = content(3, "aa");
        assert_eq!(decide(Some(&content(2, "cc")), None, &ours), None);
        assert_eq!(
            decide(Some(&content(2, "cc")), Some(&content(2, "bb")), &ours),
            None
        );
        assert_eq!(
            decide(Some(&content(3, "ab")), Some(&content(2, "ab")), &ours),
            None,
            "a size alone proves nothing"
        );
    }
}
