//! Resident memory of another process, from `/proc/PID/status` (Linux).

use serde::{Deserialize, Serialize};

/// One sample of a process's memory, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySample {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most that was ever resident.
    pub peak_kib: u64,
}

pub fn sample(pid: u32) -> std::io::Result<MemorySample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no VmRSS in /proc/PID/status",
        )
    })
}

fn parse_status(status: &str) -> Option<MemorySample> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(MemorySample {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tlua5.4\nVmHWM:\t   91234 kB\nVmRSS:\t   81234 kB\nThreads:\t1\n";
        assert_eq!(
            parse_status(status),
            Some(MemorySample {
                rss_kib: 81234,
                peak_kib: 91234
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let sample = sample(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        assert!(sample.peak_kib >= sample.rss_kib);
    }
}
