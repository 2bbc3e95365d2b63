//! Who is reporting: the cloned-identity rule. One host may legitimately change agent instance
//! (re-imaged, state directory restored or wiped): the old instance stops, the new one starts.
//! Two instances that keep reporting at the same time as one host are a cloned identity — both
//! are stored, nothing is lost, and the host's timeline records it.

use crate::clock::UnixMs;
use crate::store::InstanceRow;

/// Another instance of the same host that reported live after `current` first appeared and
/// within `window_ms` of `now`, if any.
pub fn concurrent_instance<'a>(
    instances: &'a [InstanceRow],
    current: &str,
    now: UnixMs,
    window_ms: i64,
) -> Option<&'a InstanceRow> {
    let me = instances.iter().find(|i| i.instance == current)?;
    instances.iter().find(|other| {
        other.instance != current
            && other
                .last_live_ms
                .is_some_and(|live| live >= me.first_seen_ms && live >= now - window_ms)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(instance: &str, first: i64, live: Option<i64>) -> InstanceRow {
        InstanceRow {
            instance: instance.into(),
            first_seen_ms: first,
            last_seen_ms: live.unwrap_or(first),
            last_live_ms: live,
            max_seq: 1,
            pruned_through_seq: 0,
        }
    }

    #[test]
    fn replacement_instance_is_not_a_clone() {
        // Old instance stopped at 1000; the new one appeared at 5000.
        let rows = [row("old", 0, Some(1_000)), row("new", 5_000, Some(6_000))];
        assert_eq!(concurrent_instance(&rows, "new", 6_000, 30_000), None);
    }

    #[test]
    fn two_live_instances_are_a_clone() {
        let rows = [row("a", 0, Some(7_000)), row("b", 5_000, Some(6_000))];
        assert_eq!(concurrent_instance(&rows, "b", 7_000, 30_000).unwrap().instance, "a");
        assert_eq!(concurrent_instance(&rows, "a", 7_000, 30_000).unwrap().instance, "b");
    }

    #[test]
    fn long_gone_instance_is_not_a_clone() {
        let rows = [row("a", 0, Some(5_500)), row("b", 5_000, Some(100_000))];
        assert_eq!(concurrent_instance(&rows, "b", 100_000, 30_000), None);
    }

    #[test]
    fn replayed_only_instance_is_not_live() {
        let rows = [row("a", 0, None), row("b", 5_000, Some(6_000))];
        assert_eq!(concurrent_instance(&rows, "b", 6_000, 30_000), None);
    }
}
