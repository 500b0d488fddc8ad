//! `/metrics` through the `prometheus-client` crate: its encoders write
//! the Prometheus text format (version 0.0.4) and OpenMetrics 1.0, and
//! [`Families`] is the thin layer this node's collectors write with.
//!
//! Names: the code spells every family as the Prometheus text format
//! exposes it (`starling_logins_total`). The crate adds `_total` to a
//! counter's samples itself, so [`Families`] hands it a counter's name
//! without that suffix. The text format then reads exactly as it always
//! did (`# TYPE starling_logins_total counter`, `starling_logins_total 3`);
//! OpenMetrics names the family without the suffix
//! (`# TYPE starling_logins counter`) and its samples with it, as that
//! format requires.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
    prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of OpenMetrics 1.0 text.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text 0.0.4, the default.
    Prometheus,
    /// OpenMetrics 1.0, when the `Accept` header asks for it.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `Accept` lists `application/openmetrics-text`
    /// (without `q=0`), the Prometheus text format otherwise.
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        let asks = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                media.eq_ignore_ascii_case("application/openmetrics-text")
                    && !parts.any(|parameter| {
                        parameter
                            .strip_prefix("q=")
                            .and_then(|q| q.parse::<f32>().ok())
                            .is_some_and(|q| q <= 0.0)
                    })
            })
        });
        if asks {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS,
        }
    }

    /// Encodes what `collector` writes, whole (OpenMetrics ends in `# EOF`).
    pub(crate) fn encode(self, collector: impl Collector) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let mut out = String::new();
        let written = match self {
            Format::Prometheus => prometheus_text::encode(&mut out, &registry),
            Format::OpenMetrics => text::encode(&mut out, &registry),
        };
        // Writing to a String fails only if a collector does.
        debug_assert!(written.is_ok(), "{written:?}");
        out
    }
}

/// A counter's family name as the crate wants it: without `_total`.
fn counter_name(name: &str) -> &str {
    debug_assert!(name.ends_with("_total"), "counter {name} without _total");
    name.strip_suffix("_total").unwrap_or(name)
}

/// Writes metric families: `# HELP` and `# TYPE` once, then the samples.
pub(crate) struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl<'a> Families<'a> {
    pub(crate) fn new(encoder: DescriptorEncoder<'a>) -> Families<'a> {
        Families { encoder }
    }

    /// An unlabelled counter; `name` ends in `_total`.
    pub(crate) fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.encoder
            .encode_descriptor(counter_name(name), help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, u64, u64>(&value, None)
    }

    /// An unlabelled gauge.
    pub(crate) fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: impl EncodeGaugeValue,
    ) -> fmt::Result {
        self.encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_gauge(&value)
    }

    /// A counter with one sample per label set; `name` ends in `_total`.
    pub(crate) fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        self.family(
            counter_name(name),
            help,
            MetricType::Counter,
            samples,
            |sample, value| sample.encode_counter::<NoLabelSet, u64, u64>(&value, None),
        )
    }

    /// A gauge with one sample per label set.
    pub(crate) fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        self.family(name, help, MetricType::Gauge, samples, |sample, value| {
            sample.encode_gauge(&value)
        })
    }

    /// A histogram with one series per label set: its sum, its count, and
    /// the count of each bucket (upper bound, not cumulative; the crate
    /// adds them up and the `+Inf` bucket).
    pub(crate) fn histograms<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, Histogram)>,
    ) -> fmt::Result {
        self.family(
            name,
            help,
            MetricType::Histogram,
            series,
            |sample, histogram| {
                sample.encode_histogram::<NoLabelSet>(
                    histogram.sum,
                    histogram.count,
                    &histogram.buckets,
                    None,
                )
            },
        )
    }

    /// A family of `metric_type` with one sample per label set, each
    /// written by `encode`.
    fn family<L: EncodeLabelSet, S>(
        &mut self,
        name: &str,
        help: &str,
        metric_type: MetricType,
        samples: impl IntoIterator<Item = (L, S)>,
        mut encode: impl FnMut(&mut MetricEncoder<'_>, S) -> fmt::Result,
    ) -> fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, metric_type)?;
        for (labels, sample) in samples {
            encode(&mut family.encode_family(&labels)?, sample)?;
        }
        Ok(())
    }
}

/// One histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    pub(crate) sum: f64,
    pub(crate) count: u64,
    /// (upper bound, observations in this bucket alone).
    pub(crate) buckets: Vec<(f64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Sample;

    impl Collector for Sample {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            let mut out = Families::new(encoder);
            out.gauges(
                "starling_sessions",
                "Sessions.\nBound.",
                [([("scope", "local")], 3u64), ([("scope", "a\"b\\c")], 0)],
            )?;
            out.counter("starling_logins_total", "Logins.", 7)?;
            out.gauge("starling_up", "Up.", 0.5)?;
            out.histograms(
                "starling_storage_seconds",
                "Latency.",
                [(
                    [("op", "get_user")],
                    Histogram {
                        sum: 1.5,
                        count: 3,
                        buckets: vec![(0.00025, 1), (1.0, 1)],
                    },
                )],
            )
        }
    }

    #[test]
    fn the_text_format_keeps_counter_names_whole() {
        assert_eq!(
            Format::Prometheus.encode(Sample),
            "# HELP starling_sessions Sessions.\\nBound.\n\
             # TYPE starling_sessions gauge\n\
             starling_sessions{scope=\"local\"} 3\n\
             starling_sessions{scope=\"a\\\"b\\\\c\"} 0\n\
             # HELP starling_logins_total Logins.\n\
             # TYPE starling_logins_total counter\n\
             starling_logins_total 7\n\
             # HELP starling_up Up.\n\
             # TYPE starling_up gauge\n\
             starling_up 0.5\n\
             # HELP starling_storage_seconds Latency.\n\
             # TYPE starling_storage_seconds histogram\n\
             starling_storage_seconds_bucket{op=\"get_user\",le=\"0.00025\"} 1\n\
             starling_storage_seconds_bucket{op=\"get_user\",le=\"1\"} 2\n\
             starling_storage_seconds_bucket{op=\"get_user\",le=\"+Inf\"} 3\n\
             starling_storage_seconds_sum{op=\"get_user\"} 1.5\n\
             starling_storage_seconds_count{op=\"get_user\"} 3\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_in_eof() {
        let text = Format::OpenMetrics.encode(Sample);
        assert!(text.contains("# TYPE starling_logins counter\n"), "{text}");
        assert!(text.contains("\nstarling_logins_total 7\n"), "{text}");
        assert!(text.contains("# TYPE starling_sessions gauge\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn accept_picks_the_format() {
        let pick = Format::from_accept;
        assert_eq!(pick(None), Format::Prometheus);
        assert_eq!(pick(Some("*/*")), Format::Prometheus);
        assert_eq!(pick(Some("text/plain;version=0.0.4")), Format::Prometheus);
        assert_eq!(
            pick(Some(
                "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            pick(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Prometheus
        );
    }
}
