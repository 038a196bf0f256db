//! Human-readable rendering of numbers, sizes and durations (signals:
//! `memkit_sys::signal`).
//!
//! Kept separate from the report so future subcommands (maps, bench, ...)
//! print sizes the same way.

use std::time::Duration;

/// Formats a byte count with binary units and one decimal, because reports
/// compare sizes at a glance and exact byte counts only add noise there
/// (the JSON output keeps the exact values).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Step up while the value would print as 1024.0 or more, so we never
    // show "1024.0 KiB" for something just under 1 MiB.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Formats an integer with thousands separators: call counts run into the
/// millions and are unreadable without grouping.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats a wall-clock duration; milliseconds below one second because
/// short runs would otherwise all print as "0.00 s".
pub fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(812 * 1024 * 1024 + 400 * 1024), "812.4 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(3)), "3 ms");
        assert_eq!(duration(Duration::from_millis(1520)), "1.52 s");
    }
}
