//! A writer for the Prometheus text exposition format (version 0.0.4):
//! `# HELP` and `# TYPE` once per metric family, then its samples.

use std::fmt::Write;

/// The metric kinds this node exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family; its samples follow.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample: `name{labels} value`.
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Into<f64>,
    ) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let value: f64 = value.into();
        if value.is_finite() {
            let _ = writeln!(self.out, " {value}");
        } else if value.is_nan() {
            self.out.push_str(" NaN\n");
        } else if value > 0.0 {
            self.out.push_str(" +Inf\n");
        } else {
            self.out.push_str(" -Inf\n");
        }
        self
    }

    /// A family with one unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<f64>) {
        self.family(name, kind, help).sample(name, &[], value);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Counters are u64; f64 holds them exactly up to 2^53, far beyond what a
/// node counts.
pub(crate) fn count(value: u64) -> f64 {
    value as f64
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_follow_the_text_format() {
        let mut out = Exposition::default();
        out.family("starling_sessions", Kind::Gauge, "Sessions.\nBound.")
            .sample("starling_sessions", &[("scope", "local")], 3u32)
            .sample("starling_sessions", &[("scope", "a\"b\\c")], 0.5);
        out.single("starling_up", Kind::Gauge, "Up.", f64::INFINITY);
        assert_eq!(
            out.finish(),
            "# HELP starling_sessions Sessions.\\nBound.\n\
             # TYPE starling_sessions gauge\n\
             starling_sessions{scope=\"local\"} 3\n\
             starling_sessions{scope=\"a\\\"b\\\\c\"} 0.5\n\
             # HELP starling_up Up.\n\
             # TYPE starling_up gauge\n\
             starling_up +Inf\n"
        );
    }
}
