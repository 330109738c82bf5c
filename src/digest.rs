//! The sha256 and byte count of a stream, taken while it is read or written, so a file is hashed
//! on its way through (to the spool, to the store, back from the store) instead of being read a
//! second time.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// What went through a [`HashingReader`] or [`HashingWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// A reader that hashes and counts every byte it hands out.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything read; the reader is dropped.
    pub fn finish(self) -> ContentDigest {
        ContentDigest {
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// A writer that hashes and counts every byte the inner writer accepted.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes the inner writer and returns it with the digest of everything written, so a
    /// temporary file can still be synced and renamed.
    pub fn finish(mut self) -> io::Result<(W, ContentDigest)> {
        self.inner.flush()?;
        let digest = ContentDigest {
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        };
        Ok((self.inner, digest))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256 of "abc" (FIPS 180-2, appendix B.1).
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// sha256 of nothing.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Accepts at most two bytes per call, as a slow pipe or a full disk may.
    struct ShortWrites(Vec<u8>);

    impl Write for ShortWrites {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(2);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Fails every flush, to show `finish` reports it.
    struct FailingFlush;

    impl Write for FailingFlush {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("flush refused"))
        }
    }

    #[test]
    fn reader_hashes_what_it_hands_out() {
        let mut reader = HashingReader::new(&b"abc"[..]);
        let mut first = [0u8; 2];
        assert_eq!(reader.read(&mut first).unwrap(), 2);
        assert_eq!(reader.bytes_read(), 2);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"c");
        assert_eq!(
            reader.finish(),
            ContentDigest {
                sha256: ABC.to_string(),
                bytes: 3,
            }
        );
    }

    #[test]
    fn reader_of_nothing() {
        let mut reader = HashingReader::new(io::empty());
        assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0);
        let digest = reader.finish();
        assert_eq!((digest.sha256.as_str(), digest.bytes), (EMPTY, 0));
    }

    #[test]
    fn writer_hashes_only_what_the_inner_writer_accepted() {
        let mut writer = HashingWriter::new(ShortWrites(Vec::new()));
        assert_eq!(writer.write(b"abc").unwrap(), 2);
        assert_eq!(writer.bytes_written(), 2);
        writer.write_all(b"c").unwrap();
        let (inner, digest) = writer.finish().unwrap();
        assert_eq!(inner.0, b"abc");
        assert_eq!(digest.sha256, ABC);
        assert_eq!(digest.bytes, 3);
    }

    #[test]
    fn writer_matches_a_one_shot_hash_across_many_writes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = HashingWriter::new(Vec::new());
        for chunk in data.chunks(4093) {
            writer.write_all(chunk).unwrap();
        }
        let (inner, digest) = writer.finish().unwrap();
        assert_eq!(inner, data);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(digest.bytes, data.len() as u64);
    }

    #[test]
    fn finish_reports_a_failed_flush() {
        let mut writer = HashingWriter::new(FailingFlush);
        writer.write_all(b"abc").unwrap();
        let err = writer.finish().err().expect("the flush error");
        assert_eq!(err.to_string(), "flush refused");
    }
}
