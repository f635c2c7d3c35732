//! Timestamps as the API writes them (RFC 3339, whole seconds, UTC) and the short ages
//! `kubectl get` prints.

use jiff::Timestamp;

/// `2026-11-25T14:43:11Z`.
pub fn format(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now, as the API writes it.
pub fn now() -> String {
    format(Timestamp::now())
}

/// Now with microseconds, as `MicroTime` fields (events, leases) want it.
pub fn now_micro() -> String {
    format_micro(Timestamp::now())
}

/// `2026-11-25T14:43:11.000123Z`: a `MicroTime` as JSON writes it.
pub fn format_micro(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parses an API timestamp; `None` for anything else.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// Upstream's `HumanDuration`: `45s`, `5m30s`, `12m`, `3h`, `5d`, `2y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < 0 {
        return "<invalid>".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rest}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rest}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let days = hours / 24;
        let rest = hours % 24;
        return if rest == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{rest}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{days}d")
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of a timestamp as `kubectl get` prints it; `<unknown>` when absent.
pub fn age(since: Option<&str>, now: Timestamp) -> String {
    match since.and_then(parse) {
        Some(then) => human_duration((now.as_second() - then.as_second()).max(0)),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(330), "5m30s");
        assert_eq!(human_duration(720), "12m");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(5 * 86400), "5d");
    }

    #[test]
    fn formats_round_trip() {
        let now = Timestamp::now();
        let text = format(now);
        assert!(text.ends_with('Z') && !text.contains('.'));
        let parsed = parse(&text).expect("parses");
        assert!(now.as_second() - parsed.as_second() <= 1);
    }
}
