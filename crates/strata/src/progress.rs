//! Per-blob progress of pulls and pushes: indicatif bars on a terminal, one line per
//! finished blob otherwise (Docker's wording), nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_image::Digest;
use strata_image::registry::{BlobOutcome, Progress, RegistryError};

/// Which way blobs move.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Downloading.
    Pull,
    /// Uploading.
    Push,
}

/// The progress display of one pull or push.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    terminal: bool,
    quiet: bool,
    direction: Direction,
}

fn short(digest: &Digest) -> &str {
    &digest.hex()[..12]
}

fn describe(outcome: &BlobOutcome) -> String {
    match outcome {
        BlobOutcome::AlreadyPresent => "Already exists".to_string(),
        BlobOutcome::Downloaded => "Pull complete".to_string(),
        BlobOutcome::AlreadyExists => "Layer already exists".to_string(),
        BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
        BlobOutcome::Uploaded => "Pushed".to_string(),
        BlobOutcome::UploadedInChunks(n) => format!("Pushed ({n} chunks)"),
    }
}

impl Bars {
    /// A display on stderr (bars only when it is a terminal).
    pub fn new(direction: Direction, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal && !quiet {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            terminal,
            quiet,
            direction,
        }
    }

    fn bar(&self, digest: &Digest, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(digest.clone())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix}: {msg:<14} [{bar:30}] {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(short(digest).to_string());
                bar.set_message(match self.direction {
                    Direction::Pull => "Downloading",
                    Direction::Push => "Pushing",
                });
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn started(&self, digest: &Digest, size: u64) {
        if self.terminal && !self.quiet {
            self.bar(digest, size);
        }
    }

    fn advanced(&self, digest: &Digest, done: u64) {
        if self.terminal && !self.quiet {
            self.bar(digest, 0).set_position(done);
        }
    }

    fn retrying(&self, digest: &Digest, attempt: u32, error: &RegistryError) {
        if self.quiet {
            return;
        }
        if self.terminal {
            self.bar(digest, 0)
                .set_message(format!("Retrying ({attempt})"));
        } else {
            println!("{}: Retrying ({attempt}): {error}", short(digest));
        }
    }

    fn finished(&self, digest: &Digest, outcome: &BlobOutcome) {
        if self.quiet {
            return;
        }
        if self.terminal {
            let bar = self.bar(digest, 0);
            bar.set_style(
                ProgressStyle::with_template("{prefix}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.finish_with_message(describe(outcome));
        } else {
            println!("{}: {}", short(digest), describe(outcome));
        }
    }
}

/// A reader that advances a byte bar (for `image import` of a file).
pub struct ReadProgress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: std::io::Read> ReadProgress<R> {
    /// Shows `label` with a bar of `total` bytes on stderr when it is a terminal.
    pub fn new(inner: R, total: u64, label: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { inner, bar }
    }
}

impl<R: std::io::Read> std::io::Read for ReadProgress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl<R> Drop for ReadProgress<R> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
