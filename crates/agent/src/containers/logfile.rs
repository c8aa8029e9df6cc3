//! Container logs in the CRI format that Kubernetes' kubelet writes and reads:
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`, one line each.
//! A line longer than [`MAX_LINE`] is split into partial (`P`) records.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Longest content of one record; longer lines become several partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which standard stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends records to a log file.
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    /// Opens (creating) the log at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    /// Writes one record.
    pub fn write_record(
        &mut self,
        stream: Stream,
        partial: bool,
        content: &[u8],
    ) -> std::io::Result<()> {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let tag = if partial { "P" } else { "F" };
        let mut record = Vec::with_capacity(content.len() + 48);
        record.extend_from_slice(format!("{time} {} {tag} ", stream.as_str()).as_bytes());
        record.extend_from_slice(content);
        record.push(b'\n');
        self.file.write_all(&record)
    }
}

/// Copies `reader` into `writer` line by line until end of file.
pub fn copy_stream(reader: impl Read, stream: Stream, writer: &Arc<Mutex<LogWriter>>) {
    let mut reader = BufReader::with_capacity(MAX_LINE, reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let complete = line.last() == Some(&b'\n');
                if complete {
                    line.pop();
                }
                let Ok(mut log) = writer.lock() else { return };
                if log.write_record(stream, !complete, &line).is_err() {
                    return;
                }
            }
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The timestamp as written.
    pub time: String,
    /// The stream.
    pub stream: Stream,
    /// True when the line continues in the next record.
    pub partial: bool,
    /// The bytes of the line (without newline).
    pub content: Vec<u8>,
}

/// Parses one line of a log file; `None` for a malformed line.
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        time,
        stream,
        partial,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_long_lines_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let writer = Arc::new(Mutex::new(LogWriter::open(&path).unwrap()));
        let mut input = b"hello\nworld\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.push(b'\n');
        copy_stream(&input[..], Stream::Stderr, &writer);
        let text = std::fs::read(&path).unwrap();
        let records: Vec<Record> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap())
            .collect();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].content, b"hello");
        assert_eq!(records[1].content, b"world");
        assert!(records[2].partial && records[2].content.len() == MAX_LINE);
        assert!(!records[3].partial && records[3].content.len() == 10);
        assert!(records.iter().all(|r| r.stream == Stream::Stderr));
    }

    #[test]
    fn malformed_lines_are_rejected() {
        assert!(parse_record(b"2024-01-01T00:00:00Z stdin F x").is_none());
        assert!(parse_record(b"garbage").is_none());
        let rec = parse_record(b"2024-01-01T00:00:00Z stdout F a b c").unwrap();
        assert_eq!(rec.content, b"a b c");
    }
}
