//! Timestamps: local wall-clock time for events on screen (the time zone
//! from `TZ` or /etc/localtime, by jiff), UTC RFC 3339 for the traffic log.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `HH:MM:SS.mmm` in the local time zone for a Unix time (UTC when the
/// zone cannot be read).
pub fn local_time_of_day(seconds: i64, micros: u32) -> String {
    time_of_day_in(local_zone(), seconds, micros)
}

fn time_of_day_in(zone: &TimeZone, seconds: i64, micros: u32) -> String {
    let offset = Timestamp::from_second(seconds).map_or(0, |t| zone.to_offset(t).seconds());
    let of_day = (seconds + i64::from(offset)).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{:03}", of_day / 3600, of_day / 60 % 60, of_day % 60, micros / 1000)
}

/// The local time zone, read once: a `.wait` loop printing many events does
/// not re-read /etc/localtime.
fn local_zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| TimeZone::try_system().unwrap_or(TimeZone::UTC))
}

/// The current time as seconds and microseconds since the Unix epoch.
pub fn now() -> (i64, u32) {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() as i64, since.subsec_micros())
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` for a Unix time (the epoch for one
/// outside the years jiff reads, -9999 to 9999).
pub fn utc_rfc3339(seconds: i64, micros: u32) -> String {
    let at = TimeZone::UTC.to_datetime(Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_day_follows_the_zone() {
        let kolkata = TimeZone::fixed(jiff::tz::Offset::from_seconds(5 * 3600 + 1800).unwrap());
        assert_eq!(time_of_day_in(&kolkata, 1_795_608_000, 123_456), "17:30:00.123");
        assert_eq!(time_of_day_in(&TimeZone::UTC, 1_795_608_000, 999), "12:00:00.000");
        let behind = TimeZone::fixed(jiff::tz::Offset::from_seconds(-13 * 3600).unwrap());
        assert_eq!(time_of_day_in(&behind, 1_795_608_000, 0), "23:00:00.000");
    }

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(utc_rfc3339(1_795_608_000, 123_456), "2026-11-25T12:00:00.123456Z");
        assert_eq!(utc_rfc3339(-1, 0), "1969-12-31T23:59:59.000000Z");
    }
}
