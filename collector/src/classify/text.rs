//! Text of findings: agent strings made safe to show ([`text`]: bounded, no control
//! characters) and the formats of evidence values in summaries (percentages, byte sizes,
//! decimals), so every summary writes the same quantity the same way.

use std::borrow::Cow;

/// Longest agent string kept in a resource or summary, in characters.
pub(super) const MAX_TEXT_CHARS: usize = 200;

/// Characters never kept from an agent: control characters, and the bidirectional overrides
/// and line separators that make a terminal or a web page show text other than it is.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// An agent string as a resource or inside a summary: control characters and bidirectional
/// overrides dropped, then cut to [`MAX_TEXT_CHARS`] characters. Borrowed when it is fine as
/// it is.
pub(super) fn text(agent: &str) -> Cow<'_, str> {
    let clean = !agent.chars().any(unsafe_char);
    let cut = agent.char_indices().nth(MAX_TEXT_CHARS).map(|(at, _)| at);
    match (clean, cut) {
        (true, None) => Cow::Borrowed(agent),
        (true, Some(cut)) => Cow::Borrowed(&agent[..cut]),
        (false, _) => {
            Cow::Owned(agent.chars().filter(|c| !unsafe_char(*c)).take(MAX_TEXT_CHARS).collect())
        }
    }
}

/// `x` with one decimal, without a trailing `.0`: `96.2`, `95`, `0.8`.
pub(super) fn decimal(x: f64) -> String {
    decimals(x, 1)
}

/// `x` with up to `places` decimals, without trailing zeros: `1.744`, `3.3`, `12`.
pub(super) fn decimals(x: f64, places: usize) -> String {
    let text = format!("{x:.places$}");
    let text =
        if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// A ratio as a percentage: `0.962` → `96.2%`, `0.95` → `95%`.
pub(super) fn percent(ratio: f64) -> String {
    format!("{}%", decimal(ratio * 100.0))
}

/// Bytes in the largest binary unit that leaves at least 1: `3.1 GiB`, `10 GiB`, `512 B`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", decimal(value), UNITS[unit])
}

/// Seconds as a short duration: `45 s`, `17 min`, `31.1 h`.
pub(super) fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{} s", decimal(seconds))
    } else if seconds < 3600.0 {
        format!("{} min", decimal(seconds / 60.0))
    } else {
        format!("{} h", decimal(seconds / 3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_and_clean() {
        assert!(matches!(text("md0"), Cow::Borrowed("md0")));
        assert_eq!(text("a\nb\u{1b}[31mc\u{7f}"), "ab[31mc");
        assert_eq!(text("db1\u{202e}txt.exe\u{2028}"), "db1txt.exe", "no bidi overrides");
        let long = "é".repeat(300);
        assert_eq!(text(&long).chars().count(), MAX_TEXT_CHARS);
        assert!(matches!(text(&long), Cow::Borrowed(_)));
        let long_dirty = format!("\t{}", "x".repeat(300));
        assert_eq!(text(&long_dirty), "x".repeat(MAX_TEXT_CHARS));
        assert_eq!(text(&"x".repeat(MAX_TEXT_CHARS)).len(), MAX_TEXT_CHARS);
    }

    #[test]
    fn numbers() {
        assert_eq!(decimal(96.24), "96.2");
        assert_eq!(decimal(95.0), "95");
        assert_eq!(decimal(-0.01), "0");
        assert_eq!(decimals(1.744, 3), "1.744");
        assert_eq!(decimals(3.30, 3), "3.3");
        assert_eq!(decimals(120.0, 3), "120");
        assert_eq!(percent(0.962), "96.2%");
        assert_eq!(percent(0.95), "95%");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(10 << 30), "10 GiB");
        assert_eq!(bytes(3_328_599_654), "3.1 GiB");
        assert_eq!(bytes(u64::MAX), "16 EiB");
        assert_eq!(duration(12.0), "12 s");
        assert_eq!(duration(1020.0), "17 min");
        assert_eq!(duration(112_086.0), "31.1 h");
    }
}
