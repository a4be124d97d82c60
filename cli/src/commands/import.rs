//! `drover import compose [FILE] [--repo DIR] [--fleet NAME] [--force] [--no-inspect]`: an
//! app described by a Compose file, translated into what drover runs it from (fleet.yaml,
//! roles/, states/, images/) for the user to review and commit. It works on local files
//! only: no master. The translation is the `compose` crate's (pure); this file reads the
//! project from disk, asks the local Docker engine for images' configurations (`docker
//! image inspect`, read-only), and writes the files.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use compose::{DEFAULT_FILES, ImageConfig, Import, Kind, Options, ReadError, Sources};
use serde::Serialize;

use crate::commands::Ctx;
use crate::exit::Exit;
use crate::output::{self, Out};

const HELP: &str = "\
Writes, into the config repository (--repo, default: the current folder):
  fleet.yaml                   one role per service: image, replicas, ports, volumes, resources
  roles/<service>.yaml         the role: its state, and `requires` from depends_on and links
  states/<fleet>/<service>.yaml  a daemon.running of the command the service's container ran
                               (entrypoint and command, user, working_dir, environment with
                               env_file inlined, health check), and files it mounted
  images/<service>/Dockerfile  the service's image (or its build: context, copied here) put
                               onto drover's base, which adds drover-minion as the entrypoint

