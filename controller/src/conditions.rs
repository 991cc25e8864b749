//! Status conditions as upstream: one entry per type, `lastTransitionTime` changed only when the
//! status flips, so an unchanged reconcile writes nothing.

use sluice_crds::common::{Condition, Status};

/// Sets condition `type_`; returns true when anything changed. The transition time is `now` only when
/// the status differs from the previous one (a new reason or message keeps the old time).
pub fn set(status: &mut Status, type_: &str, ok: bool, reason: &str, message: &str, now: &str) -> bool {
    let value = if ok { "True" } else { "False" };
    let reason = Some(reason.to_string()).filter(|r| !r.is_empty());
    let message = Some(message.to_string()).filter(|m| !m.is_empty());
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value && c.reason == reason && c.message == message => false,
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now.to_string());
            }
            c.status = value.to_string();
            c.reason = reason;
            c.message = message;
            true
        }
        None => {
            status.conditions.push(Condition {
                type_: type_.to_string(),
                status: value.to_string(),
                last_transition_time: Some(now.to_string()),
                reason,
                message,
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut s = Status::default();
        assert!(set(&mut s, "Deployed", false, "Pending", "", "t1"));
        assert!(!set(&mut s, "Deployed", false, "Pending", "", "t2"));
        assert!(set(&mut s, "Deployed", false, "Other", "why", "t3"));
        assert_eq!(s.conditions[0].last_transition_time.as_deref(), Some("t1"));
        assert!(set(&mut s, "Deployed", true, "Deployed", "", "t4"));
        assert_eq!(s.conditions[0].last_transition_time.as_deref(), Some("t4"));
        assert_eq!(s.conditions.len(), 1);
    }
}
