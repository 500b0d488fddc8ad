//! XEP-0082 DateTimes, the profile of RFC 3339 that XMPP stamps use
//! (`2026-11-22T08:15:00.123Z`, `2026-11-22T10:15:00+02:00`), read and
//! written with the `time` crate.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The instants XEP-0082's four-digit years can name:
/// 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z.
const FIRST_MS: i64 = -62_167_219_200_000;
const LAST_MS: i64 = 253_402_300_799_999;

/// Formats Unix milliseconds as an XEP-0082 DateTime in UTC with
/// milliseconds (`2026-11-22T08:15:00.123Z`). Instants beyond the years
/// 0000 to 9999 are written as the nearest one within them.
pub fn xep0082(ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let nanos = i128::from(ms.clamp(FIRST_MS, LAST_MS)) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|instant| instant.format(format).ok())
        .expect("years 0000 to 9999 are representable and format")
}

/// A stamp that is not an XEP-0082 DateTime, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("not an XEP-0082 DateTime such as 2026-11-22T08:15:00Z: {0}")]
pub struct BadStamp(#[from] time::error::Parse);

/// Unix milliseconds of an XEP-0082 DateTime: any UTC offset (`Z`,
/// `+02:00`, `-05:30`), with or without fractional seconds (cut to
/// milliseconds).
pub fn parse_xep0082(stamp: &str) -> Result<i64, BadStamp> {
    let instant = OffsetDateTime::parse(stamp, &Rfc3339)?.to_offset(UtcOffset::UTC);
    let ms = instant.unix_timestamp_nanos().div_euclid(1_000_000);
    // Four-digit years keep this far inside i64.
    Ok(ms as i64)
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
    fn formats_the_ends_of_four_digit_years() {
        assert_eq!(xep0082(FIRST_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(xep0082(LAST_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(xep0082(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(xep0082(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [
            0,
            951_782_400_000,
            1_795_335_300_123,
            -1,
            4_102_444_799_999,
            FIRST_MS,
            LAST_MS,
        ] {
            assert_eq!(parse_xep0082(&xep0082(ms)).unwrap(), ms, "{ms}");
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let utc = 1_795_335_300_000;
        for (stamp, ms) in [
            ("2026-11-22T08:15:00Z", utc),
            ("2026-11-22T08:15:00z", utc),
            ("2026-11-22T10:15:00+02:00", utc),
            ("2026-11-22T02:45:00-05:30", utc),
            ("2026-11-22T08:15:00+00:00", utc),
            ("2026-11-22T08:15:00-00:00", utc),
            ("2026-11-23T07:15:00+23:00", utc),
            ("2026-11-22T08:15:00.5Z", utc + 500),
            ("2026-11-22T08:15:00.123456Z", utc + 123),
            ("2026-11-22T08:15:00.123456789012Z", utc + 123),
            ("2026-11-22T09:15:00.999+01:00", utc + 999),
            ("1969-12-31T23:59:59.9995Z", -1),
        ] {
            assert_eq!(parse_xep0082(stamp).unwrap(), ms, "{stamp}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_datetime() {
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T08:15:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T08:15:00+2:00",
            "2026-11-22T08:15:00+0200",
            "2026-11-22T08:15:00.Z",
            "x-1-1T0:0:0Z",
            "2026-11-22T08:15:00Z trailing",
        ] {
            assert!(parse_xep0082(bad).is_err(), "{bad:?}");
        }
        let error = parse_xep0082("2026-11-22T08:15:00").unwrap_err();
        assert!(error.to_string().contains("XEP-0082"), "{error}");
    }
}
