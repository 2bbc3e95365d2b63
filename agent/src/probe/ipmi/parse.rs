//! Parsers of ipmitool's text output: `sdr elist` (sensors) and `sel elist` (System Event
//! Log). Pure, never panic, and bound every string they return; a line they do not recognise
//! is skipped, never guessed at.
//!
//! The formats are ipmitool's `printf`s (ipmitool 1.8.x `lib/ipmi_sdr.c`
//! `ipmi_sdr_print_sensor_fc`, `lib/ipmi_sel.c` `ipmi_sel_print_std_entry`), the `sdr type`
//! example of ipmitool(1) having the same shape:
//!
//! ```text
//! sdr elist:  "%-16s | %02Xh | %-3s | %2d.%1d | %s"   name, sensor number, status, entity, reading
//! sel elist:  "%4x | %s | %s | %s | %s | %s"           record id (hex), date, time, sensor,
//!                                                      description, Asserted/Deasserted
//! ```
//!
//! A threshold sensor's reading is `<number> <unit>` ("5040 RPM", "27 degrees C"); a discrete
//! sensor's is its asserted states joined by ", " ("Presence detected, Failure detected"), an
//! analog discrete one's `<number> <unit>, <states>`; a sensor without one says "No Reading"
//! or "Disabled". A SEL line without a timestamp is an OEM record or a Linux kernel panic
//! (`id | OEM record e0`); a timestamp the BMC had not set yet prints as "Pre-Init" and the
//! raw seconds.

use vigil_proto::v1::{IpmiEvent, IpmiSensor};

/// Longest string kept from one field; longer ones are cut at a character boundary.
pub const MAX_STRING: usize = 256;

/// Whether ipmitool's stderr says there is no local BMC device to talk to (no `ipmi_si` /
/// `ipmi_devintf` driver, or no BMC at all): "Could not open device at /dev/ipmi0 or
/// /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory".
pub fn is_no_device(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr).contains("Could not open device at")
}

/// The sensors of `ipmitool sdr elist` output, in its order.
pub fn parse_sdr_elist(stdout: &[u8]) -> Vec<IpmiSensor> {
    String::from_utf8_lossy(stdout).lines().filter_map(sensor_line).collect()
}

/// The entries of `ipmitool sel elist` output, in its order (oldest first).
pub fn parse_sel_elist(stdout: &[u8]) -> Vec<IpmiEvent> {
    String::from_utf8_lossy(stdout).lines().filter_map(event_line).collect()
}

/// `Fan1A            | 30h | ok  |  7.1 | 5040 RPM`. The reading is the last field and may
/// itself contain `|`; the sensor number (`30h`) tells a sensor line from anything else.
fn sensor_line(line: &str) -> Option<IpmiSensor> {
    let mut fields = line.splitn(5, '|');
    let name = fields.next()?.trim();
    let number = fields.next()?.trim();
    let status = fields.next()?.trim();
    let entity = fields.next()?.trim();
    let reading = fields.next()?.trim();
    let hex = number.strip_suffix('h')?;
    if name.is_empty() || hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (value, unit, text) = split_reading(reading);
    Some(IpmiSensor {
        name: bounded(name),
        sensor_type: String::new(),
        status: bounded(status),
        value,
        unit: bounded(unit),
        text: bounded(text),
        entity: bounded(entity),
    })
}

/// `"5040 RPM"` → (5040, "RPM", ""); `"12 Watts, State Asserted"` → (12, "Watts",
/// "State Asserted"); anything not starting with a number is all text.
fn split_reading(reading: &str) -> (Option<f64>, &str, &str) {
    let (first, rest) = reading.split_once(char::is_whitespace).unwrap_or((reading, ""));
    let numeric = first.bytes().any(|b| b.is_ascii_digit())
        && first.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    let value = if numeric { first.parse::<f64>().ok().filter(|v| v.is_finite()) } else { None };
    match value {
        Some(value) => {
            let (unit, text) = rest.split_once(',').unwrap_or((rest, ""));
            (Some(value), unit.trim(), text.trim())
        }
        None => (None, "", reading),
    }
}