An image's entrypoint, command, user, folder and environment are read with `docker image
inspect` when this machine's engine has the image (--no-inspect: never). ${VAR} in the file
is taken from the environment, then from .env beside the file.

Every setting drover has no counterpart for is reported on stderr at its line, with what to
do instead (`docker-compose.yml:12:5: services.web.privileged: left out: ...`); notes say
what was translated differently. docs/from-compose.md has the whole mapping.

Nothing is written when the compose file has an error, nor when a file to write exists
(they are listed; --force overwrites them).

Exit status: 0 everything translated; 1 some settings were left out (listed); 2 the file
was refused (an error, or files in the way), or usage error.

Examples:
  drover import compose
  drover import compose deploy/docker-compose.prod.yml --fleet shop --repo ../shop-config
  drover import compose --force --out json | jq .findings";

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub what: ImportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Translate a Compose file into fleet.yaml, roles, states and images, reporting what it leaves out
    Compose(ComposeArgs),
}

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct ComposeArgs {
    /// The Compose file [default: docker-compose.yml, else compose.yaml, compose.yml,
    /// docker-compose.yaml in the current folder]
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The config repository to write into [default: the current folder]
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// The fleet's name [default: the file's `name:`, $COMPOSE_PROJECT_NAME, or the file's
    /// folder's name]
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// Overwrite files that exist
    #[arg(long)]
    pub force: bool,
    /// Do not ask the local Docker engine for the images' configurations
    #[arg(long)]
    pub no_inspect: bool,
}

pub fn run(args: ImportArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    match args.what {
        ImportCommand::Compose(args) => compose_run(args, ctx),
    }
}

fn compose_run(args: ComposeArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    // `--dir` is every command's master directory, which this one does not use: a user who
    // means the folder to write into would see the files land elsewhere
    if std::env::args_os().skip(1).any(|a| a == "--dir" || a.to_string_lossy().starts_with("--dir=")) {
        bail!(
            "--dir names the master's directory, which `drover import compose` does not use; name the folder to write into with --repo DIR"
        );
    }
    let file = match args.file {
        Some(file) => file,
        None => default_file(ctx)?,
    };
    let text = fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let project = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let absolute =
        fs::canonicalize(&project).with_context(|| format!("cannot open {}", project.display()))?;
    // messages name the project's files as the user wrote the compose file's folder
    let shown = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => format!("{}/", p.display()),
        _ => String::new(),
    };
    let options = Options {
        file: file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        fleet: args.fleet,
        folder: absolute.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        project_dir: absolute.to_str().map(str::to_string),
    };
    let sources = Disk {
        root: project.clone(),
        inspect: !args.no_inspect,
        images: RefCell::default(),
        docker: RefCell::default(),
    };
    let import = match compose::import(&text, &options, &sources) {
        Ok(import) => import,
        Err(diags) => {
            for d in diags {
                let prefix = if d.file.starts_with("--") { "" } else { shown.as_str() };
                ctx.note(&format!("{prefix}{d}"))?;
            }
            ctx.note("drover: the compose file was refused; nothing was written")?;
            return Ok(Exit::Usage);
        }
    };

    let repo = args.repo.unwrap_or_else(|| PathBuf::from("."));
    let plan = Plan::make(&import, &project, &repo)?;
    let existing: Vec<&String> = plan.targets().filter(|t| repo.join(t).symlink_metadata().is_ok()).collect();
    if !existing.is_empty() && !args.force {
        ctx.note("drover: these files exist; nothing was written (--force overwrites them):")?;
        for path in &existing {
            ctx.note(&format!("  {}", in_repo(&repo, path)))?;
        }
        return Ok(Exit::Usage);
    }
    plan.write(&import, &repo)?;

    if sources.docker.borrow().as_deref() == Some("missing") {
        ctx.note("drover: `docker` was not found: images' configurations were not read (see the report)")?;
    } else if args.no_inspect {
        ctx.note("drover: --no-inspect: images' configurations were not read (see the report)")?;
    }
    let findings: Vec<String> = import.findings.iter().map(|f| format!("{shown}{f}")).collect();
    for line in &findings {
        ctx.note(line)?;
    }
    let written: Vec<&String> = plan.targets().collect();
    match ctx.out() {
        Out::Json | Out::Yaml => {
            let report = Report {
                fleet: &import.fleet,
                repo: repo.display().to_string(),
                written: &written,
                overwritten: &existing,
                images: import.images.iter().map(|(folder, tag)| BuildStep { folder, tag }).collect(),
                findings: &import.findings,
            };
            let text = if ctx.out() == Out::Json { output::json(&report)? } else { output::yaml(&report)? };
            ctx.print(&text)?;
        }
        _ => ctx.print(&summary(&import, &plan, &repo, written.len()))?,
    }
    let left_out = import.findings.iter().filter(|f| f.left_out()).count();
    if left_out > 0 {
        let s = if left_out == 1 { "" } else { "s" };
        ctx.note(&format!("drover: {left_out} setting{s} of the compose file left out (above): review them before `drover up`"))?;
        Ok(Exit::Failed)
    } else {
        Ok(Exit::Success)
    }
}

/// The first of Compose's default file names in the current folder.
fn default_file(ctx: &mut Ctx) -> anyhow::Result<PathBuf> {
    let found: Vec<&str> = DEFAULT_FILES.iter().copied().filter(|f| Path::new(f).is_file()).collect();
    match found.as_slice() {
        [] => bail!("no compose file here: expected one of {}, or name it", DEFAULT_FILES.join(", ")),
        [first, rest @ ..] => {
            if !rest.is_empty() {
                ctx.note(&format!("drover: reading {first} (also here: {})", rest.join(", ")))?;
            }
            Ok(PathBuf::from(first))
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    fleet: &'a str,
    repo: String,
    written: &'a [&'a String],
    overwritten: &'a [&'a String],
    images: Vec<BuildStep<'a>>,
    findings: &'a [compose::Finding],
}

#[derive(Serialize)]
struct BuildStep<'a> {
    folder: &'a str,
    tag: &'a str,
}

/// A path of the repository as the user names it: relative to the current folder.
fn in_repo(repo: &Path, path: &str) -> String {
    if repo == Path::new(".") { path.to_string() } else { repo.join(path).display().to_string() }
}

fn summary(import: &Import, plan: &Plan, repo: &Path, count: usize) -> String {
    let roles = import.images.len();
    let copied = plan.copied.keys().chain(plan.links.keys()).filter(|p| !plan.files.contains(*p)).count();
    let mut out = format!(
        "wrote the fleet {} into {}: fleet.yaml, {roles} role{s}, state{s} and image{s} ({count} files{copies})\n",
        import.fleet,
        repo.display(),
        s = if roles == 1 { "" } else { "s" },
        copies = if copied == 0 { String::new() } else { format!(", {copied} copied from the project") },
    );
    out.push_str(
        "next: review them, build the images, commit, and bring the fleet up (docs/from-compose.md):\n",
    );
    for (folder, tag) in &import.images {
        out.push_str(&format!("  drover image build {folder} --tag {tag}\n"));
    }
    out.push_str(
        "  git add fleet.yaml roles states images && git commit -m 'the fleet of the compose file'\n",
    );
    out.push_str("  drover up\n");
    out
}

/// Every file to write: the import's files, and the files of the folders it copies.
struct Plan {
    /// The import's files (repository paths).
    files: BTreeSet<String>,
    /// Repository path → the project file it is copied from.
    copied: BTreeMap<String, PathBuf>,
    /// Symbolic links to make: repository path → target.
    links: BTreeMap<String, PathBuf>,
}

impl Plan {
    fn make(import: &Import, project: &Path, repo: &Path) -> anyhow::Result<Plan> {
        let files = import.files.keys().cloned().collect();
        let mut plan = Plan { files, copied: BTreeMap::new(), links: BTreeMap::new() };
        // never copy what this import writes, nor a repository's own folders
        let repo_abs = fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
        let skip: BTreeSet<PathBuf> =
            ["images", "roles", "states", "fleet.yaml", ".git"].iter().map(|p| repo_abs.join(p)).collect();
        for copy in &import.copies {
            let from = project.join(&copy.from);
            let meta = fs::metadata(&from).with_context(|| format!("cannot read {}", from.display()))?;
            if meta.is_file() {
                plan.copied.insert(copy.to.clone(), from);
                continue;
            }
            let mut stack = vec![(from.clone(), String::new())];
            while let Some((dir, rel)) = stack.pop() {
                let entries = fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
                for entry in entries {
                    let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let path = entry.path();
                    let abs = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                    if name == ".git" || skip.contains(&abs) || skip.contains(&path) {
                        continue;
                    }
                    let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                    let to = format!("{}/{rel}", copy.to);
                    let kind =
                        entry.file_type().with_context(|| format!("cannot read {}", path.display()))?;
                    if kind.is_symlink() {
                        let target = fs::read_link(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        if stays_inside(&rel, &target) {
                            plan.links.insert(to, target);
                        }
                    } else if kind.is_dir() {
                        stack.push((path, rel));
                    } else if kind.is_file() {
                        plan.copied.insert(to, path);
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Every path written, once each, in order.
    fn targets(&self) -> impl Iterator<Item = &String> {
        let all: BTreeSet<&String> =
            self.files.iter().chain(self.copied.keys()).chain(self.links.keys()).collect();
        all.into_iter()
    }

    /// Copies the folders, then writes the import's files (which win over copies: the
    /// Dockerfile of a copied build context is drover's).
    fn write(&self, import: &Import, repo: &Path) -> anyhow::Result<()> {
        let parent = |path: &Path| -> anyhow::Result<()> {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
            }
            Ok(())
        };
        for (to, from) in &self.copied {
            let to = repo.join(to);
            parent(&to)?;
            remove_link(&to)?;
            fs::copy(from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        }
        for (to, target) in &self.links {
            let to = repo.join(to);
            parent(&to)?;
            remove_any(&to)?;
            std::os::unix::fs::symlink(target, &to)
                .with_context(|| format!("cannot make {}", to.display()))?;
        }
        for (path, contents) in &import.files {
            let to = repo.join(path);
            parent(&to)?;
            remove_link(&to)?;
            fs::write(&to, contents).with_context(|| format!("cannot write {}", to.display()))?;
        }
        Ok(())
    }
}

/// A symbolic link in the way of a file is replaced, not written through.
fn remove_link(path: &Path) -> anyhow::Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn remove_any(path: &Path) -> anyhow::Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("cannot replace {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display())),
        Err(_) => Ok(()),
    }
}

/// Whether a link at `rel` (inside a copied folder) to `target` stays in that folder, as
/// drover's image build requires.
fn stays_inside(rel: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = rel.matches('/').count() as i64;
    for part in target.components() {
        match part {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// The project on disk; images' configurations from the local engine.
struct Disk {
    root: PathBuf,
    inspect: bool,
    images: RefCell<BTreeMap<String, Option<ImageConfig>>>,
    /// `Some("missing")` once `docker` was not found.
    docker: RefCell<Option<String>>,
}

impl Sources for Disk {
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        match fs::read(self.root.join(path)) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ReadError::Missing),
            Err(e) => Err(ReadError::Other(e.to_string())),
        }
    }

    fn kind(&self, path: &str) -> Option<Kind> {
        let meta = fs::metadata(self.root.join(path)).ok()?;
        if meta.is_dir() { Some(Kind::Dir) } else { Some(Kind::File) }
    }

    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn image(&self, reference: &str) -> Option<ImageConfig> {
        if !self.inspect || self.docker.borrow().is_some() {
            return None;
        }
        if let Some(known) = self.images.borrow().get(reference) {
            return known.clone();
        }
        let output = Command::new("docker")
            .args(["image", "inspect", "--format", "{{json .Config}}", reference])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let config = match output {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                *self.docker.borrow_mut() = Some("missing".into());
                None
            }
            Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
            _ => None,
        };
        self.images.borrow_mut().insert(reference.to_string(), config.clone());
        config
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::commands::Command as Top;

    #[test]
    fn parses() {
        let cli =
            Cli::try_parse_from(["drover", "import", "compose", "app/compose.yml", "--repo", "r", "--force"])
                .unwrap();
        let Some(Top::Import(ImportArgs { what: ImportCommand::Compose(args) })) = cli.command else {
            panic!("not import compose")
        };
        assert_eq!(args.file.as_deref(), Some(Path::new("app/compose.yml")));
        assert_eq!(args.repo.as_deref(), Some(Path::new("r")));
        assert!(args.force && !args.no_inspect && args.fleet.is_none());
        assert!(Cli::try_parse_from(["drover", "import"]).is_err());
        assert!(Cli::try_parse_from(["drover", "import", "swarm"]).is_err());
        let cli = Cli::try_parse_from(["drover", "-L", "import", "test.ping"]).unwrap();
        assert_eq!(cli.run.target.list.as_deref(), Some("import"), "-L import targets a minion so named");
    }

    #[test]
    fn links_stay_inside() {
        assert!(stays_inside("a/link", Path::new("../b")));
        assert!(stays_inside("link", Path::new("b/c")));
        assert!(!stays_inside("link", Path::new("../b")));
        assert!(!stays_inside("a/link", Path::new("/etc/passwd")));
        assert!(!stays_inside("a/link", Path::new("../../x")));
    }
}
