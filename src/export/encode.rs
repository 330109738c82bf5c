//! The encoding between the CSV writer and the bytes delivered: as written, or gzip-compressed on
//! the way through (one pass over the data, no second file).

use std::io::{self, Write};

use flate2::write::GzEncoder;

use crate::resource::Compression;

/// A writer that compresses what it is given when the spec asks for it.
pub enum FileEncoder<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
}

impl<W: Write> FileEncoder<W> {
    pub fn new(out: W, compression: Compression) -> Self {
        match compression {
            Compression::None => FileEncoder::Plain(out),
            // Level 6, gzip's own default: most of the size gain of level 9 at a fraction of the CPU.
            Compression::Gzip => {
                FileEncoder::Gzip(GzEncoder::new(out, flate2::Compression::new(6)))
            }
        }
    }

    /// Writes what is still buffered (the gzip trailer included) and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            FileEncoder::Plain(out) => Ok(out),
            FileEncoder::Gzip(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for FileEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FileEncoder::Plain(out) => out.write(buf),
            FileEncoder::Gzip(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            FileEncoder::Plain(out) => out.flush(),
            FileEncoder::Gzip(encoder) => encoder.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::MultiGzDecoder;

    use super::*;

    fn encode(compression: Compression, parts: &[&[u8]]) -> Vec<u8> {
        let mut encoder = FileEncoder::new(Vec::new(), compression);
        for part in parts {
            encoder.write_all(part).unwrap();
        }
        encoder.finish().unwrap()
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
