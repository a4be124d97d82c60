//! `drover import compose`: a Compose file (versions 2 and 3, or the Compose Specification)
//! translated into what drover runs the same app from: `fleet.yaml`, and per service a role,
//! a state whose daemon runs the command the service's container ran, and an image
//! definition. Pure: files come in through [`Sources`], files and a report go out
//! ([`Import`]); writing them is the caller's.
//!
//! - `sources`: [`Sources`], what the translation may read; [`Memory`] holds it in memory
//! - `interpolate`: `${VAR}` interpolation, the `.env` / `env_file` format
//! - `reader`: the compose file's YAML read with positions, errors and findings
//! - `project`: the top level (`version`, `name`, volumes, networks, secrets, configs)
//! - `service`, `ports`, `mounts`: one service, key by key → `model::Service`
//! - `image`, `dockerfile`: image configurations and references; a service's Dockerfile
//! - `daemon`: the command, user, folder, environment and health check of the daemon
//! - `across`: role and image names, dependencies, aliases, host ports, shared volumes
//! - `write`: the files; `yaml`, `units`: how they spell values
//! - `report`: [`Finding`]s, what was left out and what is worth a note

mod across;
mod daemon;
mod dockerfile;
mod image;
mod interpolate;
mod model;
mod mounts;
mod ports;
mod project;
mod reader;
mod report;
mod service;
mod sources;
mod units;
mod write;
mod yaml;

use std::collections::BTreeMap;

use render::fleet::scalar::fleet_name;
use render::{Diagnostic, Files, Minion, Repo};
use serde_yaml::Value;

pub use image::{HealthConfig, ImageConfig};
pub use report::{Finding, Level};
pub use sources::{Kind, Memory, ReadError, Sources, inside, relative};

/// The version of every image in the fleet file drover writes: `<image>:1.0`.
pub const VERSION: &str = "1.0";

/// The names Compose looks for when no file is named, in the order drover does.
pub const DEFAULT_FILES: [&str; 4] =
    ["docker-compose.yml", "compose.yaml", "compose.yml", "docker-compose.yaml"];

/// What the caller says besides the files.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The compose file's name, relative to its folder (`docker-compose.yml`): messages name
    /// it, and every path of the project is relative to that folder.
    pub file: String,
    /// `--fleet`: the fleet's name.
    pub fleet: Option<String>,
    /// The name of the compose file's folder, for the fleet's name when neither `--fleet`,
    /// the file's `name:` nor `COMPOSE_PROJECT_NAME` gives one.
    pub folder: String,
    /// The folder's absolute path, if known: bind mounts that name it are of the project.
    pub project_dir: Option<String>,
}

/// What the translation made.
#[derive(Debug, Clone, Default)]
pub struct Import {
    pub fleet: String,
    /// Files to write: path relative to the config repository → contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Folders of the project to copy into the repository before the files are written (a
    /// build context, a bind-mounted folder).
    pub copies: Vec<Copy>,
    /// Everything left out or worth a note, the compose file's first.
    pub findings: Vec<Finding>,
    /// The images to build: `(folder, tag)`.
    pub images: Vec<(String, String)>,
}

impl Import {
    /// Whether anything was left out (exit status 1).
    pub fn left_out(&self) -> bool {
        self.findings.iter().any(Finding::left_out)
    }
}

/// A folder of the project copied into the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Relative to the compose file's folder (`web`, or `` for the folder itself).
    pub from: String,
    /// Relative to the repository (`images/web`).
    pub to: String,
}

/// Translates the compose file `text`. `Err`: Compose would refuse the file (or drover
/// cannot use it at all), and nothing is to be written; every problem is named with its
/// file, line and column.
pub fn import(text: &str, options: &Options, sources: &dyn Sources) -> Result<Import, Vec<Diagnostic>> {
    let file = options.file.as_str();
    let dotenv = read_dotenv(sources)?;
    let vars = |name: &str| sources.var(name).or_else(|| dotenv.get(name).cloned());
    let located = render::locate::Text::plain(file, text);
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| vec![located.yaml_error(&e)])?;
    if let Err(e) = value.apply_merge() {
        let (line, col) = located.find_text(0, located.len(), "<<").unwrap_or((0, 0));
        return Err(vec![located.at(line, col).diag(format!("{e}; expected `<<: *name` to merge a map"))]);
    }
    let mut r = reader::Reader::new(file, text, &vars);
    if !matches!(value, Value::Mapping(_)) {
        return Err(vec![Diagnostic::new(file, 1, 1, "expected a map with `services:`, got no map")]);
    }
    let (project, services_value) = project::read(&mut r, &value);
    let Some((services_key, services_value)) = services_value else {
        let v1 = value
            .as_mapping()
            .is_some_and(|m| m.values().any(|s| s.get("image").is_some() || s.get("build").is_some()));
        let message = if v1 {
            "services at the top level are a version 1 file, which is not read: put them under `services:` \
             (version 2 and later)"
        } else {
            "no `services:`; expected the services of the app"
        };
        r.errors.push(Diagnostic::new(file, 1, 1, message));
        return Err(r.errors);
    };
    let fleet = fleet(&mut r, options, &project, &vars)?;
    let mut ctx = service::Ctx {
        fleet: fleet.clone(),
        project: &project,
        sources,
        project_dir: options.project_dir.as_deref(),
        vars: &vars,
        files: BTreeMap::new(),
    };
    let mut services = Vec::new();
    for (key, body) in r.map(services_value, Some(&services_key)) {
        if key.name.starts_with("x-") {
            continue;
        }
        services.push(service::read(&mut r, &key, body, &mut ctx));
    }
    if services.is_empty() && r.errors.is_empty() {
        r.error(services_key.at, "services", "no services; expected the services of the app");
    }
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    for s in &mut services {
        daemon::resolve(&mut r, s, sources);
    }
    across::check(&mut r, &mut services, &project, &fleet);
    if !r.errors.is_empty() {
        r.errors.sort();
        return Err(r.errors);
    }
    overrides(&mut r, file, sources);

    let mut import = Import { fleet: fleet.clone(), ..Import::default() };
    import
        .files
        .insert(render::FLEET_FILE.to_string(), write::fleet_file(file, &fleet, &services).into_bytes());
    for s in &services {
        import.files.insert(render::role_path(&s.role), write::role_file(file, &fleet, s).into_bytes());
        import
            .files
            .insert(format!("states/{fleet}/{}.yaml", s.role), write::state_file(file, s).into_bytes());
        let (dockerfile, copies, notes) = write::image(file, s);
        import.files.insert(format!("images/{}/Dockerfile", s.image), dockerfile.into_bytes());
        import.copies.extend(copies);
        for (dockerfile, line, note) in notes {
            r.finding_in(&dockerfile, line, Level::Note, "", note);
        }
        import.images.push((format!("images/{}", s.image), format!("{}:{VERSION}", s.image)));
    }
    for (path, contents) in ctx.files {
        import.files.insert(format!("states/{fleet}/{path}"), contents);
    }
    self_check(&import, &services, &fleet)?;
    r.findings.sort_by(|a, b| {
        (a.file != file, &a.file, a.line, a.col).cmp(&(b.file != file, &b.file, b.line, b.col))
    });
    import.findings = r.findings;
    Ok(import)
}

