//! The compose file's top level: `version`, `name`, and the definitions services refer to
//! (`volumes`, `networks`, `secrets`, `configs`).

use std::collections::BTreeMap;

use render::locate::At;
use serde_yaml::Value;

use crate::reader::{Key, Reader, describe};

/// What the top level defines, for the services to use.
#[derive(Debug, Default)]
pub(crate) struct Project {
    /// `name:`, interpolated.
    pub(crate) name: Option<String>,
    /// Named volumes (their settings are reported where they are written).
    pub(crate) volumes: BTreeMap<String, At>,
    pub(crate) networks: BTreeMap<String, At>,
    pub(crate) secrets: BTreeMap<String, FileDef>,
    pub(crate) configs: BTreeMap<String, FileDef>,
}

/// Where a secret's or config's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileDef {
    /// `file:`, relative to the compose file's folder (or absolute).
    File { path: String, at: At },
    /// `environment:` names a variable.
    Env { var: String, at: At },
    /// `content:` (configs).
    Content { text: String },
    /// `external:`, or what could not be read (already reported).
    Unusable { why: String },
}

const TOP_KEYS: &[&str] =
    &["version", "name", "services", "networks", "volumes", "secrets", "configs", "include"];

/// Reads the top level of `value` (a map, checked by the caller); returns the project and
/// the `services:` map with its key.
pub(crate) fn read<'v>(r: &mut Reader, value: &'v Value) -> (Project, Option<(Key, &'v Value)>) {
    let mut project = Project::default();
    let mut services = None;
    for (key, value) in r.map(value, None) {
        match key.name.as_str() {
            "version" => version(r, &key, value),
            "name" => project.name = r.key_string(&key, value),
            "services" => services = Some((key, value)),
            "networks" => networks(r, &key, value, &mut project),
            "volumes" => {
                for (vol, def) in r.map(value, Some(&key)) {
                    definition(r, &vol, def, "volume");
                    project.volumes.insert(vol.name, vol.at);
                }
            }
            "secrets" | "configs" => {
                let secrets = key.name == "secrets";
                for (item, def) in r.map(value, Some(&key)) {
                    let read = file_def(r, &item, def, secrets);
                    if secrets {
                        project.secrets.insert(item.name, read);
                    } else {
                        project.configs.insert(item.name, read);
                    }
                }
            }
            "include" => r.left_out(
                key.at,
                &key.path,
                "the included files are not read: run `docker compose config > compose.merged.yml` and import \
                 that file (Compose writes every file it merges as one)",
            ),
            name if name.starts_with("x-") => {}
            name => {
                let list = TOP_KEYS.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                r.left_out(key.at, &key.path, format!("`{name}` is not a top-level key of Compose ({list}, `x-...`)"));
            }
        }
    }
    (project, services)
}

/// `version:` is informational in the Compose Specification; files of versions 2 and 3 are
/// read, version 1 (no `services:`) is not.
fn version(r: &mut Reader, key: &Key, value: &Value) {
    let Some(text) = r.key_string(key, value) else { return };
    let major = text.trim().split('.').next().unwrap_or_default().to_string();
    if major == "1" {
        let at = r.value_at(key);
        r.error(
            at,
            &key.path,
            format!(
                "files of version {text} are not read; expected version 2 or 3, or no version (the Compose \
                 Specification): put the services under `services:`"
            ),
        );
    } else if major != "2" && major != "3" {
        let at = r.value_at(key);
        r.note(
            at,
            &key.path,
            format!("version {text} is not 2 or 3: the file is read as the Compose Specification"),
        );
    }
}

/// A network definition. Every service joins the fleet's one network: whether services
/// were kept apart on several networks is told across services (`across`); a network's
/// own settings are reported here.
fn networks(r: &mut Reader, key: &Key, value: &Value, project: &mut Project) {
    for (net, def) in r.map(value, Some(key)) {
        project.networks.insert(net.name.clone(), net.at);
        let settings = matches!(def, Value::Mapping(m) if m.keys().any(|k| k.as_str().is_none_or(|k| !k.starts_with("x-"))));
        if settings {
            r.left_out(
                net.at,
                &net.path,
                "the fleet's network is drover's own (fleet.yaml's `network:`, the fleet's name by default, \
                 made with the engine's defaults): the driver, name and options written here are not used",
            );
        }
    }
}

/// A named volume's definition: its settings (`external`, a driver…) are reported.
fn definition(r: &mut Reader, key: &Key, def: &Value, what: &str) {
    for (setting, value) in r.map(def, Some(key)) {
        match setting.name.as_str() {
            "external" => {
                let external = match value {
                    Value::Mapping(_) => true,
                    other => r.boolean(&setting, other).unwrap_or(false),
                };
                if external {
                    r.left_out(
                        setting.at,
                        &setting.path,
                        format!(
                            "drover makes a {what} of its own for each slot, empty at first: the data of the external \
                             {what} is not used (copy it into the slot's volume after `drover up`)"
                        ),
                    );
                }
            }
            name if name.starts_with("x-") => {}
            _ => r.left_out(
                setting.at,
                &setting.path,
                format!(
                    "drover makes each slot's {what} with the engine's defaults: this setting is not used"
                ),
            ),
        }
    }
}

/// A secret's or config's definition.
fn file_def(r: &mut Reader, key: &Key, def: &Value, secret: bool) -> FileDef {
    let mut found = None;
    for (setting, value) in r.map(def, Some(key)) {
        let source = match setting.name.as_str() {
            "file" => {
                r.key_string(&setting, value).map(|path| FileDef::File { path, at: r.value_at(&setting) })
            }
            "environment" => {
                r.key_string(&setting, value).map(|var| FileDef::Env { var, at: r.value_at(&setting) })
            }
            "content" if !secret => r.key_string(&setting, value).map(|text| FileDef::Content { text }),
            "external" => {
                let external = !matches!(value, Value::Bool(false));
                if external {
                    r.left_out(
                        setting.at,
                        &setting.path,
                        "an external secret or config lives in Docker Swarm, which drover does not read: put its \
                         contents in a file and name it with `file:`",
                    );
                }
                Some(FileDef::Unusable { why: "it is external".into() })
            }
            "name" | "labels" | "driver" | "driver_opts" | "template_driver" => {
                r.note(setting.at, &setting.path, "only the contents are used; this setting is not");
                None
            }
            name if name.starts_with("x-") => None,
            other => {
                let expected =
                    if secret { "`file` or `environment`" } else { "`file`, `content` or `environment`" };
                r.left_out(setting.at, &setting.path, format!("`{other}` is not read; expected {expected}"));
                None
            }
        };
        if source.is_some() {
            found = source;
        }
    }
    found.unwrap_or_else(|| {
        if !matches!(def, Value::Mapping(_)) {
            let at = key.at;
            r.error(
                at,
                &key.path,
                format!("expected a map such as {{file: ./secret.txt}}, got {}", describe(def)),
            );
        }
        FileDef::Unusable { why: "it has no `file` or `environment`".into() }
    })
}
