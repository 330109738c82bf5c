//! PostgreSQL's binary COPY format, decoded incrementally and in constant memory.

use bytes::{Buf, BytesMut};

use super::SourceError;
use super::values::{WireType, render};
use super::window::MAX_COLUMNS;

/// Incremental parser of PostgreSQL's binary COPY format: an 11-byte signature, flags and header
/// extension, then per tuple an i16 field count and per field an i32 length (-1 for NULL) and its
/// bytes, and finally a -1 trailer. Each field is handed on as its cell's text: text fields as
/// they are, the others rendered from their binary form (see [`WireType`]).
///
/// Tuples may span chunks; only an incomplete tail is kept between chunks, so memory stays at one
/// row plus one chunk.
pub(super) struct BinaryCopyDecoder {
    wire_types: Vec<WireType>,
    /// The rendered fields of the current row.
    rendered: Vec<u8>,
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
    pub(super) fn new(wire_types: Vec<WireType>) -> Self {
        Self {
            wire_types,
            rendered: Vec::with_capacity(256),
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
        let columns = self.wire_types.len();
        if usize::try_from(count).ok() != Some(columns) {
            return Err(SourceError::MalformedCopy(format!(
                "tuple has {count} fields, expected {columns}"
            )));
        }
        // Where each cell's text is: in `data`, or rendered into `self.rendered`. Slices are taken
        // once the row is complete, since rendering grows the buffer.
        let mut spans = [Span::Null; MAX_COLUMNS];
        self.rendered.clear();
        let mut at = 2;
        for (span, wire) in spans.iter_mut().zip(&self.wire_types) {
            if data.len() < at + 4 {
                return Ok(Step::Incomplete);
            }
            let length = read_i32(&data[at..]);
            at += 4;
            let Ok(length) = usize::try_from(length) else {
                continue; // NULL
            };
            if data.len() < at + length {
                return Ok(Step::Incomplete);
            }
            let value = &data[at..at + length];
            *span = match wire {
                WireType::Text => Span::Data(at, at + length),
                wire => {
                    let start = self.rendered.len();
                    if render(*wire, value, &mut self.rendered)? {
                        Span::Rendered(start, self.rendered.len())
                    } else {
                        Span::Null
                    }
                }
            };
            at += length;
        }
        let mut cells: [Option<&[u8]>; MAX_COLUMNS] = [None; MAX_COLUMNS];
        for (cell, span) in cells.iter_mut().zip(&spans[..columns]) {
            *cell = match *span {
                Span::Null => None,
                Span::Data(start, end) => Some(&data[start..end]),
                Span::Rendered(start, end) => Some(&self.rendered[start..end]),
            };
        }
        row(&cells[..columns])?;
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

#[derive(Clone, Copy)]
enum Span {
    Null,
    Data(usize, usize),
    Rendered(usize, usize),
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
            let mut decoder = BinaryCopyDecoder::new(vec![WireType::Text; 3]);
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
    fn typed_fields_arrive_as_their_text_at_any_split() {
        let (id, infinite, day) = (
            42i64.to_be_bytes(),
            i64::MAX.to_be_bytes(),
            0i32.to_be_bytes(),
        );
        let data = encode(&[
            vec![
                Some(&id[..]),
                Some(&b"note"[..]),
                Some(&infinite[..]),
                Some(&day[..]),
            ],
            vec![None, Some(&b""[..]), None, None],
        ]);
        let wire_types = vec![
            WireType::Int8,
            WireType::Text,
            WireType::Timestamp,
            WireType::Date,
        ];
        for chunk_size in 1..=data.len() {
            let mut decoder = BinaryCopyDecoder::new(wire_types.clone());
            let mut seen: Vec<Vec<Option<String>>> = Vec::new();
            for chunk in data.chunks(chunk_size) {
                decoder
                    .feed(chunk, |cells| {
                        seen.push(
                            cells
                                .iter()
                                .map(|c| c.map(|c| String::from_utf8_lossy(c).into_owned()))
                                .collect(),
                        );
                        Ok(())
                    })
                    .expect("decode");
            }
            decoder.finish().expect("complete");
            let text = |s: &str| Some(s.to_string());
            assert_eq!(
                seen,
                [
                    vec![text("42"), text("note"), None, text("2000-01-01")],
                    vec![None, text(""), None, None],
                ],
                "chunk size {chunk_size}"
            );
        }
    }

    #[test]
    fn rejects_truncated_or_foreign_streams() {
        let data = encode(&[vec![Some(b"1")]]);
        let mut decoder = BinaryCopyDecoder::new(vec![WireType::Text]);
        decoder
            .feed(&data[..data.len() - 3], |_| Ok(()))
            .expect("partial is fine");
        assert!(decoder.finish().is_err());

        let mut decoder = BinaryCopyDecoder::new(vec![WireType::Text]);
        assert!(decoder.feed(b"id,name\r\n1,x\r\n", |_| Ok(())).is_err());

        let mut decoder = BinaryCopyDecoder::new(vec![WireType::Text; 2]);
        assert!(decoder.feed(&data, |_| Ok(())).is_err());
    }
}
