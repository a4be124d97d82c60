//! Durations and sizes as Compose and Dockerfiles write them, and as drover's files do.

use std::time::Duration;

/// A Go duration (`1m30s`, `1.5h`, `300ms`, `10s`), as Compose and `HEALTHCHECK` flags
/// write them, in milliseconds (less than a millisecond is dropped). A bare number is
/// seconds.
pub(crate) fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.0 && seconds.is_finite()).then(|| (seconds * 1000.0).round() as u64);
    }
    let mut rest = text;
    let mut ns = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        ns += number * scale;
    }
    (ns.is_finite() && ns < 1e21).then(|| (ns / 1e6) as u64)
}

/// A duration as drover's files write it: `30s`, `1m`, `1500ms`.
pub(crate) fn duration_text(ms: u64) -> String {
    render::fleet::scalar::format_duration(Duration::from_millis(ms))
}

/// A size in bytes, as fleet.yaml writes it: `512M`, `1G`, `1536k`, or bytes.
pub(crate) fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("k", 10)] {
        if bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("1.5h"), Some(5_400_000));
        assert_eq!(duration_ms("300ms"), Some(300));
        assert_eq!(duration_ms("10"), Some(10_000));
        assert_eq!(duration_ms("2us"), Some(0));
        assert_eq!(duration_ms("10 s"), None);
        assert_eq!(duration_ms("10d"), None);
        assert_eq!(duration_ms(""), None);
        assert_eq!(duration_text(90_000), "90s");
        assert_eq!(duration_text(60_000), "1m");
    }

    #[test]
    fn sizes() {
        assert_eq!(size_text(512 << 20), "512M");
        assert_eq!(size_text(1 << 30), "1G");
        assert_eq!(size_text(1536 << 10), "1536k");
        assert_eq!(size_text(6_291_457), "6291457");
    }
}
