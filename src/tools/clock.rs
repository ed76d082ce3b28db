//! The datetime tool: the current date and time, or a given instant, in any IANA time zone.
//!
//! A language model has no clock and a training cut-off, so "what day is it" or "what time is it in Tokyo" must be
//! answered from here. Zone rules come from the IANA database compiled into `chrono-tz`, so the answer does not
//! depend on the machine's zone files, and daylight saving time is applied for the instant asked about. Where
//! "now" comes from is injectable ([`Clock::fixed`]) so that tests and replayed runs see one instant; the tool owns
//! no other state. Its effect is `Pure`: reading the clock changes nothing, and a retry is harmless.

use chrono::{DateTime, Datelike, NaiveDate, Offset, SecondsFormat, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::{object_schema, CallContext, Effect, Origin, Tool, ToolError, ToolSpec};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
enum Now {
    System,
    Fixed(DateTime<Utc>),
}

/// The `datetime` tool.
pub struct Clock {
    spec: ToolSpec,
    now: Now,
}

impl Clock {
    /// The tool reading the system clock.
    pub fn new() -> Clock {
        Clock { spec: spec(), now: Now::System }
    }

    /// The tool with a clock stopped at `instant`, for tests and reproducible runs.
    pub fn fixed(instant: DateTime<Utc>) -> Clock {
        Clock { spec: spec(), now: Now::Fixed(instant) }
    }

    fn now(&self) -> DateTime<Utc> {
        match self.now {
            Now::System => Utc::now(),
            Now::Fixed(instant) => instant,
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

fn spec() -> ToolSpec {
    let text = json!({ "type": "string" });
    ToolSpec {
        name: "datetime".into(),
        description: "Get the current date, time and weekday in a time zone, e.g. Europe/Paris (default UTC).".into(),
        input_schema: object_schema(
            json!({
                "timezone": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "An IANA time zone name, e.g. Europe/Paris, America/New_York or UTC",
                },
                "at": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "Describe this RFC 3339 timestamp (2024-05-01T12:00:00Z) or calendar date (2024-05-01) instead of now",
                },
            }),
            &[],
        ),
        output_schema: object_schema(
            json!({
                "timezone": text,
                "iso": text,
                "date": text,
                "time": text,
                "weekday": text,
                "utc_offset": text,
                "unix": { "type": "integer" },
                "days_from_now": {
                    "type": "integer",
                    "description": "With `at`: calendar days from today in the zone to its date (negative when past)",
                },
            }),
            &["timezone", "iso", "date", "time", "weekday", "utc_offset", "unix"],
        ),
        effect: Effect::Pure,
        timeout_ms: 2000,
        idempotent: true,
        capability: Some("time".into()),
        origin: Origin::Keel,
    }
}

impl Tool for Clock {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, _cx: &CallContext) -> Result<Value, ToolError> {
        let zone_name = args.get("timezone").and_then(Value::as_str).map(str::trim).unwrap_or("UTC");
        let zone: Tz = zone_name.parse().map_err(|_| ToolError::Failed {
            tool: self.spec.name.clone(),
            message: format!(
                "unknown time zone {zone_name:?}; \
                 use an IANA name like \"Europe/Paris\", \"America/New_York\" or \"UTC\""
            ),
        })?;
        let now = self.now();
        let Some(at) = args.get("at").and_then(Value::as_str) else { return Ok(describe(now, zone)) };
        let at = at.trim();
        // A malformed `at` is the caller's mistake, not the tool's, so it is reported as invalid arguments: the
        // orchestrator then corrects the call instead of looking for another tool.
        let instant = match (DateTime::parse_from_rfc3339(at), NaiveDate::parse_from_str(at, "%Y-%m-%d")) {
            (Ok(instant), _) => instant.with_timezone(&Utc),
            // A calendar date is that day in the zone, at noon (a time every day has, whatever its transitions).
            (_, Ok(date)) => match zone.from_local_datetime(&date.and_hms_opt(12, 0, 0).expect("noon exists")).earliest() {
                Some(local) => local.with_timezone(&Utc),
                None => {
                    return Err(ToolError::Failed { tool: self.spec.name.clone(), message: format!("{at} has no noon in {}", zone.name()) })
                }
            },
            (Err(e), Err(_)) => {
                return Err(ToolError::InvalidArguments {
                    tool: self.spec.name.clone(),
                    errors: vec![format!(
                        "\"at\" must be an RFC 3339 timestamp with an offset, like 2024-05-01T12:00:00Z, or a date like 2024-05-01 ({at:?}: {e})"
                    )],
                })
            }
        };
        let mut described = describe(instant, zone);
        let days = instant.with_timezone(&zone).date_naive().signed_duration_since(now.with_timezone(&zone).date_naive()).num_days();
        described["days_from_now"] = json!(days);
        Ok(described)
    }
}

/// The tool's result: `instant` as seen on a wall clock in `zone`.
fn describe(instant: DateTime<Utc>, zone: Tz) -> Value {
    let local = instant.with_timezone(&zone);
    json!({
        "timezone": zone.name(),
        "iso": local.to_rfc3339_opts(SecondsFormat::Secs, false),
        "date": format!("{:04}-{:02}-{:02}", local.year(), local.month(), local.day()),
        "time": format!("{:02}:{:02}:{:02}", local.hour(), local.minute(), local.second()),
        "weekday": weekday_name(local.weekday()),
        // A FixedOffset displays as "+01:00" (with seconds only for the odd historical zone that had them).
        "utc_offset": local.offset().fix().to_string(),
        "unix": local.timestamp(),
    })
}

/// The full English name: `Weekday`'s own display is the three-letter abbreviation.
fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tools::Toolbox;

    fn instant(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).expect("a valid test instant").with_timezone(&Utc)
    }

    /// Calls through the toolbox, so every result is also checked against the output schema.
    fn call(clock: Clock, args: Value) -> Result<Value, ToolError> {
        let mut toolbox = Toolbox::new();
        toolbox.add(Arc::new(clock)).expect("the datetime schemas compile");
        toolbox.call("datetime", &args, None, &|| false)
    }

    #[test]
    fn paris_in_winter_is_one_hour_ahead_of_utc() {
        let result = call(Clock::fixed(instant("2024-01-15T12:00:00Z")), json!({ "timezone": "Europe/Paris" }));
        assert_eq!(
            result,
            Ok(json!({
                "timezone": "Europe/Paris",
                "iso": "2024-01-15T13:00:00+01:00",
                "date": "2024-01-15",
                "time": "13:00:00",
                "weekday": "Monday",
                "utc_offset": "+01:00",
                "unix": 1_705_320_000,
            }))
        );
    }

    #[test]
    fn paris_in_summer_is_two_hours_ahead_of_utc() {
        let result = call(Clock::fixed(instant("2024-07-15T12:00:00Z")), json!({ "timezone": "Europe/Paris" }));
        assert_eq!(
            result,
            Ok(json!({
                "timezone": "Europe/Paris",
                "iso": "2024-07-15T14:00:00+02:00",
                "date": "2024-07-15",
                "time": "14:00:00",
                "weekday": "Monday",
                "utc_offset": "+02:00",
                "unix": 1_721_044_800,
            }))
        );
    }

    #[test]
    fn new_york_can_still_be_on_the_previous_day() {
        let result = call(Clock::fixed(instant("2024-01-15T03:00:00Z")), json!({ "timezone": "America/New_York" }));
        let result = result.expect("New York is a known zone");
        assert_eq!(result["iso"], "2024-01-14T22:00:00-05:00");
        assert_eq!(result["date"], "2024-01-14");
        assert_eq!(result["weekday"], "Sunday");
        assert_eq!(result["utc_offset"], "-05:00");
    }

    #[test]
    fn the_zone_defaults_to_utc() {
        let result = call(Clock::fixed(instant("2024-01-15T12:00:00Z")), json!({})).expect("UTC is a known zone");
        assert_eq!(result["timezone"], "UTC");
        assert_eq!(result["iso"], "2024-01-15T12:00:00+00:00");
        assert_eq!(result["utc_offset"], "+00:00");
    }

    #[test]
    fn an_unknown_zone_names_itself_and_the_fix() {
        let result = call(Clock::fixed(instant("2024-01-15T12:00:00Z")), json!({ "timezone": "Mars/Olympus" }));
        match result {
            Err(ToolError::Failed { tool, message }) => {
                assert_eq!(tool, "datetime");
                assert!(message.contains("Mars/Olympus") && message.contains("Europe/Paris"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn at_converts_a_given_instant_instead_of_now() {
        let args = json!({ "timezone": "Asia/Tokyo", "at": "2024-03-10T23:30:00-05:00" });
        let result = call(Clock::fixed(instant("2000-01-01T00:00:00Z")), args).expect("a valid conversion");
        assert_eq!(result["iso"], "2024-03-11T13:30:00+09:00");
        assert_eq!(result["date"], "2024-03-11");
        assert_eq!(result["time"], "13:30:00");
        assert_eq!(result["weekday"], "Monday");
        assert_eq!(result["unix"], 1_710_131_400);
    }

    #[test]
    fn a_date_is_that_day_in_the_zone_counted_from_today() {
        let clock = || Clock::fixed(instant("2025-12-20T23:30:00Z"));
        let result = call(clock(), json!({ "at": "2025-12-25" })).expect("a date");
        assert_eq!((result["date"].as_str(), result["weekday"].as_str()), (Some("2025-12-25"), Some("Thursday")));
        assert_eq!(result["days_from_now"], 5);
        // In Tokyo it is already 21 December, so Christmas is one day nearer.
        let result = call(clock(), json!({ "at": "2025-12-25", "timezone": "Asia/Tokyo" })).expect("a date");
        assert_eq!((result["date"].as_str(), result["days_from_now"].as_i64()), (Some("2025-12-25"), Some(4)));
        let past = call(clock(), json!({ "at": "2025-12-01" })).expect("a date");
        assert_eq!(past["days_from_now"], -19);
        assert!(call(clock(), json!({})).expect("now")["days_from_now"].is_null(), "only a given date is counted");
    }

    #[test]
    fn a_malformed_at_is_an_invalid_argument() {
        let result = call(Clock::fixed(instant("2024-01-15T12:00:00Z")), json!({ "at": "yesterday" }));
        assert!(matches!(result, Err(ToolError::InvalidArguments { .. })), "{result:?}");
    }

    #[test]
    fn the_system_clock_gives_a_recent_instant() {
        let result = call(Clock::new(), json!({ "timezone": "UTC" })).expect("the system clock reads");
        let unix = result["unix"].as_i64().expect("unix is an integer");
        assert!(unix > 1_700_000_000, "{unix}");
    }
}
