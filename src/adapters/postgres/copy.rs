//! PostgreSQL's binary COPY format, decoded incrementally and in constant memory.

use bytes::{Buf, BytesMut};

use super::SourceError;
use super::window::MAX_COLUMNS;

/// Incremental parser of PostgreSQL's binary COPY format, for rows whose fields are all text:
/// an 11-byte signature, flags and header extension, then per tuple an i16 field count and per
/// field an i32 length (-1 for NULL) and its bytes, and finally a -1 trailer.
///
/// Tuples may span chunks; only an incomplete tail is kept between chunks, so memory stays at one
/// row plus one chunk.
pub(super) struct BinaryCopyDecoder {
    columns: usize,
    pending: BytesMut,
    header_done: bool,
    trailer_seen: bool,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

enum Step {
    /// Need more bytes.
    Incomplete,
    /// Consumed this many bytes.
    Consumed(usize),
}

impl BinaryCopyDecoder {
    pub(super) fn new(columns: usize) -> Self {
        Self {
            columns,
            pending: BytesMut::new(),
            header_done: false,
            trailer_seen: false,
        }
    }

    pub(super) fn feed<F>(&mut self, chunk: &[u8], mut row: F) -> Result<(), SourceError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), std::io::Error>,
    {
        if self.pending.is_empty() {
            // Fast path: parse straight out of the chunk, keep only an incomplete tail.
            let used = self.parse(chunk, &mut row)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let buffer = std::mem::take(&mut self.pending);
            let used = self.parse(&buffer, &mut row)?;
            let mut buffer = buffer;
            buffer.advance(used);
            self.pending = buffer;
        }
        Ok(())
    }

    fn parse<F>(&mut self, data: &[u8], row: &mut F) -> Result<usize, SourceError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), std::io::Error>,
    {
        let mut at = 0;
        if !self.header_done {
            match self.header(data)? {
                Step::Incomplete => return Ok(0),
                Step::Consumed(n) => {
                    at = n;
                    self.header_done = true;
                }
            }
        }
        while at < data.len() {
            if self.trailer_seen {
                return Err(SourceError::MalformedCopy("data after the trailer".into()));
            }
            match self.tuple(&data[at..], row)? {
                Step::Incomplete => break,
                Step::Consumed(n) => at += n,
            }
        }
        Ok(at)
    }

    fn header(&self, data: &[u8]) -> Result<Step, SourceError> {
        let fixed = SIGNATURE.len() + 8;
        if data.len() < fixed {
            if !SIGNATURE.starts_with(&data[..data.len().min(SIGNATURE.len())]) {
                return Err(SourceError::MalformedCopy(
                    "missing binary signature".into(),
                ));
            }
            return Ok(Step::Incomplete);
        }
        if &data[..SIGNATURE.len()] != SIGNATURE {
            return Err(SourceError::MalformedCopy(
                "missing binary signature".into(),
            ));
        }
        let extension = read_i32(&data[SIGNATURE.len() + 4..]);
        let extension = usize::try_from(extension)
            .map_err(|_| SourceError::MalformedCopy("negative header extension".into()))?;
        if data.len() < fixed + extension {
            return Ok(Step::Incomplete);
        }
        Ok(Step::Consumed(fixed + extension))
    }

    fn tuple<F>(&mut self, data: &[u8], row: &mut F) -> Result<Step, SourceError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), std::io::Error>,
    {
        if data.len() < 2 {
            return Ok(Step::Incomplete);
        }
        let count = i16::from_be_bytes([data[0], data[1]]);
        if count == -1 {
            self.trailer_seen = true;
            return Ok(Step::Consumed(2));
        }
        if usize::try_from(count).ok() != Some(self.columns) {
            return Err(SourceError::MalformedCopy(format!(
                "tuple has {count} fields, expected {}",
                self.columns
            )));
        }
        let mut cells: [Option<&[u8]>; MAX_COLUMNS] = [None; MAX_COLUMNS];
        let mut at = 2;
        for cell in cells.iter_mut().take(self.columns) {
            if data.len() < at + 4 {
                return Ok(Step::Incomplete);
            }
            let length = read_i32(&data[at..]);
            at += 4;
            if length < 0 {
                *cell = None;
                continue;
            }
            let length = length as usize;
            if data.len() < at + length {
                return Ok(Step::Incomplete);
            }
            *cell = Some(&data[at..at + length]);
            at += length;
        }
        row(&cells[..self.columns])?;
        Ok(Step::Consumed(at))
    }

    pub(super) fn finish(self) -> Result<(), SourceError> {
        if !self.trailer_seen || !self.pending.is_empty() {
            return Err(SourceError::MalformedCopy(
                "the stream ended in the middle of a row".into(),
            ));
        }
        Ok(())
    }
}

fn read_i32(data: &[u8]) -> i32 {
    i32::from_be_bytes([data[0], data[1], data[2], data[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for cell in row {
                match cell {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn decodes_binary_copy_split_at_every_byte() {
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"1"), None, Some(b"")],
            vec![Some("é,\"x\"".as_bytes()), Some(b"a\r\nb"), None],
        ];
        let data = encode(&rows);
        for chunk_size in 1..=data.len() {
            let mut decoder = BinaryCopyDecoder::new(3);
            let mut seen: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            for chunk in data.chunks(chunk_size) {
                decoder
                    .feed(chunk, |cells| {
                        seen.push(cells.iter().map(|c| c.map(<[u8]>::to_vec)).collect());
                        Ok(())
                    })
                    .expect("decode");
            }
            decoder.finish().expect("complete");
            let expected: Vec<Vec<Option<Vec<u8>>>> = rows
                .iter()
                .map(|r| r.iter().map(|c| c.map(<[u8]>::to_vec)).collect())
                .collect();
            assert_eq!(seen, expected, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn rejects_truncated_or_foreign_streams() {
        let data = encode(&[vec![Some(b"1")]]);
        let mut decoder = BinaryCopyDecoder::new(1);
        decoder
            .feed(&data[..data.len() - 3], |_| Ok(()))
            .expect("partial is fine");
        assert!(decoder.finish().is_err());

        let mut decoder = BinaryCopyDecoder::new(1);
        assert!(decoder.feed(b"id,name\r\n1,x\r\n", |_| Ok(())).is_err());

        let mut decoder = BinaryCopyDecoder::new(2);
        assert!(decoder.feed(&data, |_| Ok(())).is_err());
    }
}
