//! Handlers the host calls on a timetable (Slack Machine's `@schedule`).

/// A schedule as a plugin's manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When, as a cron expression in UTC (see [`parse`]).
    pub cron: String,
    /// The channel the handler's messages go to; `None`: `[schedules]
    /// channel` of the host's configuration.
    pub channel: Option<String>,
    /// The handler's name, for logs and listings.
    pub handler: String,
    /// One line for the help manual; empty for none.
    pub doc: String,
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Cron(croner::Cron);

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    expr: String,
    reason: String,
}

/// Parses `expr`: five fields (`minute hour day-of-month month
/// day-of-week`, as crontab), six (seconds first) or seven (a year last).
/// Days of the week are `0`-`7` (`0` and `7` are Sunday) or `sun`-`sat`;
/// months `1`-`12` or `jan`-`dec`.
pub fn parse(expr: &str) -> Result<Cron, CronError> {
    let refuse = |reason: String| CronError {
        expr: crate::text::truncate(expr, 200).into_owned(),
        reason,
    };
    if expr.contains('@') {
        // Nicknames such as `@daily` are not part of the documented syntax.
        return Err(refuse("nicknames such as @daily are not supported".into()));
    }
    croner::parser::CronParser::new()
        .parse(expr)
        .map(Cron)
        .map_err(|e| refuse(e.to_string()))
}

impl Cron {
    /// The first time after `after` that the expression matches, if any.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.find_next_occurrence(&after, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn five_six_and_seven_fields_are_read() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let every_minute = parse("* * * * *").unwrap();
        assert_eq!(
            every_minute.next_after(at),
            Some(chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 1, 0).unwrap())
        );
        let every_five_seconds = parse("*/5 * * * * *").unwrap();
        assert_eq!(
            every_five_seconds.next_after(at),
            Some(chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 5).unwrap())
        );
        let weekdays = parse("0 30 9 * * mon-fri").unwrap();
        // 2026-12-01 is a Tuesday.
        assert_eq!(
            weekdays.next_after(at),
            Some(chrono::Utc.with_ymd_and_hms(2026, 12, 2, 9, 30, 0).unwrap())
        );
        // Sunday is 0 or 7; 2026-12-06 is a Sunday.
        let sunday = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
        assert_eq!(parse("0 0 * * 7").unwrap().next_after(at), Some(sunday));
        assert_eq!(parse("0 0 * * 0").unwrap().next_after(at), Some(sunday));
        assert_eq!(parse("0 0 * * sun").unwrap().next_after(at), Some(sunday));
        let once = parse("0 0 12 1 jan * 2027").unwrap();
        assert_eq!(
            once.next_after(at),
            Some(chrono::Utc.with_ymd_and_hms(2027, 1, 1, 12, 0, 0).unwrap())
        );
    }

    #[test]
    fn bad_expressions_are_named() {
        for bad in ["", "* * *", "61 * * * * *", "@daily", "* * * * * * * *"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid cron expression"), "{bad:?}: {e}");
        }
    }
}
