//! Progress of a long step (rows exported, bytes sent) for a person watching a terminal: one line
//! on standard error, redrawn at most a few times a second, and a final line when the step ends.
//!
//! Shown only when someone can see it: standard error is a terminal, the logs are text, and the
//! process is not an export Job's. Anywhere else (a Job, a pipe, a log collector) nothing is
//! written, so standard error stays the logs alone, machine-readable.

use std::io::Write;
use std::time::{Duration, Instant};

/// Shortest time between two redraws.
pub const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// What decides whether progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surroundings {
    /// `std::io::stderr().is_terminal()`.
    pub stderr_is_terminal: bool,
    /// Logs are JSON lines for a collector.
    pub json_logs: bool,
    /// The process is an export Job's (the operator sets `JOB_NAME`).
    pub in_job: bool,
    /// `TERM=dumb`: the terminal cannot redraw a line.
    pub dumb_terminal: bool,
}

impl Surroundings {
    /// This process's surroundings.
    pub fn of_this_process(json_logs: bool) -> Self {
        use std::io::IsTerminal;
        Self {
            stderr_is_terminal: std::io::stderr().is_terminal(),
            json_logs,
            in_job: std::env::var_os("JOB_NAME").is_some_and(|name| !name.is_empty()),
            dumb_terminal: std::env::var("TERM").is_ok_and(|term| term == "dumb"),
        }
    }

    /// Whether to show progress: only to a person at a terminal, never in a Job or a pipe.
    pub fn show_progress(self) -> bool {
        self.stderr_is_terminal && !self.json_logs && !self.in_job && !self.dumb_terminal
    }
}

/// When the next redraw is due.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Instant,
}

impl Throttle {
    /// The first redraw is due `every` after `start`, so a quick step draws only its final line.
    pub fn new(start: Instant, every: Duration) -> Self {
        Self { every, last: start }
    }

    /// Whether to redraw at `now`; if so, the next one is due `every` later.
    pub fn due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last) < self.every {
            return false;
        }
        self.last = now;
        true
    }
}

/// One progress line: `label: 12,345 rows, 4.2MiB, 10,200 rows/s` while rows are counted, or
/// `label: 4.2MiB of 10.0MiB (42%), 3.4MiB/s` while bytes of a known total are sent.
pub fn progress_line(
    label: &str,
    rows: Option<u64>,
    bytes: u64,
    total: Option<u64>,
    elapsed: Duration,
) -> String {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = |amount: u64| amount as f64 / seconds;
    match (rows, total) {
        (Some(rows), _) => format!(
            "{label}: {} rows, {}, {} rows/s",
            thousands(rows),
            human_bytes(bytes),
            thousands(rate(rows) as u64)
        ),
        (None, Some(total)) => {
            // Nothing to send is all of it sent.
            let percent = bytes.saturating_mul(100).checked_div(total).unwrap_or(100);
            format!(
                "{label}: {} of {} ({percent}%), {}/s",
                human_bytes(bytes),
                human_bytes(total),
                human_bytes(rate(bytes) as u64)
            )
        }
        (None, None) => format!(
            "{label}: {}, {}/s",
            human_bytes(bytes),
            human_bytes(rate(bytes) as u64)
        ),
    }
}

/// The progress of one step; does nothing when hidden.
pub struct Progress {
    shown: Option<Shown>,
}

struct Shown {
    label: String,
    total: Option<u64>,
    started: Instant,
    throttle: Throttle,
    out: Box<dyn Write + Send>,
    /// Something is on the line.
    drawn: bool,
    finished: bool,
}

impl Progress {
    /// Progress nobody sees.
    pub fn hidden() -> Self {
        Self { shown: None }
    }

    /// Progress on standard error when `show`, else hidden.
    pub fn on_stderr(show: bool, label: impl Into<String>, total: Option<u64>) -> Self {
        if show {
            Self::to_writer(label, total, Box::new(std::io::stderr()))
        } else {
            Self::hidden()
        }
    }

    /// Progress written to `out` (for tests).
    pub fn to_writer(
        label: impl Into<String>,
        total: Option<u64>,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let started = Instant::now();
        Self {
            shown: Some(Shown {
                label: label.into(),
                total,
                started,
                throttle: Throttle::new(started, REDRAW_EVERY),
                out,
                drawn: false,
                finished: false,
            }),
        }
    }

    pub fn is_shown(&self) -> bool {
        self.shown.is_some()
    }

    /// The total, once known (a stream's size is known only at its end).
    pub fn set_total(&mut self, total: u64) {
        if let Some(shown) = self.shown.as_mut() {
            shown.total = Some(total);
        }
    }

    /// The counts so far; redraws the line when one is due.
    pub fn update(&mut self, rows: Option<u64>, bytes: u64) {
        let Some(shown) = self.shown.as_mut() else {
            return;
        };
        let now = Instant::now();
        if shown.finished || !shown.throttle.due(now) {
            return;
        }
        shown.draw(rows, bytes, now, "");
    }

