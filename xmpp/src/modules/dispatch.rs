//! The registry the core calls: routes and hooks resolved once at start.

use std::collections::HashMap;
use std::sync::Arc;

use starling_core::cluster::{NodeId, StanzaKind};
use starling_core::config::Config;
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

use super::registry::{self, ModuleConfigError};
use super::{
    Addressee, Delivery, Disco, Flow, Hook, IqRequest, Module, StanzaKinds, StreamFeature,
};
use crate::router::Routed;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{IqType, Stanza};
use crate::storage::{StorageError, Store};

/// One stanza hook's modules (indices into `Modules::all`) by stanza kind.
#[derive(Default)]
struct KindHooks {
    message: Vec<usize>,
    presence: Vec<usize>,
    iq: Vec<usize>,
}

impl KindHooks {
    fn add(&mut self, index: usize, kinds: StanzaKinds) {
        for (kind, list) in [
            (StanzaKind::Message, &mut self.message),
            (StanzaKind::Presence, &mut self.presence),
            (StanzaKind::Iq, &mut self.iq),
        ] {
            if kinds.contains(kind) {
                list.push(index);
            }
        }
    }

    fn of(&self, kind: StanzaKind) -> &[usize] {
        match kind {
            StanzaKind::Message => &self.message,
            StanzaKind::Presence => &self.presence,
            StanzaKind::Iq => &self.iq,
        }
    }
}

/// The enabled modules, with their routes and hooks indexed.
pub struct Modules {
    all: Vec<Arc<dyn Module>>,
    /// (type, addressee) -> payload namespace -> module.
    iqs: HashMap<(IqType, Addressee), HashMap<&'static str, usize>>,
    hosts: HashMap<String, usize>,
    /// Each hook's modules, indexed by the hook's discriminant (asked on
    /// every stanza, so no hashing).
    hooks: Vec<Vec<usize>>,
    /// The `ClientStanza` and `Inbound` hooks by the kind of stanza their
    /// modules take (`Registration::stanza_kinds`), in hook order.
    client_stanza: KindHooks,
    inbound: KindHooks,
    server_disco: Vec<Disco>,
    account_disco: Vec<Disco>,
    stream_features: Vec<StreamFeature>,
    /// Cache name -> the module keeping it.
    caches: HashMap<String, usize>,
    /// XEP-0198, when the `sm` module is enabled.
    sm: Option<Arc<crate::sm::StreamManagement>>,
    /// The index of the `csi` module (XEP-0352), when enabled.
    csi: Option<usize>,
}

impl Modules {
    /// Builds the modules `config` enables; fails on unknown sections or
    /// keys and on two modules claiming the same iq or host.
    pub fn from_config(config: &Config) -> Result<Modules, ModuleConfigError> {
        Modules::from_list(registry::build(config)?)
    }

    fn from_list(all: Vec<Arc<dyn Module>>) -> Result<Modules, ModuleConfigError> {
        let mut modules = Modules {
            all: Vec::new(),
            iqs: HashMap::new(),
            hosts: HashMap::new(),
            hooks: Vec::new(),
            client_stanza: KindHooks::default(),
            inbound: KindHooks::default(),
            server_disco: Vec::new(),
            account_disco: Vec::new(),
            stream_features: Vec::new(),
            caches: HashMap::new(),
            sm: None,
            csi: None,
        };
        for (index, module) in all.iter().enumerate() {
            let registration = module.registration();
            for route in registration.iqs {
                let by_ns = modules.iqs.entry((route.ty, route.to)).or_default();
                if let Some(first) = by_ns.insert(route.ns, index) {
                    return Err(ModuleConfigError::Conflict {
                        first: all[first].name(),
                        second: module.name(),
                        route: format!("{:?} {{{}}} to {:?}", route.ty, route.ns, route.to),
                    });
                }
            }
            for host in registration.hosts {
                if let Some(first) = modules.hosts.insert(host.clone(), index) {
                    return Err(ModuleConfigError::Conflict {
                        first: all[first].name(),
                        second: module.name(),
                        route: format!("the host {host}"),
                    });
                }
            }
            for hook in registration.hooks {
                let slot = hook as usize;
                if modules.hooks.len() <= slot {
                    modules.hooks.resize_with(slot + 1, Vec::new);
                }
                let hooked = &mut modules.hooks[slot];
                if !hooked.contains(&index) {
                    hooked.push(index);
                    match hook {
                        Hook::ClientStanza => {
                            modules.client_stanza.add(index, registration.stanza_kinds);
                        }
                        Hook::Inbound => modules.inbound.add(index, registration.stanza_kinds),
                        _ => {}
                    }
                }
            }
            if let Some(sm) = module.stream_management() {
                modules.sm = Some(sm);
            }
            if module.client_state().is_some() {
                modules.csi = Some(index);
            }
            modules.server_disco.extend(registration.server_disco);
            modules.account_disco.extend(registration.account_disco);
            modules.stream_features.extend(registration.stream_features);
            for cache in module.caches() {
                let name = cache.stats().name;
                if let Some(first) = modules.caches.insert(name.clone(), index) {
                    return Err(ModuleConfigError::Conflict {
                        first: all[first].name(),
                        second: module.name(),
                        route: format!("the cache {name}"),
                    });
                }
            }
        }
        modules.all = all;
        Ok(modules)
    }

