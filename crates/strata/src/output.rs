//! Diagnostics and errors for people: the tracing subscriber, one-line error rendering,
//! and the JSON error log that runc callers (podman, containerd, conmon) read.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::oci::LogFormat;

/// Strata's warnings (the node agent's, its network's and the control loops' among them:
/// a pod network or service rule that cannot be written must not fail silently);
/// libcgroups warns about every controller this kernel lacks, and libcontainer logs each
/// error that Strata reports itself, so those stay off.
pub const DEFAULT_FILTER: &str = "off,strata=warn,strata_runtime=warn,strata_cgroups=warn,\
strata_agent=warn,strata_net=warn,strata_controllers=warn,strata_scheduler=warn,\
strata_functions=warn";

/// Installs the subscriber: to `log_file` when given (runc's `--log`), else to stderr.
pub fn init_logging(filter: Option<&str>, log_file: Option<&Path>, format: LogFormat) {
    let filter = EnvFilter::try_new(filter.unwrap_or(DEFAULT_FILTER))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let file =
        log_file.and_then(|path| OpenOptions::new().create(true).append(true).open(path).ok());
    let result = match (file, format) {
        (Some(file), LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_writer(Mutex::new(file))
            .try_init(),
        (Some(file), LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init(),
        (None, _) => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests, nested calls) keeps the first subscriber.
    let _ = result;
}

/// The error and its causes on one line, repeated messages dropped.
pub fn one_line(err: &anyhow::Error) -> String {
    strata_agent::containers::monitor::one_line(err.as_ref())
}

/// Prints `strata: <error chain>` on stderr.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("strata: {}", one_line(err));
}

/// Prints rows as a left-aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{:<width$}   ", cell, width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Sizes in decimal units as Docker prints them: "512B", "4.2MB", "1.3GB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[unit]
    }
}

/// "5 seconds", "3 minutes" … for ages and durations.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=1 => "1 second".to_string(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "1 minute".to_string(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "1 hour".to_string(),
        7200..=86399 => format!("{} hours", s / 3600),
        86400..=172_799 => "1 day".to_string(),
        _ => format!("{} days", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_is_one_line_without_repeats() {
        let inner = anyhow::anyhow!("no such file");
        let err = inner
            .context("cannot read config.json: no such file")
            .context("create failed");
        assert_eq!(
            one_line(&err),
            "create failed: cannot read config.json: no such file"
        );
    }

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "1 second");
        assert_eq!(human_duration(42), "42 seconds");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(90_000), "1 day");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_200_000), "4.2MB");
        assert_eq!(human_size(1_000), "1kB");
    }
}
