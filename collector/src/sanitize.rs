//! Text that hosts and API clients control (hostnames, OS names, agent instances, sensor names,
//! token names, notes, error messages quoting them) on its way out of the collector, made data
//! that cannot act as control: one function per boundary.
//!
//! - [`for_terminal`]: what `vigilctl` prints. No escape sequence, bidi override or newline
//!   reaches the operator's terminal, and a cell is bounded.
//! - [`for_log`]: a value in a log field. No line of the collector's log can be forged or
//!   made long by what a peer sends.
//! - [`for_label`] (or [`push_label`], into a buffer): a Prometheus label value in the text
//!   format.
//!
//! Every character that a terminal or log reader would interpret rather than show (C0 and C1
//! controls, DEL, and the format characters that reorder or hide text) is replaced by a
//! visible escape: `\n`, `\r`, `\t`, or `\u{1b}` for the rest. Pure; all but
//! [`for_terminal_whole`] are bounded, their work proportional to the bound, not to the input.

use std::fmt::Write as _;

/// Longest text `vigilctl` prints in one field, in characters, before the `…` marker.
pub const TERMINAL_MAX_CHARS: usize = 200;
/// Longest free text (a note, a summary, a line of a timeline) `vigilctl` prints in a detail
/// view, in characters, before the `…` marker.
pub const TERMINAL_TEXT_MAX_CHARS: usize = 4_096;
/// Longest name (hostname, OS name, agent instance, sensor or token name) in a log field, in
/// characters, before the marker saying how much was cut.
pub const LOG_NAME_MAX_CHARS: usize = 128;
/// Longest free text (an error message that may quote names) in a log field, in characters.
pub const LOG_TEXT_MAX_CHARS: usize = 512;
/// Longest Prometheus label value, in characters, before the `…` marker.
pub const LABEL_MAX_CHARS: usize = 256;

/// The marker of a cut in terminal output and label values.
const ELLIPSIS: char = '…';

/// Format characters that reorder or hide the text around them: bidi embeddings, overrides,
/// isolates and marks; zero-width characters; the soft hyphen; line and paragraph separators;
/// the byte order mark; interlinear annotations; tag characters.
fn reorders_or_hides(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// True for a character that must not be output as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || reorders_or_hides(c)
}

/// Writes the visible escape of an unsafe character: `\n`, `\r`, `\t` or `\u{hex}`.
fn push_escape(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// `text` with unsafe characters (and, when `backslash`, the backslash itself, so an escape
/// in the output is never ambiguous) escaped, at most `max_chars` characters of it. Returns
/// the visible text and the number of input bytes left out.
fn visible(text: &str, max_chars: usize, backslash: bool) -> (String, usize) {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(2)));
    let mut chars = 0;
    let mut piece = String::new();
    for (at, c) in text.char_indices() {
        piece.clear();
        if is_unsafe(c) {
            push_escape(&mut piece, c);
        } else if backslash && c == '\\' {
            piece.push_str("\\\\");
        } else {
            piece.push(c);
        }
        let width = piece.chars().count();
        if chars + width > max_chars {
            return (out, text.len() - at);
        }
        chars += width;
        out.push_str(&piece);
    }
    (out, 0)
}

/// `text` as `vigilctl` prints it: every unsafe character and the backslash escaped, one line,
/// at most [`TERMINAL_MAX_CHARS`] characters and then `…` if longer.
pub fn for_terminal(text: &str) -> String {
    for_terminal_within(text, TERMINAL_MAX_CHARS)
}

/// [`for_terminal`] bounded to `width` characters, the `…` marker included (a table column).
pub fn for_terminal_within(text: &str, width: usize) -> String {
    let (out, cut) = visible(text, width, true);
    if cut == 0 {
        return out;
    }
    // Again with room for the marker, so no escape is split.
    let (mut out, _) = visible(text, width.saturating_sub(1), true);
    out.push(ELLIPSIS);
    out
}

/// [`for_terminal`] for free text in a detail view: at most [`TERMINAL_TEXT_MAX_CHARS`].
pub fn for_terminal_text(text: &str) -> String {
    for_terminal_within(text, TERMINAL_TEXT_MAX_CHARS)
}

/// [`for_terminal`] without the length bound, for what must be copied whole (a join command,
/// a token shown once).
pub fn for_terminal_whole(text: &str) -> String {
    visible(text, usize::MAX, true).0
}

/// A name for a log field: escaped as for the terminal, at most [`LOG_NAME_MAX_CHARS`]
/// characters, then `…[+N bytes]` saying how much was cut.
pub fn for_log(text: &str) -> String {
    log_within(text, LOG_NAME_MAX_CHARS)
}

