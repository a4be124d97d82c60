//! Docker tests own what they create: a [`Scope`] names a fleet no other run uses
//! (`dt<pid><random>`), and when it is dropped — test passed or panicked — every container,
//! network, volume and image carrying its `drover.fleet` label is removed, and every image
//! whose repository is the fleet's name or starts with it and a `-` (images a test built:
//! `<fleet>-app:1`). Nothing else is ever touched; the base image, which no test removes,
//! stays cached across runs by its content hash.
//!
//! A Compose project a test runs with `docker-compose -p <fleet>` is the scope's too: its
//! containers, networks and images are named `<fleet>_…`, and are removed with it.
//!
//! [`required`] decides whether a test without an engine fails (`DROVER_REQUIRE_DOCKER=1`,
//! set by CI) or says it skipped. [`ensure_base`] makes the project's base image when the
//! engine lacks it, for tests that build `FROM base` without a master.

use std::process::Command;

use fleet::docker::Docker;
use fleet::image::{Builder, Debootstrap, Definition, Paths};

use crate::{bin, repo_root};

/// Whether a Docker engine answers; with `DROVER_REQUIRE_DOCKER=1`, panics when none does.
pub fn required() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("DROVER_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "DROVER_REQUIRE_DOCKER=1 but no Docker engine answers `docker version`"
        );
        eprintln!("skipped: no Docker engine (set DROVER_REQUIRE_DOCKER=1 to make this a failure)");
    }
    ok
}

/// The objects of one test: a fleet name unique to it, cleaned up on drop.
pub struct Scope {
    pub fleet: String,
}

impl Scope {
    /// A fleet name of lowercase letters and digits, at most 20 characters, that no other
    /// test run shares.
    pub fn new(what: &str) -> Scope {
        let tag: String = what.chars().filter(char::is_ascii_alphanumeric).take(6).collect();
        let fleet =
            format!("dt{}{}{:04x}", tag.to_ascii_lowercase(), std::process::id() % 100_000, random16());
        Scope { fleet }
    }

    /// Whether `name` (a container's, an image's repository, a network's) is named for this
    /// scope: `<fleet>`, `<fleet>-…` (drover's slots, a test's images) or `<fleet>_…`
    /// (a Compose project `<fleet>`). No other run's can be.
    fn named_for(&self, name: &str) -> bool {
        name == self.fleet || name.strip_prefix(&self.fleet).is_some_and(|r| r.starts_with(['-', '_']))
    }

    /// `drover.fleet=<fleet>`, as a `--filter label=` value.
    pub fn label(&self) -> String {
        format!("drover.fleet={}", self.fleet)
    }

    /// What `docker ps -a` lists of this scope: `name state` lines, sorted.
    pub fn containers(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={}", self.label()),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut lines: Vec<String> = out.lines().map(String::from).collect();
        lines.sort();
        lines
    }

    pub fn networks(&self) -> Vec<String> {
        lines(&docker(&["network", "ls", "-q", "--filter", &format!("label={}", self.label())]))
    }

    /// The `repository:tag` of every image named for this scope: `<fleet>`, `<fleet>-…` or
    /// `<fleet>_…`, also in a registry (`127.0.0.1:5000/<fleet>-app:1`, a fleet's push).
    pub fn images(&self) -> Vec<String> {
        let all = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let mut mine: Vec<String> = lines(&all)
            .into_iter()
            .filter(|i| {
                let repo = i.rsplit_once(':').map_or(i.as_str(), |(r, _)| r);
                self.named_for(repo.rsplit('/').next().unwrap_or(repo))
            })
            .collect();
        mine.sort();
        mine
    }

    /// Swarm services and secrets of this scope (none outside a swarm).
    pub fn services(&self) -> Vec<String> {
        lines(&docker(&["service", "ls", "-q", "--filter", &format!("label={}", self.label())]))
    }

    pub fn secrets(&self) -> Vec<String> {
        lines(&docker(&["secret", "ls", "-q", "--filter", &format!("label={}", self.label())]))
    }

    pub fn volumes(&self) -> Vec<String> {
        lines(&docker(&["volume", "ls", "-q", "--filter", &format!("label={}", self.label())]))
    }

