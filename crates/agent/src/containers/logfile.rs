//! Container logs in the CRI format that Kubernetes' kubelet writes and reads:
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`, one line each.
//! A line longer than [`MAX_LINE`] is split into partial (`P`) records. Like the
//! kubelet's `containerLogMaxSize`/`containerLogMaxFiles`, a log that would grow past
//! [`Rotation::max_bytes`] is renamed to `<log>.1` (older ones shift to `.2`, … and the
//! oldest beyond [`Rotation::max_files`] is dropped) and a fresh file started.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

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

/// When a log rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rotation {
    /// Largest size of one file (the kubelet's default: 10 MiB).
    pub max_bytes: u64,
    /// Most files kept, the current one included (the kubelet's default: 5).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 10 << 20,
            max_files: 5,
        }
    }
}

/// The rotated files of the log at `path`, oldest first, then `path` itself.
pub fn log_files(path: &Path, rotation: Rotation) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..rotation.max_files.max(1))
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_path_buf());
    files
}

/// `<path>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends records to a log file, rotating it.
pub struct LogWriter {
    file: File,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
}

impl LogWriter {
    /// Opens (creating) the log at `path` for appending, with the default rotation.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::with_rotation(path, Rotation::default())
    }

    /// Opens (creating) the log at `path` for appending, rotating as `rotation` says.
    pub fn with_rotation(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            rotation,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.rotation.max_files <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.rotation.max_files - 1).rev() {
            match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
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
        if self.size > 0 && self.size + record.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.size += record.len() as u64;
        Ok(())
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

/// Copies `reader` into the log as it arrives, without waiting for line ends: each
/// read's complete lines become full records and a trailing remainder a partial one.
/// For terminals, whose prompts end without a newline and must reach attached clients.
pub fn copy_chunks(mut reader: impl Read, stream: Stream, writer: &Arc<Mutex<LogWriter>>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let Ok(mut log) = writer.lock() else { return };
        let mut rest = &buffer[..read];
        while !rest.is_empty() {
            let (line, complete, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(end) => (&rest[..end], true, &rest[end + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            if log.write_record(stream, !complete, line).is_err() {
                return;
            }
            rest = next;
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
    fn logs_rotate_and_keep_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_bytes: 200,
            max_files: 3,
        };
        let mut writer = LogWriter::with_rotation(&path, rotation).unwrap();
        for i in 0..40 {
            writer
                .write_record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        let files = log_files(&path, rotation);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(!dir.path().join("container.log.3").exists());
        let mut contents = Vec::new();
        for file in &files {
            let text = std::fs::read(file).unwrap();
            assert!(text.len() <= 200, "{file:?} has {} bytes", text.len());
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                contents.push(String::from_utf8(parse_record(line).unwrap().content).unwrap());
            }
        }
        // Oldest first and contiguous up to the last line written.
        assert_eq!(contents.last().map(String::as_str), Some("line 39"));
        let first: usize = contents[0].trim_start_matches("line ").parse().unwrap();
        let expected: Vec<String> = (first..40).map(|i| format!("line {i}")).collect();
        assert_eq!(contents, expected);
        assert!(first > 0);
    }

    #[test]
    fn malformed_lines_are_rejected() {
        assert!(parse_record(b"2024-01-01T00:00:00Z stdin F x").is_none());
        assert!(parse_record(b"garbage").is_none());
        let rec = parse_record(b"2024-01-01T00:00:00Z stdout F a b c").unwrap();
        assert_eq!(rec.content, b"a b c");
    }
}