/// `   1 | 03/12/2026 | 10:14:55 | Power Supply PS1 Status | Failure detected | Asserted`.
fn event_line(line: &str) -> Option<IpmiEvent> {
    let fields: Vec<&str> = line.split('|').map(str::trim).collect();
    let record_id = match fields.first() {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(id, 16).ok()?
        }
        _ => return None,
    };
    let mut event = IpmiEvent { record_id, ..IpmiEvent::default() };
    let mut rest = &fields[1..];
    if let [date, time, after @ ..] = rest
        && (date.contains('/') || *date == "Pre-Init")
    {
        event.timestamp = bounded(&format!("{date} {time}"));
        rest = after;
    }
    match rest {
        [] => {}
        // An OEM record or a kernel panic: no sensor.
        [text] => event.description = bounded(text),
        [sensor, description, more @ ..] => {
            event.sensor = bounded(sensor);
            let mut description = (*description).to_owned();
            for (i, extra) in more.iter().enumerate() {
                if i == 0 && matches!(*extra, "Asserted" | "Deasserted") {
                    event.direction = (*extra).to_owned();
                } else if !extra.is_empty() {
                    // 1.8.19 adds "Reading 95 > Threshold 90 degrees C" to threshold events.
                    description.push_str("; ");
                    description.push_str(extra);
                }
            }
            event.description = bounded(&description);
        }
    }
    Some(event)
}

/// `text`, cut to at most [`MAX_STRING`] bytes at a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_STRING {
        return text.to_owned();
    }
    let mut end = MAX_STRING;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_split_into_value_unit_and_text() {
        assert_eq!(split_reading("5040 RPM"), (Some(5040.0), "RPM", ""));
        assert_eq!(split_reading("27 degrees C"), (Some(27.0), "degrees C", ""));
        assert_eq!(split_reading("-1.250 Volts"), (Some(-1.25), "Volts", ""));
        assert_eq!(
            split_reading("12 Watts, State Asserted"),
            (Some(12.0), "Watts", "State Asserted")
        );
        assert_eq!(split_reading("No Reading"), (None, "", "No Reading"));
        assert_eq!(split_reading("0x01"), (None, "", "0x01"));
        assert_eq!(split_reading("inf RPM"), (None, "", "inf RPM"));
        assert_eq!(split_reading("1e999 RPM"), (None, "", "1e999 RPM"));
        assert_eq!(split_reading("..."), (None, "", "..."));
        assert_eq!(split_reading(""), (None, "", ""));
    }

    #[test]
    fn odd_sel_lines() {
        let events = parse_sel_elist(
            b"SEL has no entries\n\
              \x20 1a | OEM record e0\n\
              \x20 1b |  Pre-Init  |0000012345| System Event #0x83 | Timestamp Clock Sync | Asserted\n\
              \x20 1c | 03/12/2026 | 10:14:55 | OEM record c1\n\
              \x20 1d | 03/12/2026 | 10:14:56 | Temperature CPU1 Temp | Upper Critical going high | Asserted | Reading 95 > Threshold 90 degrees C\n\
              zz | 03/12/2026 | 10:14:55 | x | y | Asserted\n\
              \x20   | nothing\n",
        );
        let rows: Vec<(u32, &str, &str, &str, &str)> = events
            .iter()
            .map(|e| {
                (
                    e.record_id,
                    e.timestamp.as_str(),
                    e.sensor.as_str(),
                    e.description.as_str(),
                    e.direction.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (0x1a, "", "", "OEM record e0", ""),
                (
                    0x1b,
                    "Pre-Init 0000012345",
                    "System Event #0x83",
                    "Timestamp Clock Sync",
                    "Asserted"
                ),
                (0x1c, "03/12/2026 10:14:55", "", "OEM record c1", ""),
                (
                    0x1d,
                    "03/12/2026 10:14:56",
                    "Temperature CPU1 Temp",
                    "Upper Critical going high; Reading 95 > Threshold 90 degrees C",
                    "Asserted"
                ),
            ]
        );
    }

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        let name = "é".repeat(200);
        let sensors = parse_sdr_elist(format!("{name} | 01h | ok | 7.1 | 1 RPM\n").as_bytes());
        assert_eq!(sensors[0].name.len(), MAX_STRING);
        assert!(sensors[0].name.chars().all(|c| c == 'é'));
    }

    #[test]
    fn lines_that_are_not_sensors_are_skipped() {
        let sensors = parse_sdr_elist(
            b"\nnot a sensor\nName | zzh | ok | 1.1 | 1 RPM\n | 01h | ok | 1.1 | 1 RPM\nA | h | ok | 1.1 | x\n",
        );
        assert_eq!(sensors, []);
    }
}