    /// Removes everything of this scope (also what `Drop` does): objects with its label, and
    /// containers and images whose name starts with its fleet name (no other run's can).
    pub fn clean(&self) {
        let filter = format!("label={}", self.label());
        // Swarm services and secrets first (none when the engine is in no swarm): removing a
        // service removes its task's container
        let services = lines(&docker(&["service", "ls", "-q", "--filter", &filter]));
        if !services.is_empty() {
            docker(
                &[&["service", "rm"][..], &services.iter().map(String::as_str).collect::<Vec<_>>()].concat(),
            );
            for _ in 0..120 {
                if lines(&docker(&["ps", "-aq", "--filter", &filter])).is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        let secrets = lines(&docker(&["secret", "ls", "-q", "--filter", &filter]));
        if !secrets.is_empty() {
            docker(
                &[&["secret", "rm"][..], &secrets.iter().map(String::as_str).collect::<Vec<_>>()].concat(),
            );
        }
        let mut ids = lines(&docker(&["ps", "-aq", "--filter", &filter]));
        let named = docker(&["ps", "-a", "--format", "{{.ID}} {{.Names}}"]);
        ids.extend(named.lines().filter_map(|l| {
            let (id, name) = l.split_once(' ')?;
            self.named_for(name).then(|| id.to_string())
        }));
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            docker(&[&["rm", "-f", "-v"][..], &ids.iter().map(String::as_str).collect::<Vec<_>>()].concat());
        }
        let mut networks = self.networks();
        let named = docker(&["network", "ls", "--format", "{{.ID}} {{.Name}}"]);
        networks.extend(named.lines().filter_map(|l| {
            let (id, name) = l.split_once(' ')?;
            self.named_for(name).then(|| id.to_string())
        }));
        networks.sort();
        networks.dedup();
        for id in networks {
            docker(&["network", "rm", &id]);
        }
        for v in self.volumes() {
            docker(&["volume", "rm", "-f", &v]);
        }
        let images = lines(&docker(&["images", "--filter", &filter, "--format", "{{.Repository}}:{{.Tag}}"]));
        for image in images.iter().filter(|i| !i.ends_with(":<none>")) {
            docker(&["rmi", "-f", image]);
        }
        for image in self.images() {
            docker(&["rmi", "-f", &image]);
        }
        for id in lines(&docker(&["images", "-q", "--filter", &filter])) {
            docker(&["rmi", "-f", &id]);
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.clean();
    }
}

/// This project's `images/base/base.yaml`: a config repository holding it builds (once per
/// engine) the base every Docker test uses.
pub fn base_yaml() -> String {
    crate::project_file("images/base/base.yaml")
}

/// Makes sure the engine has the project's base image, as `drover image build` does (found
/// by the hash of its definition, else made once); returns its tag, `base:<hash>`.
pub fn ensure_base() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let work = tempfile::tempdir().expect("temp dir");
        let builder = Builder {
            engine: Docker::connect().await.expect("the Docker engine"),
            bootstrap: Debootstrap,
            paths: Paths {
                base: repo_root().join("images/base"),
                work: work.path().to_path_buf(),
                locks: std::env::temp_dir().join("drover-locks"),
                minion: bin("drover-minion"),
            },
        };
        let def = Definition::load(&builder.paths.base).expect("images/base/base.yaml");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let base = builder.ensure_base(&def, &tx).await.unwrap_or_else(|e| panic!("the base image: {e}"));
        base.tag
    })
}

/// Runs `sh -c script` in a running container; its standard output. Panics when it fails.
pub fn exec(container: &str, script: &str) -> String {
    let out =
        Command::new("docker").args(["exec", container, "sh", "-c", script]).output().expect("docker exec");
    assert!(
        out.status.success(),
        "docker exec {container} sh -c {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container's addresses, over its networks.
pub fn addresses(container: &str) -> Vec<String> {
    let out = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        container,
    ]);
    let mut ips: Vec<String> = out.split_whitespace().map(String::from).collect();
    ips.sort();
    ips
}

/// Runs `docker args…`, returning its standard output (empty when it failed).
pub fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

fn random16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u16::from_le_bytes(b)
}
