//! A service as read from the compose file, in drover's terms: what the daemon runs, what
//! the role's containers get, what the image is built from. Reading fills it
//! (`service`, `ports`, `mounts`); checks across services adjust it (`across`); `write`
//! turns it into files.

use std::collections::BTreeMap;

use render::locate::At;
use render::{PortSpec, Resources};

use crate::dockerfile::Dockerfile;

/// A service of the compose file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Service {
    /// The compose service's name.
    pub(crate) name: String,
    /// Where its key is, and its path (`services.web`).
    pub(crate) at: At,
    pub(crate) path: String,
    /// drover's role: the service's name when it can be a role name.
    pub(crate) role: String,
    /// drover's image (`images/<image>/`, tagged `<image>:<version>`).
    pub(crate) image: String,
    pub(crate) source: Source,
    /// Compose's `entrypoint:` (`Some(vec![])`: none) and `command:`.
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) command: Option<Vec<String>>,
    /// `env_file:` then `environment:`, in order (a later name wins).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) user: Option<(String, At)>,
    pub(crate) working_dir: Option<String>,
    pub(crate) health: Option<HealthSpec>,
    pub(crate) replicas: u32,
    pub(crate) ports: Vec<(PortSpec, At)>,
    pub(crate) volumes: Vec<Volume>,
    pub(crate) files: Vec<ManagedFile>,
    /// Folders made for bind mounts whose host folder does not exist.
    pub(crate) dirs: Vec<String>,
    /// Bind-mounted folders (or binary files) of the project copied into the image:
    /// (path in the project, path in the container).
    pub(crate) copies: Vec<(String, String)>,
    pub(crate) aliases: Vec<(String, At)>,
    /// Services this one needs started first (`depends_on`, `links`).
    pub(crate) requires: Vec<(String, At)>,
    /// Aliases `links:` gives other services: (service, alias, where).
    pub(crate) link_aliases: Vec<(String, String, At)>,
    /// Networks it is on (`default` when it names none).
    pub(crate) networks: Vec<String>,
    pub(crate) resources: Resources,
    pub(crate) update: Update,
    /// `always`, `on-failure` or `never`; `None`: drover's default.
    pub(crate) restart: Option<&'static str>,
    pub(crate) stop_signal: Option<String>,
    pub(crate) stop_timeout_ms: Option<u64>,
    /// The daemon the state runs, once the image's configuration is known (`daemon`).
    pub(crate) daemon: Daemon,
    /// The service's Dockerfile, read, and the stage its image is (for `build:`).
    pub(crate) dockerfile: Option<(Dockerfile, usize)>,
}

/// The daemon of a service's state: the command its container ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Daemon {
    /// `None`: not known (reported); the state runs a command that says so and fails.
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) user: Option<String>,
    pub(crate) cwd: Option<String>,
    /// The state makes `cwd` (Compose's `working_dir:`, which Docker makes).
    pub(crate) make_cwd: bool,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) health: Option<Check>,
    pub(crate) stop_signal: Option<String>,
    pub(crate) stop_timeout_ms: Option<u64>,
    pub(crate) restart: Option<&'static str>,
}

/// A daemon's health check, as drover's state writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) argv: Vec<String>,
    pub(crate) interval_ms: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) retries: u32,
}

/// What the service's image is made from.
#[derive(Debug, Clone, Default)]
pub(crate) enum Source {
    /// `image:`: a reference (`redis:7.2`), where it is written.
    Image { reference: String, at: At },
    /// `build:`: a Dockerfile and its context.
    Build(Build),
    /// Nothing usable (reported).
    #[default]
    None,
}

#[derive(Debug, Clone)]
pub(crate) struct Build {
    /// The context folder, relative to the compose file's folder (`web`, `` for `.`).
    pub(crate) context: String,
    /// The Dockerfile's path as messages name it (`web/Dockerfile`), and its text.
    pub(crate) dockerfile_path: String,
    pub(crate) dockerfile: String,
    /// `build.args`.
    pub(crate) args: BTreeMap<String, String>,
    pub(crate) target: Option<String>,
    pub(crate) at: At,
}

/// A volume of the role: each slot gets its own at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Volume {
    pub(crate) target: String,
    /// The named volume of the compose file, if it is one.
    pub(crate) named: Option<String>,
    pub(crate) at: At,
}

/// A file the state writes (`file.managed`): a bind-mounted file, a secret, a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManagedFile {
    /// Absolute path in the container.
    pub(crate) target: String,
    /// Path relative to `states/`: `<fleet>/files/nginx/nginx.conf`.
    pub(crate) source: String,
    pub(crate) mode: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
}

/// A health check as Compose writes it; `None` fields fall back on the image's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthSpec {
    pub(crate) disabled: bool,
    /// `["CMD", argv…]`, `["CMD-SHELL", line]` or `["NONE"]`.
    pub(crate) test: Option<Vec<String>>,
    pub(crate) interval_ms: Option<u64>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) retries: Option<u32>,
    pub(crate) start_period_ms: Option<u64>,
    pub(crate) at: At,
}

/// fleet.yaml's `update:` from `deploy.update_config`, each as written (`None`: default).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Update {
    pub(crate) batch: Option<String>,
    pub(crate) order: Option<(String, At)>,
    pub(crate) min_healthy: Option<u64>,
    pub(crate) max_failure_ratio: Option<f64>,
    pub(crate) on_failure: Option<&'static str>,
}

impl Update {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Update::default()
    }
}
