//! What a service mounts: `volumes:` (named and anonymous volumes → the role's volumes; bind
//! mounts of the project's files → files the state writes, of its folders → copies in the
//! image), `secrets:` and `configs:` (→ files the state writes).

use render::fleet::scalar::volume_path;
use render::locate::At;
use serde_yaml::Value;

use crate::model::{ManagedFile, Service, Volume};
use crate::project::FileDef;
use crate::reader::{Key, Reader};
use crate::service::Ctx;
use crate::sources::{Kind, ReadError, inside, relative};

/// One mount as written, short or long syntax.
enum Mount {
    Volume { name: Option<String>, target: String, read_only: bool },
    Bind { source: String, target: String },
    Tmpfs { target: String },
}

/// `volumes:` of a service.
pub(crate) fn volumes(r: &mut Reader, key: &Key, value: &Value, ctx: &mut Ctx, service: &mut Service) {
    for (at, item) in r.list(key, value).unwrap_or_default() {
        let mount = match item {
            Value::Mapping(_) => long(r, at, &key.path, item),
            other => r.string(at, &key.path, other).and_then(|text| short(r, at, &key.path, &text)),
        };
        let Some(mount) = mount else { continue };
        match mount {
            Mount::Volume { name, target, read_only } => {
                if let Some(name) = &name
                    && !ctx.project.volumes.contains_key(name)
                {
                    r.error(
                        at,
                        &key.path,
                        format!(
                            "the volume `{name}` is not defined; expected it under the top-level `volumes:`"
                        ),
                    );
                    continue;
                }
                if let Err(e) = volume_path(&target) {
                    r.left_out(at, &key.path, e);
                    continue;
                }
                if read_only {
                    r.note(at, &key.path, "drover mounts a slot's volume read-write: `ro` is not kept");
                }
                if service.volumes.iter().any(|v| v.target == target) {
                    r.error(at, &key.path, format!("`{target}` is mounted twice; expected each path once"));
                    continue;
                }
                service.volumes.push(Volume { target, named: name, at });
            }
            Mount::Bind { source, target } => bind(r, at, &key.path, &source, &target, ctx, service),
            Mount::Tmpfs { target } => r.left_out(
                at,
                &key.path,
                format!("drover mounts no tmpfs: {target} is an ordinary folder of the container"),
            ),
        }
    }
}

/// `SOURCE:TARGET[:MODE]` or `TARGET`.
fn short(r: &mut Reader, at: At, path: &str, text: &str) -> Option<Mount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, mode] => (Some(*source), *target, *mode),
        _ => {
            r.error(at, path, format!("`{text}` is not SOURCE:TARGET[:MODE]"));
            return None;
        }
    };
    let options: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    for option in &options {
        match *option {
            "ro" | "rw" | "z" | "Z" | "cached" | "delegated" | "consistent" => {}
            "nocopy" => r.note(
                at,
                path,
                "`nocopy` does not apply: drover's volume starts with what the image has there",
            ),
            other => r.note(at, path, format!("the mount option `{other}` is not kept")),
        }
    }
    let read_only = options.contains(&"ro");
    let target = plain_target(target);
    Some(match source {
        None => Mount::Volume { name: None, target, read_only },
        Some(s) if s.starts_with(['.', '/', '~']) => Mount::Bind { source: s.to_string(), target },
        Some(name) => Mount::Volume { name: Some(name.to_string()), target, read_only },
    })
}

/// `{type: volume|bind|tmpfs, source, target, read_only, …}`.
fn long(r: &mut Reader, at: At, path: &str, item: &Value) -> Option<Mount> {
    let (mut kind, mut source, mut target, mut read_only) = (None, None, None, false);
    for (key, value) in r.item_map(at, path, item) {
        match key.name.as_str() {
            "type" => kind = r.key_string(&key, value),
            "source" => source = r.key_string(&key, value),
            "target" => target = r.key_string(&key, value),
            "read_only" => read_only = r.boolean(&key, value).unwrap_or(false),
            "consistency" => {}
            "bind" => {
                for (option, _) in r.map(value, Some(&key)) {
                    if option.name != "create_host_path" {
                        r.note(option.at, &option.path, "this bind option is not kept");
                    }
                }
            }
            "volume" | "tmpfs" | "image" => {
                if matches!(value, Value::Mapping(m) if !m.is_empty()) {
                    r.left_out(
                        key.at,
                        &key.path,
                        "drover mounts a slot's volume as it is: these options are not used",
                    );
                }
            }
            other => r.left_out(
                key.at,
                &key.path,
                format!("`{other}` of a mount is not a Compose key; it is not used"),
            ),
        }
    }
    let Some(target) = target.map(|t| plain_target(&t)) else {
        r.error(at, path, "a mount in the long syntax needs `target:`, the path in the container");
        return None;
    };
    let kind = kind.unwrap_or_else(|| if source.is_some() { "volume".into() } else { "tmpfs".into() });
    match kind.as_str() {
        "volume" => Some(Mount::Volume { name: source.filter(|s| !s.is_empty()), target, read_only }),
        "bind" => match source {
            Some(source) => Some(Mount::Bind { source, target }),
            None => {
                r.error(at, path, "a bind mount needs `source:`, the path on the host");
                None
            }
        },
        "tmpfs" => Some(Mount::Tmpfs { target }),
        other => {
            r.left_out(
                at,
                path,
                format!("drover mounts no `{other}`: {target} is an ordinary folder of the container"),
            );
            None
        }
    }
}

