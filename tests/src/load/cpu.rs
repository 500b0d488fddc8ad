//! CPU time of another process, from `/proc/PID/stat` (Linux).
//!
//! `utime + stime` there covers every thread of the process, including threads that have
//! already exited (a blocking-pool thread that came and went still counts), which the
//! per-thread `schedstat` files would miss.

use std::sync::OnceLock;

/// User plus system CPU seconds the process has used so far.
pub fn seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no utime/stime in /proc/PID/stat",
        )
    })?;
    Ok(ticks as f64 / ticks_per_second() as f64)
}

/// CPU seconds of all `pids`, added up.
pub fn total_seconds(pids: &[u32]) -> Result<f64, (u32, std::io::Error)> {
    pids.iter().try_fold(0.0, |total, &pid| {
        seconds(pid)
            .map(|used| total + used)
            .map_err(|error| (pid, error))
    })
}

/// `utime + stime` in clock ticks: fields 14 and 15, counted after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is the first, so utime (14) is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (the crate forbids the unsafe call).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            // USER_HZ is 100 on every architecture this runs on.
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_an_odd_name() {
        let stat = "4321 (lua5.4 (x) y) S 1 4321 4321 0 -1 4194560 2093 0 0 0 150 32 0 0 20 0 \
                    1 0 12345 45678592 2345 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(182));
        assert_eq!(parse_stat("12 (short) S 1 2"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        // Burn a little CPU so the tick counter has moved.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert!(x != 1);
        let used = seconds(std::process::id()).unwrap();
        assert!(used > 0.0, "{used}");
        assert!(total_seconds(&[std::process::id(), std::process::id()]).unwrap() >= used);
        assert!(total_seconds(&[u32::MAX]).is_err());
    }
}