    /// The enabled modules' names, in hook order.
    pub fn names(&self) -> Vec<&'static str> {
        self.all.iter().map(|module| module.name()).collect()
    }

    fn hooked(&self, hook: Hook) -> impl Iterator<Item = &Arc<dyn Module>> {
        self.hooks
            .get(hook as usize)
            .into_iter()
            .flatten()
            .map(|&index| &self.all[index])
    }

    /// Every module's figures for `/metrics`.
    pub fn metrics(&self) -> Vec<super::Metric> {
        self.all
            .iter()
            .flat_map(|module| module.metrics())
            .collect()
    }

    /// What disco#info / disco#items on the server list.
    pub fn server_disco(&self) -> &[Disco] {
        &self.server_disco
    }

    /// What disco#info on an account lists.
    pub fn account_disco(&self) -> &[Disco] {
        &self.account_disco
    }

    /// What the stream features after authentication list.
    pub fn stream_features(&self) -> &[StreamFeature] {
        &self.stream_features
    }

    /// Registers every module's caches with the node's registry.
    pub fn register_caches(&self, registry: &starling_core::cache::CacheRegistry) {
        for module in &self.all {
            for cache in module.caches() {
                registry.register(cache);
            }
        }
    }

    /// Hands an invalidation from another member to the module keeping the
    /// named cache; false when no module keeps it.
    pub async fn invalidate(&self, server: &Server, cache: &str, key: &str) -> bool {
        let Some(&index) = self.caches.get(cache) else {
            return false;
        };
        self.all[index].invalidate(server, cache, key).await;
        true
    }

    /// The module serving `domain` as a host of its own, if any.
    pub fn host(&self, domain: &str) -> Option<&Arc<dyn Module>> {
        self.hosts.get(domain).map(|&index| &self.all[index])
    }

    /// The module answering an iq, trying the addressees in order.
    pub fn iq_handler(
        &self,
        stanza: &Stanza,
        addressees: &[Addressee],
    ) -> Option<(Addressee, &Arc<dyn Module>)> {
        let ty = stanza.iq_type()?;
        let ns = stanza.payload()?.ns();
        addressees.iter().find_map(|&to| {
            let index = *self.iqs.get(&(ty, to))?.get(ns)?;
            Some((to, &self.all[index]))
        })
    }

    /// Hands an iq to its module.
    pub async fn iq(
        &self,
        server: &Server,
        module: &Arc<dyn Module>,
        request: IqRequest,
    ) -> Routed {
        module.iq(server, request).await
    }

    /// The `ClientStanza` hooks; `Done` when a module took the stanza.
    pub async fn client_stanza(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        mut stanza: Stanza,
    ) -> Flow {
        for &index in self.client_stanza.of(stanza.kind) {
            match self.all[index].client_stanza(server, session, stanza).await {
                Flow::Continue(next) => stanza = next,
                done @ Flow::Done(_) => return done,
            }
        }
        Flow::Continue(stanza)
    }

    /// The `Inbound` hooks; `Done` when a module took the stanza.
    pub async fn inbound(&self, server: &Server, mut stanza: Stanza, to: &Jid) -> Flow {
        for &index in self.inbound.of(stanza.kind) {
            match self.all[index].inbound(server, stanza, to).await {
                Flow::Continue(next) => stanza = next,
                done @ Flow::Done(_) => return done,
            }
        }
        Flow::Continue(stanza)
    }

    /// The `Deliver` hooks: whether the stanza goes to the session.
    pub fn deliver(&self, server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        for module in self.hooked(Hook::Deliver) {
            if module.deliver(server, session, stanza) == Delivery::Withhold {
                return Delivery::Withhold;
            }
        }
        Delivery::Deliver
    }

    /// The `AccountItems` hooks: every module's dynamic disco#items of an
    /// account, in hook order.
    pub async fn account_items(
        &self,
        server: &Server,
        account: &BareJid,
        requester: &BareJid,
    ) -> Result<Vec<Element>, StorageError> {
        let mut items = Vec::new();
        for module in self.hooked(Hook::AccountItems) {
            items.extend(module.account_items(server, account, requester).await?);
        }
        Ok(items)
    }

    /// The `OutboundPresence` hooks: whether presence `user`'s server sends
    /// for them may go to `contact`.
    pub fn outbound_presence(&self, server: &Server, user: &BareJid, contact: &Jid) -> Delivery {
        for module in self.hooked(Hook::OutboundPresence) {
            if module.outbound_presence(server, user, contact) == Delivery::Withhold {
                return Delivery::Withhold;
            }
        }
        Delivery::Deliver
    }

    /// The `Offline` hooks; `Done` when a module took the message.
    pub async fn offline(&self, server: &Server, mut stanza: Stanza, user: &BareJid) -> Flow {
        for module in self.hooked(Hook::Offline) {
            match module.offline(server, stanza, user).await {
                Flow::Continue(next) => stanza = next,
                done @ Flow::Done(_) => return done,
            }
        }
        Flow::Continue(stanza)
    }

    pub async fn session_opened(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        replaced: Option<&Arc<LocalSession>>,
    ) {
        for module in self.hooked(Hook::SessionOpened) {
            module.session_opened(server, session, replaced).await;
        }
    }

    pub async fn resource_available(&self, server: &Server, session: &LocalSession) {
        for module in self.hooked(Hook::ResourceAvailable) {
            module.resource_available(server, session).await;
        }
    }

    pub async fn session_closed(&self, server: &Server, session: &Arc<LocalSession>) {
        for module in self.hooked(Hook::SessionClosed) {
            module.session_closed(server, session).await;
        }
    }

    pub async fn peer_sessions(
        &self,
        server: &Server,
        sessions: &[FullJid],
        regained_from: Option<NodeId>,
    ) {
        for module in self.hooked(Hook::PeerSessions) {
            module.peer_sessions(server, sessions, regained_from).await;
        }
    }

    /// Stream management (XEP-0198), when enabled.
    pub fn sm(&self) -> Option<&Arc<crate::sm::StreamManagement>> {
        self.sm.as_ref()
    }

    /// Client state indication (XEP-0352), when enabled.
    pub fn csi(&self) -> Option<&super::csi::CsiModule> {
        self.csi.and_then(|index| self.all[index].client_state())
    }

    /// What each module keeps for a session that moves to another member,
    /// by module name; each module forgets the session here.
    pub fn export_session(&self, server: &Server, session: &LocalSession) -> Vec<(String, String)> {
        self.hooked(Hook::SessionMoved)
            .filter_map(|module| {
                let state = module.export_session(server, session)?;
                Some((module.name().to_owned(), state))
            })
            .collect()
    }

    /// Hands each module what it kept for a session arriving from another member.
    pub async fn import_session(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        states: &[(String, String)],
    ) {
        for module in self.hooked(Hook::SessionMoved) {
            let state = states
                .iter()
                .find(|(name, _)| name == module.name())
                .map(|(_, state)| state.as_str());
            module.import_session(server, session, state).await;
        }
    }

    pub async fn member_up(&self, server: &Server, node: NodeId) {
        for module in self.hooked(Hook::MemberUp) {
            module.member_up(server, node).await;
        }
    }

    pub async fn stopping(&self, server: &Server) {
        for module in self.hooked(Hook::Stopping) {
            module.stopping(server).await;
        }
    }

    pub async fn stopped(&self, server: &Server) {
        for module in self.hooked(Hook::Stopped) {
            module.stopped(server).await;
        }
    }

    pub fn started(&self, server: &Arc<Server>) {
        for module in self.hooked(Hook::Started) {
            module.started(server);
        }
    }

    /// Every module removes what it stored for the account; the first
    /// failure is returned after all have been asked.
    pub async fn user_deleted(&self, store: &Store, user: &BareJid) -> Result<(), StorageError> {
        let mut first_error = None;
        for module in self.hooked(Hook::UserDeleted) {
            if let Err(error) = module.user_deleted(store, user).await {
                tracing::error!(%user, module = module.name(), %error, "removing a deleted account's data failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::{IqRoute, Registration};
    use starling_core::xml::ns;

    struct Fake(&'static str, Vec<IqRoute>);

    impl Module for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn registration(&self) -> Registration {
            Registration {
                iqs: self.1.clone(),
                hooks: vec![Hook::Deliver],
                ..Registration::default()
            }
        }
    }

    #[test]
    fn two_modules_answering_one_iq_are_refused() {
        let route = IqRoute::get(ns::PING, Addressee::Server);
        let result = Modules::from_list(vec![
            Arc::new(Fake("a", vec![route])),
            Arc::new(Fake("b", vec![route])),
        ]);
        let Err(ModuleConfigError::Conflict { first, second, .. }) = result else {
            panic!("a conflict must be refused");
        };
        assert_eq!((first, second), ("a", "b"));
    }

    struct Hooked(&'static str, StanzaKinds);

    impl Module for Hooked {
        fn name(&self) -> &'static str {
            self.0
        }
        fn registration(&self) -> Registration {
            Registration {
                hooks: vec![Hook::ClientStanza, Hook::Inbound, Hook::ClientStanza],
                stanza_kinds: self.1,
                ..Registration::default()
            }
        }
    }

    #[test]
    fn stanza_hooks_are_called_only_for_the_kinds_a_module_takes() {
        let modules = Modules::from_list(vec![
            Arc::new(Hooked("all", StanzaKinds::ALL)),
            Arc::new(Hooked(
                "presence",
                StanzaKinds::only(&[StanzaKind::Presence]),
            )),
            Arc::new(Hooked(
                "chat",
                StanzaKinds::only(&[StanzaKind::Message, StanzaKind::Iq]),
            )),
        ])
        .unwrap();
        for hooks in [&modules.client_stanza, &modules.inbound] {
            assert_eq!(hooks.of(StanzaKind::Message), [0, 2]);
            assert_eq!(hooks.of(StanzaKind::Presence), [0, 1]);
            assert_eq!(hooks.of(StanzaKind::Iq), [0, 2]);
        }
        assert_eq!(Registration::default().stanza_kinds, StanzaKinds::ALL);
        // Each hooking module once, whatever its registration repeats.
        let names = |hook| modules.hooked(hook).map(|m| m.name()).collect::<Vec<_>>();
        assert_eq!(names(Hook::ClientStanza), ["all", "presence", "chat"]);
        assert_eq!(names(Hook::Inbound), ["all", "presence", "chat"]);
        assert!(names(Hook::Deliver).is_empty());
        assert!(
            names(Hook::SessionMoved).is_empty(),
            "past the last hooked slot"
        );
    }

    struct Caching(&'static str, Arc<starling_core::cache::Lru<String, ()>>);

    impl Module for Caching {
        fn name(&self) -> &'static str {
            self.0
        }
        fn registration(&self) -> Registration {
            Registration::default()
        }
        fn caches(&self) -> Vec<Arc<dyn starling_core::cache::StatsSource>> {
            vec![self.1.clone()]
        }
    }

    fn lru(name: &'static str) -> Arc<starling_core::cache::Lru<String, ()>> {
        Arc::new(starling_core::cache::Lru::new(
            name,
            starling_core::cache::CacheKind::Invalidated,
            4,
        ))
    }

    #[test]
    fn module_caches_are_registered_and_must_have_their_own_names() {
        let modules = Modules::from_list(vec![Arc::new(Caching("a", lru("lists")))]).unwrap();
        let registry = starling_core::cache::CacheRegistry::default();
        modules.register_caches(&registry);
        let names: Vec<String> = registry.snapshot().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["lists"]);

        let result = Modules::from_list(vec![
            Arc::new(Caching("a", lru("lists"))),
            Arc::new(Caching("b", lru("lists"))),
        ]);
        let Err(ModuleConfigError::Conflict { first, second, .. }) = result else {
            panic!("two caches of one name must be refused");
        };
        assert_eq!((first, second), ("a", "b"));
    }

    #[test]
    fn the_default_config_builds_every_module_without_conflicts() {
        let modules = Modules::from_config(&Config::defaults()).unwrap();
        assert_eq!(modules.names(), registry::known_modules());
    }

    #[test]
    fn the_default_config_file_builds_every_module() {
        let config = Config::parse(starling_core::config::DEFAULT_CONFIG_TOML).unwrap();
        let modules = Modules::from_config(&config).unwrap();
        assert_eq!(modules.names(), registry::known_modules());
    }

    #[test]
    fn an_unknown_module_section_names_it_and_the_known_ones() {
        let config = Config::parse("[modules.vcrad]\nenabled = true\n").unwrap();
        let error = Modules::from_config(&config).err().unwrap().to_string();
        assert!(error.contains("\"vcrad\""), "{error}");
        assert!(error.contains("roster"), "{error}");
    }

    #[test]
    fn an_unknown_key_of_a_module_names_the_key() {
        let config = Config::parse("[modules.ping]\nintervall = 3\n").unwrap();
        let error = Modules::from_config(&config).err().unwrap().to_string();
        assert!(
            error.contains("modules.ping") && error.contains("intervall"),
            "{error}"
        );
    }

    #[test]
    fn a_disabled_module_is_not_built_into_the_registry() {
        let config = Config::parse("[modules.version]\nenabled = false\n").unwrap();
        let modules = Modules::from_config(&config).unwrap();
        assert!(!modules.names().contains(&"version"));
    }
}
