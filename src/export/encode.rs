//! The encoding between the CSV writer and the bytes delivered: as written, gzip-compressed,
//! OpenPGP-encrypted, or compressed then encrypted, all on the way through (one pass over the
//! data, no second file).

use std::io::{self, Write};

use flate2::write::GzEncoder;
use sequoia_openpgp::serialize::stream::Message;

use crate::export::encrypt::RecipientKey;
use crate::resource::Compression;

/// A writer that compresses and encrypts what it is given as the spec asks, into `W` (which the
/// caller keeps owning through a `&mut`, to read its digest afterwards).
pub struct FileEncoder<'a, W: Write + Send + Sync + 'a> {
    inner: Compressing<Encrypting<'a, W>>,
}

enum Compressing<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
}

enum Encrypting<'a, W: Write> {
    Plain(W),
    Pgp(Message<'a>),
}

impl<'a, W: Write + Send + Sync + 'a> FileEncoder<'a, W> {
    pub fn new(
        out: W,
        compression: Compression,
        recipient: Option<&'a RecipientKey>,
    ) -> io::Result<Self> {
        let encrypting = match recipient {
            None => Encrypting::Plain(out),
            Some(key) => Encrypting::Pgp(key.encrypting_writer(out)?),
        };
        let inner = match compression {
            Compression::None => Compressing::Plain(encrypting),
            // Level 6, gzip's own default: most of the size gain of level 9 at a fraction of the CPU.
            Compression::Gzip => {
                Compressing::Gzip(GzEncoder::new(encrypting, flate2::Compression::new(6)))
            }
        };
        Ok(Self { inner })
    }

    /// Writes what is still buffered: the gzip trailer, then the end of the OpenPGP message.
    pub fn finish(self) -> io::Result<()> {
        let encrypting = match self.inner {
            Compressing::Plain(encrypting) => encrypting,
            Compressing::Gzip(encoder) => encoder.finish()?,
        };
        match encrypting {
            Encrypting::Plain(mut out) => out.flush(),
            Encrypting::Pgp(message) => message.finalize().map_err(io::Error::other),
        }
    }
}

impl<W: Write> Write for Encrypting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encrypting::Plain(out) => out.write(buf),
            Encrypting::Pgp(message) => message.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encrypting::Plain(out) => out.flush(),
            Encrypting::Pgp(message) => message.flush(),
        }
    }
}

impl<'a, W: Write + Send + Sync + 'a> Write for FileEncoder<'a, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Compressing::Plain(out) => out.write(buf),
            Compressing::Gzip(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Compressing::Plain(out) => out.flush(),
            Compressing::Gzip(encoder) => encoder.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::MultiGzDecoder;

    use super::*;

    fn encode(compression: Compression, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = FileEncoder::new(&mut out, compression, None).unwrap();
        for part in parts {
            encoder.write_all(part).unwrap();
        }
        encoder.finish().unwrap();
        out
    }

    #[test]
    fn none_passes_bytes_through() {
        assert_eq!(
            encode(Compression::None, &[b"a,b\r\n", b"1,2\r\n"]),
            b"a,b\r\n1,2\r\n"
        );
    }

    #[test]
    fn gzip_round_trips_and_is_one_gzip_member() {
        let body: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i},row {i}\r\n").into_bytes())
            .collect();
        let encoded = encode(Compression::Gzip, &[b"id,summary\r\n", &body]);
        assert_eq!(&encoded[..2], [0x1f, 0x8b], "gzip magic");
        assert!(encoded.len() < body.len() / 2, "repetitive CSV compresses");
        let mut decoded = Vec::new();
        MultiGzDecoder::new(&encoded[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(&decoded[..12], b"id,summary\r\n");
        assert_eq!(&decoded[12..], &body[..]);
    }

    #[test]
    fn an_empty_window_still_gives_a_valid_gzip_file() {
        let encoded = encode(Compression::Gzip, &[]);
        let mut decoded = Vec::new();
        MultiGzDecoder::new(&encoded[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded.is_empty());
    }
}
