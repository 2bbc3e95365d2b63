//! Checks that `raid::parse_mdstat` never panics on any text (bytes are read as the probe
//! would see a damaged file: lossy UTF-8), and that what it returns holds together: names are
//! single tokens, flag counts fit the member list, and the sync numbers are in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_agent::probe::raid::parse_mdstat;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for array in parse_mdstat(&text) {
        assert!(!array.name.is_empty(), "empty array name");
        assert!(
            !array.name.contains(|c: char| c == ':' || c.is_whitespace()),
            "name {:?} is not one token",
            array.name
        );
        let members = array.members.len();
        let flagged = array.failed_disks as usize + array.spare_disks as usize;
        assert!(flagged <= members, "{flagged} failed+spare of {members} members");
        if array.failed_disks > 0 || array.active_disks < array.raid_disks {
            assert!(array.degraded, "not degraded: {array:?}");
        }
        if let Some(ratio) = array.sync_progress_ratio {
            assert!((0.0..=1.0).contains(&ratio), "ratio {ratio}");
        }
        if let Some(seconds) = array.sync_remaining_seconds {
            assert!(seconds.is_finite() && seconds >= 0.0, "remaining {seconds}");
        }
        assert!(
            array.sync_action.is_empty()
                || ["resync", "recover", "check", "repair", "reshape"]
                    .contains(&array.sync_action.as_str()),
            "action {:?} not from mdstat",
            array.sync_action
        );
        assert!(!(array.sync_delayed && array.sync_pending), "both delayed and pending");
    }
});