/// `.env` beside the compose file: variables for interpolation (the environment wins).
fn read_dotenv(sources: &dyn Sources) -> Result<BTreeMap<String, String>, Vec<Diagnostic>> {
    let text = match sources.read(".env") {
        Ok(bytes) => {
            String::from_utf8(bytes).map_err(|_| vec![Diagnostic::whole_file(".env", "not UTF-8 text")])?
        }
        Err(ReadError::Missing) => return Ok(BTreeMap::new()),
        Err(ReadError::Other(why)) => {
            return Err(vec![Diagnostic::whole_file(".env", format!("cannot read it: {why}"))]);
        }
    };
    let lookup = |name: &str| sources.var(name);
    let vars = interpolate::env_file(&text, false, &lookup)
        .map_err(|(line, m)| vec![Diagnostic::new(".env", line, 1, m)])?;
    Ok(vars.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
}

/// The fleet's name: `--fleet`, else the file's `name:`, `COMPOSE_PROJECT_NAME`, the folder's
/// name, made a fleet name.
fn fleet(
    r: &mut reader::Reader,
    options: &Options,
    project: &project::Project,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<Diagnostic>> {
    if let Some(name) = &options.fleet {
        return fleet_name(name)
            .map(|()| name.clone())
            .map_err(|e| vec![Diagnostic::whole_file("--fleet", e)]);
    }
    let (given, from) = match (&project.name, vars("COMPOSE_PROJECT_NAME")) {
        (Some(name), _) => (name.clone(), "the compose file's `name:`"),
        (None, Some(name)) => (name, "COMPOSE_PROJECT_NAME"),
        (None, None) => (options.folder.clone(), "the name of its folder"),
    };
    let mut made: String = given
        .to_ascii_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' => Some(c),
            '-' | '_' | '.' | ' ' => Some('-'),
            _ => None,
        })
        .collect();
    made = made.trim_matches('-').chars().take(render::fleet::scalar::MAX_FLEET_NAME).collect();
    let made = made.trim_end_matches('-').to_string();
    let made = if made.is_empty() { "app".to_string() } else { made };
    let file = r.file;
    r.finding_in(
        file,
        0,
        Level::Note,
        "",
        format!("the fleet is named `{made}`, after {from}; --fleet names it otherwise"),
    );
    Ok(made)
}

/// Compose reads `docker-compose.override.yml` beside a default-named file; drover does not.
fn overrides(r: &mut reader::Reader, file: &str, sources: &dyn Sources) {
    if !DEFAULT_FILES.contains(&file) {
        return;
    }
    for name in [
        "compose.override.yaml",
        "compose.override.yml",
        "docker-compose.override.yaml",
        "docker-compose.override.yml",
    ] {
        if sources.kind(name) == Some(Kind::File) {
            r.finding_in(
                name,
                0,
                Level::LeftOut,
                "",
                format!(
                    "Compose merges {name} into {file}, and drover import compose does not: run `docker compose \
                     config > compose.merged.yml` and import that file"
                ),
            );
        }
    }
}

/// Every file written is one drover accepts: the repository loads, and each role plans for
/// its first slot. A refusal is a bug of this translation, said as such.
fn self_check(import: &Import, services: &[model::Service], fleet: &str) -> Result<(), Vec<Diagnostic>> {
    let files: Files = import
        .files
        .iter()
        .filter(|(path, _)| !path.starts_with("images/"))
        .filter_map(|(path, bytes)| Some((path.clone(), String::from_utf8(bytes.clone()).ok()?)))
        .collect();
    let bug = |diags: Vec<Diagnostic>| {
        diags
            .into_iter()
            .map(|d| Diagnostic {
                message: format!(
                    "drover refuses a file it made (a bug of drover import compose): {}",
                    d.message
                ),
                ..d
            })
            .collect::<Vec<_>>()
    };
    let repo = Repo::load(&files).map_err(bug)?;
    for s in services {
        let minion = Minion { id: format!("{fleet}-{}-1", s.role), ..Minion::default() };
        repo.plan(&files, &minion, std::slice::from_ref(&s.role)).map_err(bug)?;
    }
    Ok(())
}
