//! The catalogue of modules and their `[modules.<name>]` config.
//!
//! Adding a module: write it in its own file under `modules/`, add one
//! line to [`CATALOGUE`] (the position is its place in every hook's order),
//! and document its keys in the default config and README.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use starling_core::config::Config;

use super::Module;

/// A module's settings from `[modules.<name>]`, without `enabled`.
pub struct Options {
    module: &'static str,
    table: toml::Table,
}

impl Options {
    /// Reads the settings into the module's own struct, which should deny
    /// unknown fields so a typo names the key.
    pub fn parse<T: DeserializeOwned>(self) -> Result<T, ModuleConfigError> {
        let module = self.module;
        toml::Value::Table(self.table)
            .try_into()
            .map_err(|error: toml::de::Error| ModuleConfigError::Invalid {
                module,
                message: error.message().trim_end().to_owned(),
            })
    }

    /// The options of a module whose one key is a size limit,
    /// `max_bytes` (at least 1; `default` when not set).
    pub fn max_bytes(self, default: u64) -> Result<u64, ModuleConfigError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SizeLimit {
            max_bytes: Option<u64>,
        }
        let module = self.module;
        let limit: SizeLimit = self.parse()?;
        match limit.max_bytes.unwrap_or(default) {
            0 => Err(ModuleConfigError::zero(module, "max_bytes")),
            max => Ok(max),
        }
    }

    /// The settings of `[modules.<module>]` as a test writes them.
    #[cfg(test)]
    pub(crate) fn for_test(module: &'static str, table: toml::Table) -> Options {
        Options { module, table }
    }

    /// The settings of `[modules.<module>]` in a config file's text, as
    /// the registry hands them over (without `enabled`).
    #[cfg(test)]
    pub(crate) fn from_config_for_test(module: &'static str, toml: &str) -> Options {
        let config = Config::parse(toml).expect("a valid test config");
        let mut table = config.modules.get(module).cloned().unwrap_or_default();
        table.remove("enabled");
        Options { module, table }
    }

    /// For modules without settings: anything but `enabled` is an error.
    pub fn none(self) -> Result<(), ModuleConfigError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(key) => Err(ModuleConfigError::Invalid {
                module: self.module,
                message: format!("unknown key `{key}`: this module has no settings but `enabled`"),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleConfigError {
    #[error(
        "config section `[modules.{name}]`: there is no module {name:?}; known modules: {known}"
    )]
    Unknown { name: String, known: String },
    #[error("config section `[modules.{module}]`: {message}")]
    Invalid {
        module: &'static str,
        message: String,
    },
    #[error("modules {first} and {second} both answer {route}")]
    Conflict {
        first: &'static str,
        second: &'static str,
        route: String,
    },
}

impl ModuleConfigError {
    /// A setting that must be at least 1 was 0.
    pub fn zero(module: &'static str, key: &str) -> ModuleConfigError {
        ModuleConfigError::Invalid {
            module,
            message: format!("`{key}` must be at least 1"),
        }
    }
}

type Build = fn(&Config, Options) -> Result<Arc<dyn Module>, ModuleConfigError>;

struct Entry {
    name: &'static str,
    enabled_by_default: bool,
    build: Build,
}

fn arc<M: Module>(module: M) -> Result<Arc<dyn Module>, ModuleConfigError> {
    Ok(Arc::new(module))
}

