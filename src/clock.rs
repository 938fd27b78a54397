//! Timestamps: local wall-clock time for events on screen, UTC RFC 3339
//! for the traffic log. Small enough not to need a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// `HH:MM:SS.mmm` in the local time zone for a Unix time.
pub fn local_time_of_day(seconds: i64, micros: u32) -> String {
    // SAFETY: localtime_r only writes into the `tm` we pass it.
    let (hour, minute, second) = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = seconds;
        if libc::localtime_r(&t, &mut tm).is_null() {
            let of_day = seconds.rem_euclid(86_400);
            (of_day / 3600, of_day / 60 % 60, of_day % 60)
        } else {
            (i64::from(tm.tm_hour), i64::from(tm.tm_min), i64::from(tm.tm_sec))
        }
    };
    format!("{hour:02}:{minute:02}:{second:02}.{:03}", micros / 1000)
}

/// The current time as seconds and microseconds since the Unix epoch.
pub fn now() -> (i64, u32) {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() as i64, since.subsec_micros())
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` for a Unix time.
pub fn utc_rfc3339(seconds: i64, micros: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(utc_rfc3339(1_795_608_000, 123_456), "2026-11-25T12:00:00.123456Z");
    }
}
