//! Reading container logs as `kubectl logs` shows them: the rotated files and the current
//! one in order, turned back into the container's output (optionally with timestamps),
//! with `tailLines`, `sinceTime` and `limitBytes` applied; and a [`Follower`] that picks up
//! what is appended later, across rotations.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::logfile::{Record, Rotation, log_files, parse_record};

/// What to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last this many lines.
    pub tail_lines: Option<usize>,
    /// Only lines logged at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

/// Appends the output form of `record` to `out`.
fn format(record: &Record, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(record.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&record.content);
    if !record.partial {
        out.push(b'\n');
    }
}

fn wanted(record: &Record, since: Option<DateTime<Utc>>) -> bool {
    let Some(since) = since else { return true };
    DateTime::parse_from_rfc3339(&record.time).is_ok_and(|t| t >= since)
}

/// The records of complete lines in `bytes`; the incomplete rest stays in `bytes`.
fn take_records(bytes: &mut Vec<u8>) -> Vec<Record> {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = bytes.split_off(end + 1);
    let records = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_record)
        .collect();
    *bytes = rest;
    records
}

/// Reads the log at `path` (and its rotated files) as `options` say. Returns the output
/// and a [`Follower`] at the end of what was read.
pub fn read(
    path: &Path,
    rotation: Rotation,
    options: &LogOptions,
) -> std::io::Result<(Vec<u8>, Follower)> {
    // Open the current file first: a rotation while the older files are read then shows
    // up as a changed inode to the follower instead of as lost lines.
    let mut current = match File::open(path) {
        Ok(file) => Some(file),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    for file in log_files(path, rotation) {
        if file == path {
            continue;
        }
        match File::open(&file) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    if let Some(file) = current.as_mut() {
        file.read_to_end(&mut bytes)?;
    }
    let mut pending = bytes;
    let records: Vec<Record> = take_records(&mut pending)
        .into_iter()
        .filter(|r| wanted(r, options.since))
        .collect();
    let start = match options.tail_lines {
        Some(n) => tail_start(&records, n),
        None => 0,
    };
    let mut out = Vec::new();
    for record in &records[start..] {
        format(record, options.timestamps, &mut out);
    }
    if let Some(limit) = options.limit_bytes {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let follower = Follower {
        path: path.to_path_buf(),
        file: current,
        pending,
        options: LogOptions {
            tail_lines: None,
            ..options.clone()
        },
        written: out.len() as u64,
    };
    Ok((out, follower))
}

/// Index of the first record of the last `n` lines (a line may span partial records).
fn tail_start(records: &[Record], n: usize) -> usize {
    if n == 0 {
        return records.len();
    }
    let mut lines = 0;
    for (i, record) in records.iter().enumerate().rev() {
        if !record.partial {
            lines += 1;
            if lines > n {
                return i + 1;
            }
        }
    }
    0
}

/// Reads what is appended to a log after [`read`], following it across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
    options: LogOptions,
    written: u64,
}

impl Follower {
    /// The output appended since the last call (empty when nothing was). Once
    /// `limitBytes` is reached it returns nothing more; see [`Follower::exhausted`].
    pub fn poll(&mut self) -> std::io::Result<Vec<u8>> {
        let records = self.poll_records()?;
        let mut out = Vec::new();
        for record in records.iter().filter(|r| wanted(r, self.options.since)) {
            format(record, self.options.timestamps, &mut out);
        }
        if let Some(limit) = self.options.limit_bytes {
            let left = limit.saturating_sub(self.written);
            out.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        }
        self.written += out.len() as u64;
        Ok(out)
    }

    /// The records appended since the last call, unfiltered (for `attach`, which needs
    /// to know each record's stream).
    pub fn poll_records(&mut self) -> std::io::Result<Vec<Record>> {
        let mut bytes = std::mem::take(&mut self.pending);
        if let Some(file) = self.file.as_mut() {
            file.read_to_end(&mut bytes)?;
        }
        if self.rotated()? {
            // The old file is complete (the writer moved on): read its rest, then the new.
            if let Some(file) = self.file.as_mut() {
                file.read_to_end(&mut bytes)?;
            }
            self.file = File::open(&self.path).ok();
            if let Some(file) = self.file.as_mut() {
                file.seek(SeekFrom::Start(0))?;
                file.read_to_end(&mut bytes)?;
            }
        }
        let records = take_records(&mut bytes);
        self.pending = bytes;
        Ok(records)
    }

    /// True once `limitBytes` of output have been produced.
    pub fn exhausted(&self) -> bool {
        self.options
            .limit_bytes
            .is_some_and(|limit| self.written >= limit)
    }

    fn rotated(&self) -> std::io::Result<bool> {
        let now = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.ino(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err),
        };
        Ok(match &self.file {
            Some(file) => file.metadata()?.ino() != now,
            None => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::logfile::{LogWriter, Stream};

    fn write(writer: &mut LogWriter, lines: std::ops::Range<usize>) {
        for i in lines {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            writer
                .write_record(stream, false, format!("line {i}").as_bytes())
                .unwrap();
        }
    }

    fn text(bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn tail_and_limit_apply_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_bytes: 300,
            max_files: 10,
        };
        let mut writer = LogWriter::with_rotation(&path, rotation).unwrap();
        write(&mut writer, 0..30);
        assert!(dir.path().join("container.log.2").exists());
        let all = read(&path, rotation, &LogOptions::default()).unwrap().0;
        let expected: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        assert_eq!(text(&all), expected);
        let options = LogOptions {
            tail_lines: Some(3),
            ..Default::default()
        };
        let tail = read(&path, rotation, &options).unwrap().0;
        assert_eq!(text(&tail), ["line 27", "line 28", "line 29"]);
        let options = LogOptions {
            limit_bytes: Some(10),
            ..Default::default()
        };
        assert_eq!(read(&path, rotation, &options).unwrap().0, b"line 0\nlin");
        let options = LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        let stamped = String::from_utf8(read(&path, rotation, &options).unwrap().0).unwrap();
        let (time, rest) = stamped.split_once(' ').unwrap();
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{stamped}");
        assert_eq!(rest, "line 29\n");
    }

    #[test]
    fn since_filters_older_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:00.000000001Z stdout F old\n2024-06-01T00:00:00Z stdout F new\n",
        )
        .unwrap();
        let options = LogOptions {
            since: Some("2024-03-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        let out = read(&path, Rotation::default(), &options).unwrap().0;
        assert_eq!(out, b"new\n");
    }

    #[test]
    fn the_follower_continues_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_bytes: 200,
            max_files: 3,
        };
        let mut writer = LogWriter::with_rotation(&path, rotation).unwrap();
        write(&mut writer, 0..2);
        let (out, mut follower) = read(&path, rotation, &LogOptions::default()).unwrap();
        assert_eq!(text(&out), ["line 0", "line 1"]);
        assert!(follower.poll().unwrap().is_empty());
        let mut seen = Vec::new();
        for i in 2..20 {
            write(&mut writer, i..i + 1);
            seen.extend(text(&follower.poll().unwrap()));
        }
        let expected: Vec<String> = (2..20).map(|i| format!("line {i}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_missing_log_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let (out, mut follower) = read(&path, Rotation::default(), &LogOptions::default()).unwrap();
        assert!(out.is_empty());
        std::fs::write(&path, "2024-01-01T00:00:00Z stdout F late\n").unwrap();
        assert_eq!(follower.poll().unwrap(), b"late\n");
    }
}
