//! The goals a chaos scenario is judged by, checked against its report.

use serde::Serialize;

use super::{ms, ScenarioReport, RECOVERY_GOAL, TIMEOUT_SLACK};

/// One goal of the issue, checked for one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The goal in words.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Whether it was met.
    pub met: bool,
}

/// The goals of the issue, checked against a report: no store call waits longer than its
/// configured bound + 100 ms; no library call longer than its deadline + 100 ms; throughput back
/// within 2 s of the server's return; zero acknowledged session writes lost (and every session
/// verifiable); zero panics.
pub fn goals(r: &ScenarioReport) -> Vec<Goal> {
    let limit = r.call_timeout_ms + ms(TIMEOUT_SLACK);
    let library_limit = r.library_deadline_ms + ms(TIMEOUT_SLACK);
    let store_max = r.max_store_call_ms_during_outage.unwrap_or(0.0);
    let recovery_goal = ms(RECOVERY_GOAL);
    let call_max = r.max_call_ms_during_outage.unwrap_or(0.0);
    vec![
        Goal {
            goal: format!(
                "no store call waits longer than its configured timeout + 100 ms ({limit:.0} ms)"
            ),
            measured: format!("longest store call {store_max:.0} ms"),
            met: store_max <= limit,
        },
        Goal {
            goal: format!(
                "no library call (session create / update, cache get / set) waits longer than \
                 its deadline + 100 ms ({library_limit:.0} ms)"
            ),
            measured: format!("longest library call {call_max:.0} ms"),
            met: call_max <= library_limit,
        },
        Goal {
            goal: format!(
                "throughput back to 90 % within {recovery_goal:.0} ms of the server's return"
            ),
            measured: r.recovery_ms.map_or_else(
                || "not recovered while observed".to_owned(),
                |v| format!("{v:.0} ms"),
            ),
            met: r.recovery_ms.is_some_and(|v| v <= recovery_goal),
        },
        Goal {
            goal: "zero acknowledged session writes lost".to_owned(),
            measured: format!(
                "{} lost of {} sessions checked{}{}",
                r.acknowledged_writes_lost,
                r.sessions_checked,
                if r.sessions_unverified > 0 {
                    format!(", {} could not be read back", r.sessions_unverified)
                } else {
                    String::new()
                },
                r.writes_lost_after_promotion
                    .map_or_else(String::new, |n| format!(
                        " (and {n} acknowledged by the old primary after the replica's promotion, \
                     which Sentinel's failover discards)"
                    )),
            ),
            met: r.acknowledged_writes_lost == 0 && r.sessions_unverified == 0,
        },
        Goal {
            goal: "zero panics".to_owned(),
            measured: format!("{} panics", r.panics),
            met: r.panics == 0,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_follow_the_numbers() {
        let mut r = ScenarioReport {
            call_timeout_ms: 1500.0,
            library_deadline_ms: 2000.0,
            max_store_call_ms_during_outage: Some(1550.0),
            max_call_ms_during_outage: Some(2050.0),
            recovery_ms: Some(300.0),
            sessions_checked: 10,
            ..ScenarioReport::default()
        };
        assert!(goals(&r).iter().all(|g| g.met), "{:?}", goals(&r));
        r.max_store_call_ms_during_outage = Some(1700.0);
        r.max_call_ms_during_outage = Some(3000.0);
        r.recovery_ms = None;
        r.acknowledged_writes_lost = 1;
        r.panics = 2;
        assert!(goals(&r).iter().all(|g| !g.met));
    }
}