/// A bind mount: a file of the project becomes a file the state writes, a folder a copy
/// in the image, a path that does not exist a folder (Compose makes one); a path outside
/// the project is left out.
fn bind(
    r: &mut Reader,
    at: At,
    path: &str,
    source: &str,
    target: &str,
    ctx: &mut Ctx,
    service: &mut Service,
) {
    if !target.starts_with('/') {
        r.error(at, path, format!("the mount target `{target}` is not an absolute path"));
        return;
    }
    let relative_source = relative(source).or_else(|| {
        let dir = ctx.project_dir?;
        source
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/').or((rest.is_empty()).then_some("")))
            .and_then(relative)
    });
    let Some(rel) = relative_source.filter(|rel| inside(rel)) else {
        let message = if source.ends_with("docker.sock") {
            format!(
                "drover gives no container the Docker socket ({source}): the fleet is the master's to change \
                 (drover up, scale, upgrade), not a container's"
            )
        } else {
            format!(
                "{source} is outside the project: drover mounts no host path into a container; put what the \
                 service needs in the image, in a state (file.managed), or in a volume"
            )
        };
        r.left_out(at, path, message);
        return;
    };
    let shown = if rel.is_empty() { ".".to_string() } else { rel.clone() };
    match ctx.sources.kind(&rel) {
        Some(Kind::File) => match ctx.sources.read(&rel).map(String::from_utf8) {
            Ok(Ok(text)) => {
                let source = ctx.file(&format!("files/{rel}"), text.into_bytes());
                service.files.push(ManagedFile {
                    target: target.to_string(),
                    source,
                    mode: None,
                    user: None,
                    group: None,
                });
                r.note(
                    at,
                    path,
                    format!(
                        "{shown} is written to {target} by the state from states/{}: a change reaches the \
                         containers with `drover roles apply`, and restarts the daemon",
                        ctx.file_path(&format!("files/{rel}"))
                    ),
                );
            }
            Ok(Err(_)) => {
                service.copies.push((rel.clone(), target.to_string()));
                r.note(
                    at,
                    path,
                    format!("{shown} is not text: it is copied into the image at {target} when it is built"),
                );
            }
            Err(e) => r.error(at, path, format!("cannot read {shown}: {}", read_error(&e))),
        },
        Some(Kind::Dir) => {
            service.copies.push((rel.clone(), target.to_string()));
            r.note(
                at,
                path,
                format!(
                    "the folder {shown} is copied into the image at {target} when it is built: a change needs a new \
                     image version (a bind mount for live reloading has no drover equivalent)"
                ),
            );
        }
        None => {
            service.dirs.push(target.to_string());
            r.note(
                at,
                path,
                format!(
                    "{shown} does not exist: the state makes an empty folder at {target}, as Compose would"
                ),
            );
        }
    }
}

/// A path in the container as drover writes it: `/data/` and `/data//x` are `/data` and
/// `/data/x`.
fn plain_target(target: &str) -> String {
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if target.starts_with('/') { format!("/{}", parts.join("/")) } else { parts.join("/") }
}

pub(crate) fn read_error(e: &ReadError) -> String {
    match e {
        ReadError::Missing => "no such file".into(),
        ReadError::Other(why) => why.clone(),
    }
}

