//! XEP-0092 software version of the server.

use starling_core::xml::{Element, ns};

use super::{
    Addressee, Disco, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::iq::reply;
use crate::server::Server;

pub struct Version;

impl Version {
    pub fn new(options: Options) -> Result<Version, ModuleConfigError> {
        options.none()?;
        Ok(Version)
    }
}

impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: vec![IqRoute::get(ns::VERSION, Addressee::Server)],
            server_disco: vec![Disco::Feature(ns::VERSION)],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move { reply(server, &request.stanza, Some(version())).await })
    }
}

fn version() -> Element {
    Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text("Starling"))
        .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")))
        .with_child(Element::new("os", ns::VERSION).with_text(std::env::consts::OS))
}
