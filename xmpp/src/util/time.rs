//! XEP-0082 timestamps without a calendar dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as an XEP-0082 DateTime in UTC
/// (`2026-11-22T08:15:00.123Z`).
pub fn xep0082(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// Reads back what [`xep0082`] writes: Unix milliseconds of a UTC DateTime
/// (`2026-11-22T08:15:00.123Z`; fractions beyond milliseconds are cut).
pub fn parse_xep0082(stamp: &str) -> Option<i64> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (time, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut time = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let in_range = (1..=12).contains(&month) && (1..=31).contains(&day);
    if !in_range || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
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
    fn formats_known_instants() {
        assert_eq!(xep0082(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(xep0082(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(xep0082(1_795_335_300_123), "2026-11-22T08:15:00.123Z");
        assert_eq!(xep0082(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 951_782_400_000, 1_795_335_300_123, -1, 4_102_444_799_999] {
            assert_eq!(parse_xep0082(&xep0082(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_xep0082("2026-11-22T08:15:00Z"),
            Some(1_795_335_300_000)
        );
        assert_eq!(
            parse_xep0082("2026-11-22T08:15:00.5Z"),
            Some(1_795_335_300_500)
        );
        assert_eq!(
            parse_xep0082("2026-11-22T08:15:00.123456Z"),
            Some(1_795_335_300_123)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T08:15:00",
            "2026-13-01T00:00:00Z",
            "x-1-1T0:0:0Z",
        ] {
            assert_eq!(parse_xep0082(bad), None, "{bad:?}");
        }
    }
}
