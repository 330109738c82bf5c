//! Putting a streamed file under its final name: what is already there is looked at before the
//! stream, and once the stream's digest is known, [`decide`] says whether to publish, keep what
//! is there, replace an earlier attempt's file, or refuse another's file. The data file and its
//! checksum file follow the same rules, on the run's one SFTP session.

use tracing::warn;

use crate::adapters::artifacts::{ArtifactKey, ArtifactStore, ArtifactUpload};
use crate::adapters::sftp::{RemoteFile, SftpError, SftpSession, StagedFile};
use crate::digest::ContentDigest;
use crate::export::error::ExportError;
use crate::export::file_name::checksum_file_name;
use crate::status::ownership::{self, Content};

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

/// What was under the final names before the stream, and what an earlier attempt of this object
/// stored as its artifact (read only when a name is taken).
pub struct Surveyed {
    directory: String,
    checksum_name: Option<String>,
    data: Option<Found>,
    checksum: Option<Found>,
    earlier: Option<Content>,
}

pub async fn survey_names(
    session: SftpSession,
    store: &ArtifactStore,
    key: &ArtifactKey,
    with_checksum: bool,
) -> Result<(SftpSession, Surveyed), ExportError> {
    let checksum_name = with_checksum.then(|| checksum_file_name(&key.file_name));
    let names = (key.file_name.clone(), checksum_name.clone());
    let (session, found) = on_session(session, move |session| {
        let data = survey(session, &names.0)?;
        let checksum = match &names.1 {
            Some(name) => survey(session, name)?,
            None => None,
        };
        Ok::<_, SftpError>((data, checksum))
    })
    .await?;
    let (data, checksum) = found?;
    let earlier = match data.is_some() || checksum.is_some() {
        true => store.digest(key).await?.map(|artifact| Content {
            bytes: artifact.bytes,
            sha256: artifact.sha256,
        }),
        false => None,
    };
    let directory = session.directory().to_string();
    Ok((
        session,
        Surveyed {
            directory,
            checksum_name,
            data,
            checksum,
            earlier,
        },
    ))
}

/// Only once this run's content is known: decides on each name, then commits the artifact, then
/// publishes (what the institution sees comes last). A failed step undoes the steps before it.
pub async fn place_copies(
    session: SftpSession,
    staged: StagedFile,
    stored: ArtifactUpload,
    store: &ArtifactStore,
    key: &ArtifactKey,
    surveyed: Surveyed,
    digest: &ContentDigest,
) -> Result<(), ExportError> {
    let ours = Content {
        bytes: digest.bytes,
        sha256: digest.sha256.clone(),
    };
    let decided = decide_both(
        &key.file_name,
        &ours,
        surveyed.earlier.as_ref(),
        (surveyed.data.as_ref(), surveyed.checksum.as_ref()),
        surveyed.checksum_name,
    );
    let (placement, checksum) = match decided {
        Ok(decided) => decided,
        Err((name, bytes)) => {
            stored.abort().await;
            let _ = on_session(session, move |session| session.discard(&staged)).await;
            return Err(ExportError::ForeignFile {
                file: name,
                directory: surveyed.directory,
                bytes,
            });
        }
    };
    if let Err(err) = stored.commit(digest).await {
        let _ = on_session(session, move |session| session.discard(&staged)).await;
        return Err(err.into());
    }
    let (_session, published) = on_session(session, move |session| {
        publish(session, &staged, placement, checksum.as_ref())
    })
    .await?;
    if let Err(err) = published {
        if let Err(cleanup) = store.delete(key).await {
            warn!(error = %cleanup, "could not remove the artifact of the failed delivery");
        }
        return Err(err.into());
    }
    Ok(())
}

/// The placement of the data file and of its checksum file (when the spec asks for one), or the
/// name and size of the first that is another's file.
fn decide_both(
    file_name: &str,
    ours: &Content,
    earlier: Option<&Content>,
    found: (Option<&Found>, Option<&Found>),
    checksum_name: Option<String>,
) -> Result<(Placement, Option<ChecksumFile>), (String, u64)> {
    let foreign = |name: &str, found: Option<&Found>| {
        (
            name.to_string(),
            found.map(|found| found.content.bytes).unwrap_or_default(),
        )
    };
    let placement = decide(found.0.map(|found| &found.content), earlier, ours)
        .ok_or_else(|| foreign(file_name, found.0))?;
    let Some(name) = checksum_name else {
        return Ok((placement, None));
    };
    let (line, ours_line) = ownership::checksum_file_content(file_name, ours);
    let earlier_line =
        earlier.map(|artifact| ownership::checksum_file_content(file_name, artifact).1);
    let checksum_placement = decide(
        found.1.map(|found| &found.content),
        earlier_line.as_ref(),
        &ours_line,
    )
    .ok_or_else(|| foreign(&name, found.1))?;
    Ok((
        placement,
        Some(ChecksumFile {
            name,
            line,
            placement: checksum_placement,
        }),
    ))
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
