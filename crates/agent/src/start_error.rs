//! Telling a container that could not start (`runc run` failed before the process ran: a
//! missing binary, a bad working directory) from one whose process exited with an error.
//! runc reports the failure on its stderr, which is the run's log file, as a logrus line:
//! `time="…" level=error msg="runc run failed: unable to start container process: …"`.
//!
//! The kubelet reports such a container as terminated with reason `StartError`, exit code 128
//! and the runtime's message.

/// The exit code the kubelet reports for a container that could not start.
pub const START_ERROR_EXIT_CODE: i32 = 128;
pub const START_ERROR_REASON: &str = "StartError";

/// The runtime's message when the log of a run (CRI records) ends with runc's start failure.
pub fn runc_start_error(log: &[u8]) -> Option<String> {
    let last = log
        .split(|b| *b == b'\n')
        .rfind(|record| !record.is_empty())?;
    let mut fields = last.splitn(4, |b| *b == b' ');
    let (_time, stream, _tag) = (fields.next(), fields.next()?, fields.next());
    if stream != b"stderr" {
        return None;
    }
    let text = String::from_utf8_lossy(fields.next()?);
    let message = text.split_once(" level=error msg=\"")?.1;
    let message = message.strip_suffix('"').unwrap_or(message);
    let message = message.replace("\\\"", "\"").replace("\\\\", "\\");
    message.starts_with("runc run failed: ").then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_runcs_start_failure() {
        let log = concat!(
            "2026-12-01T10:01:18Z stderr F time=\"2026-12-01T10:01:18Z\" level=error ",
            "msg=\"runc run failed: unable to start container process: exec: \\\"nope\\\": ",
            "executable file not found in $PATH\"\n"
        );
        assert_eq!(
            runc_start_error(log.as_bytes()).as_deref(),
            Some(
                "runc run failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
            )
        );
    }

    #[test]
    fn a_process_that_failed_is_no_start_error() {
        let printed = "2026-12-01T10:01:18Z stdout F runc run failed: but I printed it\n";
        assert_eq!(runc_start_error(printed.as_bytes()), None);
        let later = concat!(
            "2026-12-01T10:01:18Z stderr F time=\"x\" level=error msg=\"runc run failed: x\"\n",
            "2026-12-01T10:01:19Z stderr F the process went on\n"
        );
        assert_eq!(runc_start_error(later.as_bytes()), None);
        assert_eq!(runc_start_error(b""), None);
        let other = "2026-12-01T10:01:18Z stderr F time=\"x\" level=error msg=\"something\"\n";
        assert_eq!(runc_start_error(other.as_bytes()), None);
    }
}
