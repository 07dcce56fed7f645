//! How `keelctl image pull | load` shows a job's progress: a bar per layer redrawn in
//! place on a terminal, plain lines when piped (at most one a second per layer, plus
//! each phase's end), JSON events with `--json`. The formatting is pure; `Viewer`
//! only decides when to print.

use keel_supervisor::control::ProgressLine;
use keel_supervisor::worker::{ItemInfo, JobId};
use std::io::Write;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars redrawn in place (stdout is a terminal).
    Bar,
    /// One line per update, rate-limited (stdout is a pipe or file).
    Lines,
    /// One JSON event per line.
    Json,
}

/// Least time between two plain lines about one item.
pub const LINE_INTERVAL: Duration = Duration::from_secs(1);

const BAR_WIDTH: usize = 24;

/// "12.3 MiB", "512 KiB", "42 B".
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// "1m05s", "42s".
pub fn eta(secs: f64) -> String {
    let secs = secs.round() as u64;
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// "abc123def456 download  12.3 MiB/100.0 MiB  1.2 MiB/s  ETA 1m12s" (no bar).
pub fn line(item: &ItemInfo) -> String {
    let p = &item.progress;
    let amount = match p.total {
        Some(total) => format!("{}/{}", size(p.done), size(total)),
        None => size(p.done),
    };
    let mut text = format!("{} {:<8} {amount}", p.item, p.phase);
    if item.rate > 0.0 && p.total != Some(p.done) {
        text.push_str(&format!("  {}/s", size(item.rate as u64)));
        if let Some(left) = item.eta_secs() {
            text.push_str(&format!("  ETA {}", eta(left)));
        }
    }
    if p.total == Some(p.done) {
        text.push_str("  done");
    }
    text
}

/// The same with a bar: "abc123def456 download [#########.............] 12.3 MiB/…".
pub fn bar(item: &ItemInfo) -> String {
    let p = &item.progress;
    let filled = match p.total {
        Some(total) if total > 0 => ((p.done.min(total) as f64 / total as f64) * BAR_WIDTH as f64) as usize,
        _ => 0,
    };
    let rest = line(item);
    let (head, tail) = rest.split_at(p.item.len());
    format!("{head} [{}{}]{tail}", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled))
}

/// A JSON progress event: `{"event":"progress","job":3,"item":…,"phase":…,"done":…,"total":…,"rate":…}`.
pub fn json_event(job: JobId, item: &ItemInfo) -> String {
    let mut value = serde_json::to_value(item).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("event".into(), "progress".into());
        map.insert("job".into(), job.0.into());
        if let Some(left) = item.eta_secs() {
            map.insert("eta_secs".into(), left.into());
        }
    }
    value.to_string()
}

/// Prints progress lines as they come, in one [`Mode`].
pub struct Viewer<W: Write> {
    out: W,
    mode: Mode,
    items: Vec<ItemInfo>,
    printed_at: Vec<Option<Instant>>,
    drawn: usize,
    job: Option<JobId>,
}

impl<W: Write> Viewer<W> {
    /// A viewer writing to `out`.
    pub fn new(out: W, mode: Mode) -> Self {
        Viewer { out, mode, items: Vec::new(), printed_at: Vec::new(), drawn: 0, job: None }
    }

    /// The job the lines are about, once the first line named it.
    pub fn job(&self) -> Option<JobId> {
        self.job
    }