/// Free text (an error message) for a log field: as [`for_log`], at most
/// [`LOG_TEXT_MAX_CHARS`] characters.
pub fn for_log_text(text: &str) -> String {
    log_within(text, LOG_TEXT_MAX_CHARS)
}

fn log_within(text: &str, max_chars: usize) -> String {
    let (mut out, cut) = visible(text, max_chars, true);
    if cut > 0 {
        let _ = write!(out, "{ELLIPSIS}[+{cut} bytes]");
    }
    out
}

/// A Prometheus label value in the text format: backslash, double quote and line feed escaped
/// as the format defines (`\\`, `\"`, `\n`); a carriage return and every other unsafe
/// character shown as its visible escape (the value then holds the text `\r`, `\u{1b}`, …);
/// at most [`LABEL_MAX_CHARS`] characters of the value, then `…`.
pub fn for_label(text: &str) -> String {
    let mut out = String::new();
    push_label(&mut out, text);
    out
}

/// [`for_label`] appended to `out`, without a string of its own: the exporter writes every
/// label value of a report into one buffer.
pub fn push_label(out: &mut String, text: &str) {
    // Nearly every value (host ids, mount points, device names) is short printable ASCII with
    // nothing to escape: one pass over its bytes, and the value as it is. (Values are escaped
    // for every report a host sends, so this is on the ingest path.)
    if text.len() <= LABEL_MAX_CHARS
        && text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"')
    {
        out.push_str(text);
        return;
    }
    escape_label(out, text);
}

