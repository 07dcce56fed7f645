//! Unit tests of container logging: the pure splitter, formatter and timestamp code on
//! values, the writer and reader on a scratch directory under the system temp dir.

use super::timestamp::{civil_from_days, days_from_civil};
use super::*;
use crate::spec::ContainerName;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A scratch directory, unique per test and process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("keel-logs-{}-{n}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    /// The log directory inside the scratch dir (not created: `LogFile::open` must).
    fn logs(&self) -> PathBuf {
        self.0.join("var/log/keel")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn name(n: &str) -> ContainerName {
    ContainerName::new(n).unwrap()
}

fn at_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// Feed `chunks` one after the other and collect every line, then the flushed rest.
fn split_all(splitter: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<String> {
    let mut lines: Vec<String> = chunks.iter().flat_map(|c| splitter.push(c)).collect();
    lines.extend(splitter.flush());
    lines
}

// ---- timestamps -------------------------------------------------------------------

#[test]
fn timestamps_of_known_dates() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_795_993_825_123, "2026-11-29T23:10:25.123Z"),
        (951_825_600_000, "2000-02-29T12:00:00.000Z"),    // 400-year leap
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),  // 4-year leap, last ms
        (-2_203_891_200_000, "1900-03-01T00:00:00.000Z"), // 1900 is not leap
        (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"), // 2100 is not leap
        (-1, "1969-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ];
    for (ms, text) in cases {
        assert_eq!(format_timestamp(at_ms(ms)), text, "{ms} ms");
        assert_eq!(parse_timestamp(text), Some(at_ms(ms)), "{text}");
    }
}

#[test]
fn timestamp_truncates_sub_millisecond_towards_the_past() {
    assert_eq!(format_timestamp(UNIX_EPOCH + Duration::from_micros(1_999)), "1970-01-01T00:00:00.001Z");
    assert_eq!(format_timestamp(UNIX_EPOCH - Duration::from_micros(1)), "1969-12-31T23:59:59.999Z");
}

#[test]
fn civil_days_round_trip_across_eras() {
    assert_eq!(days_from_civil(0, 3, 1), -719_468);
    assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    // Every day from 1600 to 2400 (two 400-year eras), one after the other.
    let mut expected = (1600, 1, 1);
    for days in days_from_civil(1600, 1, 1)..days_from_civil(2400, 1, 1) {
        assert_eq!(civil_from_days(days), expected);
        assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
        expected = next_day(expected);
    }
}

/// The day after (y, m, d), by the textbook rules, for checking the fast arithmetic.
fn next_day((y, m, d): (i64, u32, u32)) -> (i64, u32, u32) {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
    match (d < len, m < 12) {
        (true, _) => (y, m, d + 1),
        (false, true) => (y, m + 1, 1),
        (false, false) => (y + 1, 1, 1),
    }
}

#[test]
fn parse_timestamp_rejects_impossible_and_misshapen() {
    for bad in [
        "2023-02-29T00:00:00.000Z", // not a leap year
        "1900-02-29T00:00:00.000Z", // century, not leap
        "2024-04-31T00:00:00.000Z",
        "2024-13-01T00:00:00.000Z",
        "2024-00-01T00:00:00.000Z",
        "2024-01-00T00:00:00.000Z",
        "2024-01-01T24:00:00.000Z",
        "2024-01-01T23:60:00.000Z",
        "2024-01-01T23:59:60.000Z", // no leap seconds in unix time
        "2024-01-01 00:00:00.000Z",
        "2024-01-01T00:00:00.000",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.00xZ",
        "+024-01-01T00:00:00.000Z",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
    assert!(parse_timestamp("2000-02-29T00:00:00.000Z").is_some());
}

// ---- line splitting ---------------------------------------------------------------

#[test]
fn lines_split_across_every_chunk_boundary() {
    let input = b"one\ntwo words\n\nthree\r\nfour";
    let whole = split_all(&mut LineSplitter::default(), &[input]);
    assert_eq!(whole, ["one", "two words", "", "three", "four"]);
    // Byte by byte, and every two-piece cut, give the same lines.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(split_all(&mut LineSplitter::default(), &bytes), whole);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(split_all(&mut LineSplitter::default(), &[a, b]), whole, "cut at {cut}");
    }
}

#[test]
fn push_returns_only_completed_lines() {
    let mut s = LineSplitter::default();
    assert!(s.push(b"partial").is_empty());
    assert_eq!(s.pending(), 7);
    assert_eq!(s.push(b" line\nnext"), ["partial line"]);
    assert_eq!(s.flush().as_deref(), Some("next"));
    assert_eq!(s.flush(), None);
    assert_eq!(s.pending(), 0);
}

#[test]
fn crlf_is_one_line_end_even_split_across_reads() {
    let mut s = LineSplitter::new(8);
    // "\r" arrives alone when the line is exactly at the limit: no forced cut, no "\r".
    assert!(s.push(b"12345678\r").is_empty());
    assert_eq!(s.push(b"\nab\r\n"), ["12345678", "ab"]);
    // A lone \r inside a line is kept.
    assert_eq!(s.push(b"a\rb\n"), ["a\rb"]);
}

#[test]
fn overlong_line_is_emitted_in_pieces_and_memory_stays_bounded() {
    let mut s = LineSplitter::new(16);
    let mut lines = Vec::new();
    for _ in 0..1000 {
        lines.extend(s.push(&[b'x'; 100]));
        assert!(s.pending() <= 16, "buffer grew to {}", s.pending());
    }
    lines.extend(s.push(b"\n"));
    // 100 000 = 6250 × 16: the last piece is whole when the newline comes.
    assert_eq!(lines.len(), 6250);
    assert!(lines.iter().all(|l| l.len() <= 16));
    assert_eq!(lines.concat(), "x".repeat(100_000));
    // One huge chunk behaves the same.
    let mut s = LineSplitter::new(16);
    let huge = s.push(&[b'y'; 1 << 20]);
    assert_eq!(huge.len(), (1 << 20) / 16 - 1);
    assert_eq!(s.pending(), 16);
}

#[test]
fn line_of_exactly_the_limit_stays_whole() {
    let mut s = LineSplitter::new(8);
    assert!(s.push(b"12345678").is_empty());
    assert_eq!(s.push(b"\n"), ["12345678"]);
    assert_eq!(s.push(b"123456789\n"), ["12345678", "9"]);
}

#[test]
fn overlong_cut_keeps_utf8_characters_whole() {
    // "aaaaaa" + "é" (2 bytes) + "€" (3 bytes): the limit of 8 falls inside "€".
    let mut s = LineSplitter::new(8);
    let lines = split_all(&mut s, &["aaaaaaé€z\n".as_bytes()]);
    assert_eq!(lines, ["aaaaaaé", "€z"]);
    // The character may also be split across reads.
    let euro = "€".as_bytes();
    let lines = split_all(&mut LineSplitter::new(8), &[b"aaaaaaa", &euro[..1], &euro[1..], b"\n"]);
    assert_eq!(lines, ["aaaaaaa", "€"]);
}

#[test]
fn invalid_utf8_is_shown_lossily() {
    let lines = split_all(&mut LineSplitter::default(), &[b"ok \xff\xfe end\n"]);
    assert_eq!(lines, ["ok \u{fffd}\u{fffd} end"]);
}

// ---- records ----------------------------------------------------------------------

#[test]
fn record_and_console_forms() {
    let t = at_ms(1_795_993_825_123);
    assert_eq!(format_record(t, Stream::Stdout, "hello"), "2026-11-29T23:10:25.123Z stdout hello\n");
    assert_eq!(format_record(t, Stream::Stderr, ""), "2026-11-29T23:10:25.123Z stderr \n");
    assert_eq!(format_console(&name("web"), Stream::Stdout, "hello"), "web| hello\n");
    assert_eq!(format_console(&name("web"), Stream::Stderr, "oops"), "web! oops\n");
}

#[test]
fn parse_record_reads_back_what_format_record_writes() {
    let t = at_ms(1_795_993_825_123);
    for (stream, text) in [(Stream::Stdout, "hello  world "), (Stream::Stderr, ""), (Stream::Stdout, "a b\tc")] {
        let line = format_record(t, stream, text);
        assert_eq!(parse_record(&line), Ok(Record { timestamp: t, stream, text }));
    }
    assert_eq!(serde_json::to_string(&Stream::Stderr).unwrap(), "\"stderr\"");
    let bare = parse_record("2026-11-29T23:10:25.123Z stderr").unwrap();
    assert_eq!((bare.stream, bare.text), (Stream::Stderr, ""));
}

#[test]
fn parse_record_says_which_field_is_wrong() {
    assert_eq!(parse_record("garbage"), Err(RecordError::MissingStream { line: "garbage".into() }));
    assert_eq!(parse_record("2026-11-29 stdout x"), Err(RecordError::Timestamp { text: "2026-11-29".into() }));
    assert_eq!(parse_record("2026-11-29T23:10:25.123Z stdin x"), Err(RecordError::Stream { text: "stdin".into() }));
}

// ---- writing and rotation ---------------------------------------------------------

/// A 10-byte record "rec NNNNN\n".
fn rec(i: usize) -> String {
    format!("rec {i:05}\n")
}

#[test]
fn open_creates_directory_and_0640_file_and_appends() {
    let tmp = Scratch::new("open");
    let web = name("web");
    let mut log = LogFile::open(&tmp.logs(), &web, DEFAULT_MAX_BYTES, DEFAULT_KEEP).unwrap();
    log.write_record(&rec(1)).unwrap();
    let path = tmp.logs().join("web.log");
    assert_eq!(log.path(), path);
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    drop(log);
    // Reopening continues the file and knows its size.
    let mut log = LogFile::open(&tmp.logs(), &web, DEFAULT_MAX_BYTES, DEFAULT_KEEP).unwrap();
    assert_eq!(log.size(), 10);
    log.write_record(&rec(2)).unwrap();
    assert_eq!(read(&path), rec(1) + &rec(2));
}

#[test]
fn rotation_shifts_files_and_drops_only_beyond_keep() {
    let tmp = Scratch::new("rotate");
    let web = name("web");
    // 35 bytes: three 10-byte records fit, the fourth rotates.
    let mut log = LogFile::open(&tmp.logs(), &web, 35, 2).unwrap();
    for i in 0..20 {
        log.write_record(&rec(i)).unwrap();
    }
    let file = |k| read(&rotated_path(&tmp.logs(), &web, k));
    // 20 records, 3 per file: 0-2 3-5 6-8 9-11 12-14 | 15-17 | 18-19.
    assert_eq!(file(0), rec(18) + &rec(19));
    assert_eq!(file(1), rec(15) + &rec(16) + &rec(17));
    assert_eq!(file(2), rec(12) + &rec(13) + &rec(14));
    assert!(!rotated_path(&tmp.logs(), &web, 3).exists());
    for k in 0..=2 {
        assert!(fs::metadata(rotated_path(&tmp.logs(), &web, k)).unwrap().len() <= 35);
    }
    let mut names: Vec<String> = fs::read_dir(tmp.logs()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["web.log", "web.log.1", "web.log.2"]);
}

#[test]
fn keep_zero_starts_over_and_oversized_record_gets_a_file() {
    let tmp = Scratch::new("keep0");
    let web = name("web");
    let mut log = LogFile::open(&tmp.logs(), &web, 25, 0).unwrap();
    for i in 0..5 {
        log.write_record(&rec(i)).unwrap();
    }
    assert_eq!(read(&log.path()), rec(4));
    let big = "x".repeat(40) + "\n";
    log.write_record(&big).unwrap();
    log.write_record(&rec(5)).unwrap();
    assert_eq!(read(&log.path()), rec(5));
    assert!(!rotated_path(&tmp.logs(), &web, 1).exists());
}

#[test]
fn write_errors_are_returned_with_the_path() {
    let tmp = Scratch::new("enoent");
    let web = name("web");
    let mut log = LogFile::open(&tmp.logs(), &web, 15, 1).unwrap();
    log.write_record(&rec(0)).unwrap();
    // The directory is replaced by a file (as if /var went away): rotation fails at
    // its first step, and the error names it.
    fs::remove_dir_all(tmp.logs()).unwrap();
    fs::write(tmp.logs(), "not a directory").unwrap();
    match log.write_record(&rec(1)) {
        Err(LogError::Io { op, path, .. }) => {
            assert_eq!(op, "remove");
            assert_eq!(path, tmp.logs().join("web.log.1"));
        }
        other => panic!("expected a remove error, got {other:?}"),
    }
    // Nothing was written through the failed rotation, and nothing panicked.
    assert_eq!(log.size(), 10);
}

/// A console that refuses every write.
struct BrokenConsole;

impl Write for BrokenConsole {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn container_log_writes_file_and_console() {
    let tmp = Scratch::new("container");
    let web = name("web");
    let file = LogFile::open(&tmp.logs(), &web, DEFAULT_MAX_BYTES, DEFAULT_KEEP).unwrap();
    let mut log = ContainerLog::new(web.clone(), Some(file));
    let mut console = Vec::new();
    let t = at_ms(1_795_993_825_123);
    log.feed(Stream::Stdout, b"hel", t, &mut console).unwrap();
    log.feed(Stream::Stderr, b"warn\npart", t, &mut console).unwrap();
    log.feed(Stream::Stdout, b"lo\r\nbye", t + Duration::from_millis(1), &mut console).unwrap();
    log.finish(t + Duration::from_millis(2), &mut console).unwrap();
    assert_eq!(String::from_utf8(console).unwrap(), "web! warn\nweb| hello\nweb| bye\nweb! part\n");
    assert_eq!(
        read(&log_path(&tmp.logs(), &web)),
        "2026-11-29T23:10:25.123Z stderr warn\n\
         2026-11-29T23:10:25.124Z stdout hello\n\
         2026-11-29T23:10:25.125Z stdout bye\n\
         2026-11-29T23:10:25.125Z stderr part\n"
    );
}

#[test]
fn console_failure_is_reported_and_the_file_still_written() {
    let tmp = Scratch::new("console");
    let web = name("web");
    let file = LogFile::open(&tmp.logs(), &web, DEFAULT_MAX_BYTES, DEFAULT_KEEP).unwrap();
    let mut log = ContainerLog::new(web.clone(), Some(file));
    let err = log.feed(Stream::Stdout, b"a\n", UNIX_EPOCH, &mut BrokenConsole).unwrap_err();
    assert!(matches!(err, LogError::Console { ref name, .. } if *name == web), "{err:?}");
    assert_eq!(read(&log_path(&tmp.logs(), &web)), "1970-01-01T00:00:00.000Z stdout a\n");
    // Without a file the console alone gets the lines.
    let mut console_only = ContainerLog::new(web, None);
    let mut out = Vec::new();
    console_only.feed(Stream::Stdout, b"b\n", UNIX_EPOCH, &mut out).unwrap();
    assert_eq!(out, b"web| b\n");
}

// ---- reading back -----------------------------------------------------------------

/// A log with records 0..count written through rotation (35-byte files, keep 2).
fn rotated_log(tmp: &Scratch, web: &ContainerName, count: usize) -> LogFile {
    let mut log = LogFile::open(&tmp.logs(), web, 35, 2).unwrap();
    for i in 0..count {
        log.write_record(&rec(i)).unwrap();
    }
    log
}

/// `rec(i)` without its line end, as readers return it.
fn line(i: usize) -> String {
    rec(i).trim_end().to_string()
}

fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(line).collect()
}

#[test]
fn tail_reads_across_rotated_files_in_order() {
    let tmp = Scratch::new("tail");
    let web = name("web");
    let log = rotated_log(&tmp, &web, 20); // files: 12-14 | 15-17 | 18-19
    let (got, offset) = tail(&tmp.logs(), &web, 4).unwrap();
    assert_eq!(got, lines(16..20));
    assert_eq!(offset, LogOffset { inode: inode(&log.path()), offset: 20 });
    assert_eq!(tail(&tmp.logs(), &web, 6).unwrap().0, lines(14..20));
    assert_eq!(tail(&tmp.logs(), &web, 100).unwrap().0, lines(12..20));
    assert_eq!(tail(&tmp.logs(), &web, 1).unwrap().0, lines(19..20));
    assert!(tail(&tmp.logs(), &web, 0).unwrap().0.is_empty());
}

#[test]
fn tail_of_a_large_file_reads_blocks_backwards() {
    let tmp = Scratch::new("tailbig");
    let web = name("web");
    let mut log = LogFile::open(&tmp.logs(), &web, DEFAULT_MAX_BYTES, DEFAULT_KEEP).unwrap();
    for i in 0..30_000 {
        log.write_record(&rec(i)).unwrap();
    }
    // 300 kB: several 64 KiB blocks, and block edges fall inside records.
    assert_eq!(tail(&tmp.logs(), &web, 3).unwrap().0, lines(29_997..30_000));
    assert_eq!(tail(&tmp.logs(), &web, 20_000).unwrap().0, lines(10_000..30_000));
    assert_eq!(tail(&tmp.logs(), &web, 40_000).unwrap().0, lines(0..30_000));
}

#[test]
fn tail_leaves_an_unfinished_last_line_to_the_follower() {
    let tmp = Scratch::new("partial");
    let web = name("web");
    let mut log = rotated_log(&tmp, &web, 2);
    log.write_record("half").unwrap();
    let (got, offset) = tail(&tmp.logs(), &web, 10).unwrap();
    assert_eq!(got, lines(0..2));
    assert_eq!(offset.offset, 20);
    log.write_record(" done\n").unwrap();
    assert_eq!(read_from(&tmp.logs(), &web, offset).unwrap().0, ["half done"]);
}

#[test]
fn no_log_yet_is_empty_not_an_error() {
    let tmp = Scratch::new("none");
    let web = name("web");
    assert_eq!(tail(&tmp.logs(), &web, 5).unwrap(), (Vec::new(), LogOffset::default()));
    assert_eq!(read_from(&tmp.logs(), &web, LogOffset::default()).unwrap(), (Vec::new(), LogOffset::default()));
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}

#[test]
fn follow_continues_across_a_rotation_without_loss() {
    let tmp = Scratch::new("follow");
    let web = name("web");
    let mut log = rotated_log(&tmp, &web, 2);
    let (first, pos) = read_from(&tmp.logs(), &web, LogOffset::default()).unwrap();
    assert_eq!(first, lines(0..2));
    assert_eq!(read_from(&tmp.logs(), &web, pos).unwrap(), (Vec::new(), pos));
    // rec 2 ends the old file, rec 3 rotates, rec 4 and 5 join it: the new file is
    // already longer than the old offset, so only the inode tells it apart.
    for i in 2..6 {
        log.write_record(&rec(i)).unwrap();
    }
    let (more, pos) = read_from(&tmp.logs(), &web, pos).unwrap();
    assert_eq!(more, lines(2..6));
    assert_eq!(pos, LogOffset { inode: inode(&log.path()), offset: 30 });
}

#[test]
fn follow_restarts_a_truncated_file_from_its_start() {
    let tmp = Scratch::new("truncate");
    let web = name("web");
    rotated_log(&tmp, &web, 3);
    let (_, pos) = read_from(&tmp.logs(), &web, LogOffset::default()).unwrap();
    let path = log_path(&tmp.logs(), &web);
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(rec(9).as_bytes()).unwrap();
    assert_eq!(read_from(&tmp.logs(), &web, pos).unwrap().0, lines(9..10));
}

#[test]
fn follow_reads_in_bounded_steps() {
    let tmp = Scratch::new("steps");
    let web = name("web");
    let mut log = LogFile::open(&tmp.logs(), &web, DEFAULT_MAX_BYTES, DEFAULT_KEEP).unwrap();
    let count = (FOLLOW_READ_LIMIT / 10 + 5) as usize;
    for i in 0..count {
        log.write_record(&rec(i % 100_000)).unwrap();
    }
    let (first, pos) = read_from(&tmp.logs(), &web, LogOffset::default()).unwrap();
    assert!(pos.offset <= FOLLOW_READ_LIMIT);
    let (rest, end) = read_from(&tmp.logs(), &web, pos).unwrap();
    assert_eq!(first.len() + rest.len(), count);
    assert_eq!(end.offset, 10 * count as u64);
}

#[test]
fn batched_records_rotate_where_records_one_by_one_would() {
    let records: Vec<String> = (0..40).map(|i| format!("record {i:02} {}\n", "x".repeat(i % 7))).collect();
    let contents = |batched: bool| {
        let tmp = Scratch::new("batch");
        let web = name("web");
        let mut log = LogFile::open(&tmp.logs(), &web, 100, 9).unwrap();
        if batched {
            log.write_records(&records).unwrap();
        } else {
            records.iter().for_each(|r| log.write_record(r).unwrap());
        }
        (0..=9)
            .map(|n| if n == 0 { log_path(&tmp.logs(), &web) } else { rotated_path(&tmp.logs(), &web, n) })
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<String>>()
    };
    let one_by_one = contents(false);
    assert!(one_by_one.iter().filter(|c| !c.is_empty()).count() > 3, "the records span several files");
    assert_eq!(contents(true), one_by_one);
}

#[test]
fn new_limits_apply_from_the_next_write() {
    let tmp = Scratch::new("relimit");
    let web = name("web");
    let mut log = ContainerLog::new(web.clone(), Some(LogFile::open(&tmp.logs(), &web, 35, 0).unwrap()));
    log.set_limits(LogLimits::new(MIN_MAX_BYTES, 3).unwrap());
    let now = SystemTime::now();
    // 64 KiB per file now: 4000 records of 43 bytes fill three files, none is dropped.
    for i in 0..4000 {
        log.feed(Stream::Stdout, format!("line {i:05}\n").as_bytes(), now, &mut io::sink()).unwrap();
    }
    let kept: String = (0..3).rev().map(|k| read(&rotated_path(&tmp.logs(), &web, k))).collect();
    let numbers: Vec<&str> = kept.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(numbers.len(), 4000, "with the old limits (35 bytes, no rotated file) one line would be left");
    assert_eq!(numbers.first(), Some(&"00000"));
}