    /// The final counts: the line drawn once more and ended, so what follows starts on its own line.
    pub fn finish(&mut self, rows: Option<u64>, bytes: u64) {
        let Some(shown) = self.shown.as_mut() else {
            return;
        };
        if shown.finished {
            return;
        }
        shown.finished = true;
        shown.draw(rows, bytes, Instant::now(), "\n");
    }
}

/// A step that ends early (an error) ends its line, so what is written next starts on its own.
impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(shown) = self
            .shown
            .as_mut()
            .filter(|shown| shown.drawn && !shown.finished)
        {
            let _ = writeln!(shown.out);
            let _ = shown.out.flush();
        }
    }
}

impl Shown {
    fn draw(&mut self, rows: Option<u64>, bytes: u64, now: Instant, end: &str) {
        self.drawn = true;
        let line = progress_line(
            &self.label,
            rows,
            bytes,
            self.total,
            now.duration_since(self.started),
        );
        // Carriage return and erase-line redraw in place; a failed write only loses the display.
        let _ = write!(self.out, "\r\x1b[K{line}{end}");
        let _ = self.out.flush();
    }
}

/// A size for people: bytes below 1 KiB, else KiB, MiB or GiB with one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// `1234567` as `1,234,567`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn progress_is_shown_only_to_a_person_at_a_terminal() {
        let person = Surroundings {
            stderr_is_terminal: true,
            json_logs: false,
            in_job: false,
            dumb_terminal: false,
        };
        assert!(person.show_progress());
        for quiet in [
            Surroundings {
                stderr_is_terminal: false,
                ..person
            },
            Surroundings {
                json_logs: true,
                ..person
            },
            Surroundings {
                in_job: true,
                ..person
            },
            Surroundings {
                dumb_terminal: true,
                ..person
            },
        ] {
            assert!(!quiet.show_progress(), "{quiet:?}");
        }
    }

    #[test]
    fn redraws_are_at_most_one_per_interval() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start, REDRAW_EVERY);
        assert!(!throttle.due(start));
        assert!(!throttle.due(start + Duration::from_millis(249)));
        assert!(throttle.due(start + Duration::from_millis(250)));
        assert!(!throttle.due(start + Duration::from_millis(400)));
        assert!(throttle.due(start + Duration::from_millis(520)));
        // A thousand updates within one second draw at most four times.
        let mut throttle = Throttle::new(start, REDRAW_EVERY);
        let drawn = (0..1000)
            .filter(|step| throttle.due(start + Duration::from_millis(*step)))
            .count();
        assert!(drawn <= 4, "{drawn}");
    }

    #[test]
    fn lines_say_rows_bytes_and_rate() {
        assert_eq!(
            progress_line(
                "exported",
                Some(1_234_567),
                3 * 1024 * 1024,
                None,
                Duration::from_secs(2)
            ),
            "exported: 1,234,567 rows, 3.0MiB, 617,283 rows/s"
        );
        assert_eq!(
            progress_line(
                "sent",
                None,
                5 * 1024 * 1024,
                Some(10 * 1024 * 1024),
                Duration::from_secs(5)
            ),
            "sent: 5.0MiB of 10.0MiB (50%), 1.0MiB/s"
        );
        assert_eq!(
            progress_line("sent", None, 0, Some(0), Duration::ZERO),
            "sent: 0B of 0B (100%), 0B/s"
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0GiB");
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_quick_step_draws_only_its_final_line_and_hidden_progress_nothing() {
        let out = Shared::default();
        let mut progress = Progress::to_writer("exported", None, Box::new(out.clone()));
        for rows in 0..10_000 {
            progress.update(Some(rows), rows * 10);
        }
        progress.finish(Some(10_000), 100_000);
        progress.finish(Some(10_000), 100_000);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with("\r\x1b[Kexported: 10,000 rows, 97.7KiB, "),
            "{text:?}"
        );
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with(" rows/s\n"), "{text:?}");

        // A step dropped midway ends the line it drew; one that drew nothing writes nothing.
        let out = Shared::default();
        let mut progress = Progress::to_writer("sent", Some(100), Box::new(out.clone()));
        progress.shown.as_mut().unwrap().throttle =
            Throttle::new(Instant::now() - REDRAW_EVERY, REDRAW_EVERY);
        progress.update(None, 10);
        drop(progress);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with("\r\x1b[Ksent: 10B of 100B (10%), "),
            "{text:?}"
        );
        assert!(text.ends_with("/s\n"), "{text:?}");
        let out = Shared::default();
        drop(Progress::to_writer("sent", None, Box::new(out.clone())));
        assert!(out.0.lock().unwrap().is_empty());

        let mut hidden = Progress::on_stderr(false, "exported", None);
        assert!(!hidden.is_shown());
        hidden.update(Some(1), 1);
        hidden.finish(Some(1), 1);
    }
}