/// Every module, in hook order. Blocking sees a client's stanza first (a
/// stanza to a blocked JID goes no further). Modules that read or change a
/// client's presence come before the presence module, which takes it: vcard adds the
/// XEP-0153 photo hash, last reads the status of an unavailable presence,
/// pep reads the capabilities. The archive stamps a message's stanza id
/// before carbons copy it.
const CATALOGUE: &[Entry] = &[
    Entry {
        name: "disco",
        enabled_by_default: true,
        build: |_, options| arc(super::disco::Disco::new(options)?),
    },
    // Before roster and presence: a stanza to or from a blocked JID stops
    // here, before those modules act on it.
    Entry {
        name: "blocking",
        enabled_by_default: true,
        build: |_, options| arc(super::blocking::BlockingModule::new(options)?),
    },
    Entry {
        name: "roster",
        enabled_by_default: true,
        build: |_, options| arc(super::roster::RosterModule::new(options)?),
    },
    Entry {
        name: "vcard",
        enabled_by_default: true,
        build: |_, options| arc(super::vcard::VcardModule::new(options)?),
    },
    Entry {
        name: "last",
        enabled_by_default: true,
        build: |_, options| arc(super::last::LastModule::new(options)?),
    },
    Entry {
        name: "pep",
        enabled_by_default: true,
        build: |_, options| arc(super::pep::Pep::new(options)?),
    },
    Entry {
        name: "presence",
        enabled_by_default: true,
        build: |_, options| arc(super::presence::PresenceModule::new(options)?),
    },
    Entry {
        name: "offline",
        enabled_by_default: true,
        build: |_, options| arc(super::offline::OfflineModule::new(options)?),
    },
    Entry {
        name: "mam",
        enabled_by_default: true,
        build: |_, options| arc(super::mam::Mam::new(options)?),
    },
    Entry {
        name: "carbons",
        enabled_by_default: true,
        build: |_, options| arc(super::carbons::Carbons::new(options)?),
    },
    Entry {
        name: "session",
        enabled_by_default: true,
        build: |_, options| arc(super::session::SessionModule::new(options)?),
    },
    Entry {
        name: "ping",
        enabled_by_default: true,
        build: |_, options| arc(super::ping::Ping::new(options)?),
    },
    Entry {
        name: "version",
        enabled_by_default: true,
        build: |_, options| arc(super::version::Version::new(options)?),
    },
    Entry {
        name: "register",
        enabled_by_default: true,
        build: |config, options| arc(super::register::Register::new(config, options)?),
    },
    Entry {
        name: "pubsub",
        enabled_by_default: true,
        build: |config, options| arc(super::pubsub::PubSubModule::new(config, options)?),
    },
    Entry {
        name: "private",
        enabled_by_default: true,
        build: |_, options| arc(super::private::PrivateModule::new(options)?),
    },
    Entry {
        name: "muc",
        enabled_by_default: true,
        build: |config, options| arc(super::muc::Muc::new(config, options)?),
    },
    Entry {
        name: "sm",
        enabled_by_default: true,
        build: |_, options| arc(super::sm::SmModule::new(options)?),
    },
    // Last: it holds back what every other deliver hook let through.
    Entry {
        name: "csi",
        enabled_by_default: true,
        build: |_, options| arc(super::csi::CsiModule::new(options)?),
    },
];

/// A module's `[modules.<name>]` section of the default config file, read
/// into its settings struct (tests compare it with the struct's defaults).
#[cfg(test)]
pub(crate) fn documented<T: DeserializeOwned>(module: &str) -> T {
    let config = Config::parse(starling_core::config::DEFAULT_CONFIG_TOML).unwrap();
    let mut table = config
        .modules
        .get(module)
        .cloned()
        .unwrap_or_else(|| panic!("[modules.{module}] is not in the default config"));
    table.remove("enabled");
    toml::Value::Table(table).try_into().unwrap()
}

/// The names `[modules.<name>]` accepts.
pub fn known_modules() -> Vec<&'static str> {
    CATALOGUE.iter().map(|entry| entry.name).collect()
}

/// Builds the enabled modules in catalogue order; rejects unknown sections
/// and keys.
pub(super) fn build(config: &Config) -> Result<Vec<Arc<dyn Module>>, ModuleConfigError> {
    if let Some(name) = config
        .modules
        .keys()
        .find(|name| !CATALOGUE.iter().any(|entry| entry.name == name.as_str()))
    {
        return Err(ModuleConfigError::Unknown {
            name: name.clone(),
            known: known_modules().join(", "),
        });
    }
    let mut modules = Vec::new();
    for entry in CATALOGUE {
        let mut table = config.modules.get(entry.name).cloned().unwrap_or_default();
        let enabled = match table.remove("enabled") {
            None => entry.enabled_by_default,
            Some(toml::Value::Boolean(enabled)) => enabled,
            Some(other) => {
                return Err(ModuleConfigError::Invalid {
                    module: entry.name,
                    message: format!("`enabled` must be true or false, not {other}"),
                });
            }
        };
        let options = Options {
            module: entry.name,
            table,
        };
        // A disabled module's keys are still checked, so a typo is found
        // before the module is turned on.
        let module = (entry.build)(config, options)?;
        if enabled {
            modules.push(module);
        }
    }
    Ok(modules)
}
