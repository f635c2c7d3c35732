//! Container output as the kubelet keeps it (the CRI log format): one record per line,
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>`, `F` ending a line and `P` a piece of a longer
//! one. The time of each line is what `kubectl logs --timestamps` and `--since` need, and the
//! stream lets `attach` keep stdout and stderr apart.

use std::fs::File;
use std::io::{Read, Write};

/// Longest piece of a line written as one record; longer lines are split (`P` records).
const MAX_RECORD: usize = 16 * 1024;

/// Copies the child's stdout and stderr (both piped) into `log`, one thread each; they end
/// with the child's output.
pub fn copy_outputs_of(
    child: &mut std::process::Child,
    log: File,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let errors = log.try_clone()?;
    let mut copiers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        copiers.push(std::thread::spawn(move || copy_into(stdout, "stdout", log)));
    }
    if let Some(stderr) = child.stderr.take() {
        copiers.push(std::thread::spawn(move || {
            copy_into(stderr, "stderr", errors)
        }));
    }
    Ok(copiers)
}

/// Copies `source` (a container's stdout or stderr) into `log` as records of `stream`, until
/// the source ends. Each record is one `write` to a file opened for appending, so the two
/// streams' records never interleave within a line.
pub fn copy_into(mut source: impl Read, stream: &'static str, mut log: File) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        loop {
            let window = &pending[..pending.len().min(MAX_RECORD)];
            let written = match window.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    write_record(&mut log, stream, 'F', &line[..end])
                }
                None if pending.len() >= MAX_RECORD => {
                    let piece: Vec<u8> = pending.drain(..MAX_RECORD).collect();
                    write_record(&mut log, stream, 'P', &piece)
                }
                None => break,
            };
            if written.is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        // The last words without a newline stay exactly as written.
        let _ = write_record(&mut log, stream, 'P', &pending);
    }
}

fn write_record(log: &mut File, stream: &str, tag: char, text: &[u8]) -> std::io::Result<()> {
    let mut record = format!("{} {stream} {tag} ", jiff::Timestamp::now()).into_bytes();
    record.extend_from_slice(text);
    record.push(b'\n');
    log.write_all(&record)
}

/// The text of a log file without the records' framing (what the container printed, both
/// streams in the order written).
pub fn plain(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    for record in content.split(|b| *b == b'\n').filter(|r| !r.is_empty()) {
        let mut fields = record.splitn(4, |b| *b == b' ');
        let (_time, _stream, tag) = (fields.next(), fields.next(), fields.next());
        out.extend_from_slice(fields.next().unwrap_or_default());
        if tag == Some(b"F".as_slice()) {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records_and_back() {
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("0.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .expect("log");
        let long = "x".repeat(MAX_RECORD + 10);
        let output = format!("one\ntwo\n{long}\nlast");
        copy_into(output.as_bytes(), "stdout", log);
        let content = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&content);
        let records: Vec<&str> = text.lines().collect();
        let shapes: Vec<(usize, bool)> = records
            .iter()
            .map(|r| (r.len(), r.contains(" stdout P ")))
            .collect();
        assert_eq!(records.len(), 5, "{shapes:?}");
        assert!(records[0].ends_with(" stdout F one"), "{}", records[0]);
        assert!(records[2].contains(" stdout P x"));
        assert!(records[4].ends_with(" stdout P last"));
        assert!(records[0].starts_with("20") && records[0].contains('T'));
        assert_eq!(plain(&content), output.as_bytes());
    }
}
