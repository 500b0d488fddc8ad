//! XEP-0198 stream management as a module: the stream feature, the
//! `[modules.sm]` settings and the figures. The work is done by the
//! connection code with the service in `crate::sm`.

use std::sync::Arc;

use super::{Metric, Module, ModuleConfigError, Options, Registration, StreamFeature};
use crate::sm::{SmConfig, StreamManagement, wire};

pub struct SmModule {
    service: Arc<StreamManagement>,
}

impl SmModule {
    pub fn new(options: Options) -> Result<SmModule, ModuleConfigError> {
        let config: SmConfig = options.parse()?;
        Ok(SmModule {
            service: Arc::new(StreamManagement::new(config)),
        })
    }
}

impl Module for SmModule {
    fn name(&self) -> &'static str {
        "sm"
    }

    fn registration(&self) -> Registration {
        Registration {
            stream_features: vec![StreamFeature {
                name: "sm",
                ns: wire::NS,
            }],
            ..Registration::default()
        }
    }

    fn stream_management(&self) -> Option<Arc<StreamManagement>> {
        Some(self.service.clone())
    }

    fn metrics(&self) -> Vec<Metric> {
        let c = &self.service.counters;
        vec![
            Metric::counter(
                "starling_sm_enabled_total",
                "Streams that enabled stream management (XEP-0198).",
                &c.enabled,
            ),
            Metric::counter(
                "starling_sm_resumed_total",
                "Sessions resumed on this member (from here or from another member).",
                &c.resumed,
            ),
            Metric::counter(
                "starling_sm_resumed_from_peer_total",
                "Sessions resumed here that another member held.",
                &c.resumed_from_peer,
            ),
            Metric::counter(
                "starling_sm_handed_over_total",
                "Sessions handed to another member where their client resumed.",
                &c.handed_over,
            ),
            Metric::counter(
                "starling_sm_resume_failed_total",
                "Resumptions refused (unknown, expired or foreign id).",
                &c.failed,
            ),
            Metric::counter(
                "starling_sm_handovers_abandoned_total",
                "Sessions handed between members that neither kept (a reply lost or too late, or the client logged in again meanwhile); each ended as for a closed window, or its stanzas sent on to the new session.",
                &c.abandoned,
            ),
            Metric::counter(
                "starling_sm_expired_total",
                "Detached sessions whose resumption window closed.",
                &c.expired,
            ),
            Metric::gauge(
                "starling_sm_detached_sessions",
                "Sessions on this member waiting for their client to resume.",
                c.detached.load(std::sync::atomic::Ordering::Relaxed),
            ),
            Metric::gauge(
                "starling_sm_resumable_sessions",
                "Resumable sessions on this member, attached or not.",
                self.service.registry.len() as u64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_documents_the_defaults() {
        let documented: SmConfig = super::super::registry::documented("sm");
        assert_eq!(documented, SmConfig::default());
    }
}