    /// Take one progress line.
    pub fn on_line(&mut self, line: ProgressLine, now: Instant) {
        if self.job.is_none() {
            self.job = Some(line.job);
            if self.mode == Mode::Json {
                let _ = writeln!(self.out, "{}", serde_json::json!({ "event": "job", "job": line.job.0 }));
            }
        }
        let Some(item) = line.progress else { return };
        let index = match self.items.iter().position(|i| i.progress.item == item.progress.item) {
            Some(index) => index,
            None => {
                self.items.push(item.clone());
                self.printed_at.push(None);
                self.items.len() - 1
            }
        };
        let phase_changed = self.items[index].progress.phase != item.progress.phase;
        self.items[index] = item.clone();
        match self.mode {
            Mode::Json => {
                let _ = writeln!(self.out, "{}", json_event(line.job, &item));
            }
            Mode::Lines => {
                let finished = item.progress.total == Some(item.progress.done);
                let due = self.printed_at[index].is_none_or(|at| now.duration_since(at) >= LINE_INTERVAL);
                if due || finished || phase_changed {
                    self.printed_at[index] = Some(now);
                    let _ = writeln!(self.out, "{}", self::line(&item));
                }
            }
            Mode::Bar => self.redraw(),
        }
        let _ = self.out.flush();
    }

    fn redraw(&mut self) {
        if self.drawn > 0 {
            let _ = write!(self.out, "\x1b[{}A", self.drawn);
        }
        for item in &self.items {
            let _ = write!(self.out, "\r\x1b[2K{}\n", bar(item));
        }
        self.drawn = self.items.len();
    }

    /// The writer back (tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_supervisor::worker::Progress;

    fn item(done: u64, rate: f64) -> ItemInfo {
        ItemInfo { progress: Progress { item: "abc123def456".into(), phase: "download".into(), done, total: Some(100 << 20) }, rate }
    }

    fn progress(done: u64) -> ProgressLine {
        ProgressLine::new(9, JobId(3), Some(item(done, (1 << 20) as f64)))
    }

    #[test]
    fn a_line_has_bytes_rate_and_eta() {
        assert_eq!(line(&item(25 << 20, (5 << 20) as f64)), "abc123def456 download 25.0 MiB/100.0 MiB  5.0 MiB/s  ETA 15s");
        assert_eq!(line(&item(100 << 20, 1.0)), "abc123def456 download 100.0 MiB/100.0 MiB  done");
        assert!(bar(&item(50 << 20, 0.0)).starts_with("abc123def456 [############............] download 50.0 MiB"));
        assert_eq!(eta(125.0), "2m05s");
    }

    #[test]
    fn piped_lines_are_rate_limited_but_show_the_end() {
        let mut viewer = Viewer::new(Vec::new(), Mode::Lines);
        let t0 = Instant::now();
        viewer.on_line(ProgressLine::new(9, JobId(3), None), t0);
        viewer.on_line(progress(1 << 20), t0);
        viewer.on_line(progress(2 << 20), t0 + Duration::from_millis(100));
        viewer.on_line(progress(3 << 20), t0 + LINE_INTERVAL);
        viewer.on_line(progress(100 << 20), t0 + LINE_INTERVAL + Duration::from_millis(1));
        assert_eq!(viewer.job(), Some(JobId(3)));
        let text = String::from_utf8(viewer.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains(" 1.0 MiB/100.0 MiB") && lines[2].ends_with("done"), "{text}");
        assert!(!text.contains('\x1b'), "no escapes in a pipe");
    }

    #[test]
    fn a_terminal_gets_bars_redrawn_in_place() {
        let mut viewer = Viewer::new(Vec::new(), Mode::Bar);
        let t0 = Instant::now();
        viewer.on_line(progress(1 << 20), t0);
        viewer.on_line(progress(50 << 20), t0);
        let text = String::from_utf8(viewer.into_inner()).unwrap();
        assert!(text.contains("\x1b[1A") && text.contains("[############............]"), "{text:?}");
    }

    #[test]
    fn json_events_carry_the_job_and_the_numbers() {
        let mut viewer = Viewer::new(Vec::new(), Mode::Json);
        viewer.on_line(ProgressLine::new(9, JobId(3), None), Instant::now());
        viewer.on_line(progress(50 << 20), Instant::now());
        let text = String::from_utf8(viewer.into_inner()).unwrap();
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events[0], serde_json::json!({"event": "job", "job": 3}));
        assert_eq!(events[1]["event"], "progress");
        assert_eq!(events[1]["done"], 50u64 << 20);
        assert_eq!(events[1]["eta_secs"], 50.0);
    }
}