/// [`push_label`] for any text: the bound, the visible escapes, then the format's escapes.
fn escape_label(out: &mut String, text: &str) {
    // The value as shown, without escaping backslashes: the label keeps the host's text.
    let mut value = String::new();
    let mut chars = 0;
    let mut cut = false;
    for c in text.chars() {
        let start = value.len();
        match c {
            '\n' => value.push('\n'),
            c if is_unsafe(c) => push_escape(&mut value, c),
            c => value.push(c),
        }
        chars += value[start..].chars().count();
        if chars > LABEL_MAX_CHARS {
            value.truncate(start);
            cut = true;
            break;
        }
    }
    if cut {
        value.push(ELLIPSIS);
    }
    out.reserve(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every C0 control, DEL and every C1 control, as chars.
    fn controls() -> impl Iterator<Item = char> {
        (0x00u32..=0x1f).chain([0x7f]).chain(0x80..=0x9f).map(|b| char::from_u32(b).unwrap())
    }

    const BIDI: [char; 9] = [
        '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}',
    ];

    fn all_safe(out: &str) -> bool {
        out.chars().all(|c| !is_unsafe(c))
    }

    #[test]
    fn every_control_byte_comes_out_as_a_visible_escape() {
        for c in controls() {
            let text = format!("a{c}b");
            for out in [for_terminal(&text), for_log(&text), for_log_text(&text)] {
                assert!(all_safe(&out), "{:?} left {out:?}", u32::from(c));
                assert!(out.starts_with('a') && out.ends_with('b'), "{out:?}");
                assert!(out.contains('\\'), "{c:?} is shown, not dropped: {out:?}");
            }
        }
        assert_eq!(for_terminal("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(for_terminal("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(for_terminal("a\nb\rc\td\u{7f}"), "a\\nb\\rc\\td\\u{7f}");
    }

    #[test]
    fn osc_sequences_and_hyperlinks_are_inert() {
        let title = "\u{1b}]0;owned\u{7}";
        assert_eq!(for_terminal(title), "\\u{1b}]0;owned\\u{7}");
        let link = "\u{1b}]8;;http://evil.example/\u{1b}\\click\u{1b}]8;;\u{1b}\\";
        let out = for_terminal(link);
        assert!(all_safe(&out), "{out:?}");
        assert_eq!(out, "\\u{1b}]8;;http://evil.example/\\u{1b}\\\\click\\u{1b}]8;;\\u{1b}\\\\");
    }

    #[test]
    fn bidi_overrides_isolates_and_hidden_characters_are_escaped() {
        for c in BIDI.into_iter().chain(['\u{200b}', '\u{200e}', '\u{feff}', '\u{2028}']) {
            let text = format!("user{c}gpj.exe");
            for out in [for_terminal(&text), for_log(&text), for_label(&text)] {
                assert!(all_safe(&out), "{c:?} left in {out:?}");
                assert!(out.contains(&format!("u{{{:x}}}", u32::from(c))), "{out:?}");
            }
        }
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in ["srv01.example.com", "Debian GNU/Linux 12 (bookworm)", "Größe 温度 °C"] {
            assert_eq!(for_terminal(text), text);
            assert_eq!(for_log(text), text);
            assert_eq!(for_label(text), text);
        }
    }

    #[test]
    fn backslash_is_doubled_so_escapes_are_unambiguous() {
        assert_eq!(for_terminal("a\\u{1b}"), "a\\\\u{1b}");
        assert_ne!(for_terminal("\\u{1b}"), for_terminal("\u{1b}"));
        assert_eq!(for_log("C:\\x"), "C:\\\\x");
    }

    #[test]
    fn one_mebibyte_is_bounded_and_the_cut_marked() {
        let huge = "\u{1b}".repeat(1 << 20);
        let out = for_terminal(&huge);
        assert!(out.chars().count() <= TERMINAL_MAX_CHARS);
        assert_eq!(out.matches("\\u{1b}").count(), (TERMINAL_MAX_CHARS - 1) / 6);
        assert!(out.ends_with(ELLIPSIS) && all_safe(&out));

        let plain = "x".repeat(1 << 20);
        assert_eq!(for_terminal(&plain).chars().count(), TERMINAL_MAX_CHARS);
        assert_eq!(for_terminal_text(&plain).chars().count(), TERMINAL_TEXT_MAX_CHARS);
        assert_eq!(for_terminal_whole(&plain), plain, "copied whole");
        assert_eq!(for_terminal_whole("a\u{1b}b"), "a\\u{1b}b");
        assert_eq!(for_terminal_within(&plain, 10), "xxxxxxxxx…");
        assert_eq!(for_terminal_within("x".repeat(10).as_str(), 10), "x".repeat(10));

        let log = for_log(&plain);
        let cut = (1 << 20) - LOG_NAME_MAX_CHARS;
        assert_eq!(log, format!("{}…[+{cut} bytes]", "x".repeat(LOG_NAME_MAX_CHARS)));
        assert!(for_log_text(&huge).chars().count() <= LOG_TEXT_MAX_CHARS + 20);
        assert!(for_log(&huge).chars().count() <= LOG_NAME_MAX_CHARS + 20);

        let label = for_label(&huge);
        assert!(label.chars().count() <= 2 * LABEL_MAX_CHARS + 1, "{}", label.len());
        assert!(label.ends_with(ELLIPSIS) && all_safe(&label));
    }

    #[test]
    fn an_escape_is_never_split_by_the_cut() {
        let out = for_log(&format!("{}\u{1b}", "x".repeat(LOG_NAME_MAX_CHARS - 3)));
        assert_eq!(out, format!("{}…[+1 bytes]", "x".repeat(LOG_NAME_MAX_CHARS - 3)));
    }

    #[test]
    fn plain_label_values_take_the_short_way_to_the_same_answer() {
        let mut samples: Vec<String> = (0x20u8..0x7f).map(|b| char::from(b).to_string()).collect();
        samples.push("/var/lib/docker".into());
        samples.push("a".repeat(LABEL_MAX_CHARS));
        samples.push("a".repeat(LABEL_MAX_CHARS + 1));
        samples.push(format!("{}\\", "a".repeat(LABEL_MAX_CHARS - 1)));
        samples.push("caf\u{e9}".into());
        for text in samples {
            let mut slow = String::new();
            escape_label(&mut slow, &text);
            assert_eq!(for_label(&text), slow, "{text:?}");
        }
        assert_eq!(for_label("/srv/data"), "/srv/data");
        assert_eq!(for_label("a\"b"), "a\\\"b");
    }

    #[test]
    fn push_label_appends_what_for_label_returns() {
        let mut out = String::from("x=");
        for text in ["/var", "", "a\"b\n", "\u{1b}"] {
            let before = out.len();
            push_label(&mut out, text);
            assert_eq!(out[before..], for_label(text), "{text:?}");
        }
        assert!(out.starts_with("x=/var"), "{out:?}");
    }

    #[test]
    fn label_values_escape_what_the_text_format_defines_and_show_the_rest() {
        assert_eq!(for_label("md\"0\\\n"), "md\\\"0\\\\\\n");
        // A carriage return becomes the visible text `\r` (its backslash escaped for the
        // format): a scraper never sees a raw CR, nor an escape the format does not define.
        assert_eq!(for_label("a\rb"), "a\\\\rb");
        assert_eq!(for_label("a\u{1b}b"), "a\\\\u{1b}b");
        for c in controls() {
            let out = for_label(&format!("a{c}b"));
            assert!(all_safe(&out), "{c:?} left in {out:?}");
        }
    }
}