/// `secrets:` or `configs:` of a service: each a file the state writes.
pub(crate) fn files(r: &mut Reader, key: &Key, value: &Value, ctx: &mut Ctx, service: &mut Service) {
    let secrets = key.name == "secrets";
    let what = if secrets { "secret" } else { "config" };
    for (at, item) in r.list(key, value).unwrap_or_default() {
        let (mut source, mut target, mut mode, mut user, mut group) = (None, None, None, None, None);
        match item {
            Value::Mapping(_) => {
                for (k, v) in r.item_map(at, &key.path, item) {
                    match k.name.as_str() {
                        "source" => source = r.key_string(&k, v),
                        "target" => target = r.key_string(&k, v),
                        "uid" => user = r.key_string(&k, v),
                        "gid" => group = r.key_string(&k, v),
                        "mode" => mode = file_mode(r, &k, v),
                        other => {
                            r.left_out(k.at, &k.path, format!("`{other}` is not a Compose key of a {what}"))
                        }
                    }
                }
            }
            other => source = r.string(at, &key.path, other),
        }
        let Some(name) = source else {
            r.error(at, &key.path, format!("a {what} needs `source:`, its name"));
            continue;
        };
        let defs = if secrets { &ctx.project.secrets } else { &ctx.project.configs };
        let Some(def) = defs.get(&name).cloned() else {
            r.error(
                at,
                &key.path,
                format!(
                    "the {what} `{name}` is not defined; expected it under the top-level `{}:`",
                    key.name
                ),
            );
            continue;
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) if secrets => format!("/run/secrets/{t}"),
            Some(t) => format!("/{t}"),
            None if secrets => format!("/run/secrets/{name}"),
            None => format!("/{name}"),
        };
        let folder = if secrets { "secrets" } else { "configs" };
        let contents = match &def {
            FileDef::File { path, at: def_at } => {
                let rel = relative(path);
                let read = ctx.sources.read(rel.as_deref().unwrap_or(path));
                match read {
                    Ok(bytes) => {
                        let in_repo = match rel.filter(|p| inside(p)) {
                            Some(p) => format!("files/{p}"),
                            None => format!("files/{folder}/{name}"),
                        };
                        Some((in_repo, bytes))
                    }
                    Err(e) => {
                        let def_at = *def_at;
                        r.error(
                            def_at,
                            &format!("{}.{name}.file", key.name),
                            format!("cannot read {path}: {}", read_error(&e)),
                        );
                        None
                    }
                }
            }
            FileDef::Env { var, at: def_at } => match (ctx.vars)(var) {
                Some(value) => Some((format!("files/{folder}/{name}"), value.into_bytes())),
                None => {
                    let def_at = *def_at;
                    r.left_out(
                        def_at,
                        &format!("{}.{name}.environment", key.name),
                        format!("the variable {var} is not set: the {what} `{name}` has no contents and is not written"),
                    );
                    None
                }
            },
            FileDef::Content { text } => Some((format!("files/{folder}/{name}"), text.clone().into_bytes())),
            FileDef::Unusable { why } => {
                r.left_out(at, &key.path, format!("the {what} `{name}` is not written to {target}: {why}"));
                None
            }
        };
        let Some((in_repo, bytes)) = contents else { continue };
        let Ok(text) = String::from_utf8(bytes) else {
            r.left_out(
                at,
                &key.path,
                format!("the {what} `{name}` is not text, which states cannot hold: it is not written"),
            );
            continue;
        };
        let source = ctx.file(&in_repo, text.into_bytes());
        let mode = mode.or_else(|| Some("0444".to_string()));
        if secrets {
            r.note(
                at,
                &key.path,
                format!(
                    "the secret `{name}` is now a file of the config repository (states/{source}), written to \
                     {target}: keep the repository private, or move the value to the role's pillar"
                ),
            );
        }
        service.files.push(ManagedFile { target, source, mode, user, group });
    }
}

/// A file mode: octal digits as Compose writes them (`0440`, `440`), or YAML's `0o440`.
fn file_mode(r: &mut Reader, key: &Key, value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(n) => {
            let digits = n.to_string();
            if digits.chars().all(|c| ('0'..='7').contains(&c)) {
                digits
            } else {
                format!("{:o}", n.as_u64()?)
            }
        }
        other => r.key_string(key, other)?.trim_start_matches("0o").to_string(),
    };
    match u32::from_str_radix(&text, 8) {
        Ok(mode) if mode <= 0o7777 => Some(format!("{mode:04o}")),
        _ => {
            let at = r.value_at(key);
            r.error(at, &key.path, format!("expected an octal mode such as 0440, got `{text}`"));
            None
        }
    }
}
