//! Docker tests own what they create: a [`Scope`] names a fleet no other run uses
//! (`dt<pid><random>`), and when it is dropped — test passed or panicked — every container,
//! network, volume and image carrying its `drover.fleet` label is removed, and every image
//! whose repository is the fleet's name or starts with it and a `-` (images a test built:
//! `<fleet>-app:1`). Nothing else is ever touched; the base image, which no test removes,
//! stays cached across runs by its content hash.
//!
//! [`required`] decides whether a test without an engine fails (`DROVER_REQUIRE_DOCKER=1`,
//! set by CI) or says it skipped.

use std::process::Command;

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

    /// The `repository:tag` of every image named for this scope: `<fleet>` or `<fleet>-…`.
    pub fn images(&self) -> Vec<String> {
        let all = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let mut mine: Vec<String> = lines(&all)
            .into_iter()
            .filter(|i| {
                let repo = i.rsplit_once(':').map_or(i.as_str(), |(r, _)| r);
                repo == self.fleet || repo.strip_prefix(&self.fleet).is_some_and(|r| r.starts_with('-'))
            })
            .collect();
        mine.sort();
        mine
    }

    pub fn volumes(&self) -> Vec<String> {
        lines(&docker(&["volume", "ls", "-q", "--filter", &format!("label={}", self.label())]))
    }

    /// Removes everything of this scope (also what `Drop` does): objects with its label, and
    /// containers and images whose name starts with its fleet name (no other run's can).
    pub fn clean(&self) {
        let filter = format!("label={}", self.label());
        let mut ids = lines(&docker(&["ps", "-aq", "--filter", &filter]));
        let named = docker(&["ps", "-a", "--format", "{{.ID}} {{.Names}}"]);
        ids.extend(named.lines().filter_map(|l| {
            let (id, name) = l.split_once(' ')?;
            name.starts_with(&self.fleet).then(|| id.to_string())
        }));
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            docker(&[&["rm", "-f", "-v"][..], &ids.iter().map(String::as_str).collect::<Vec<_>>()].concat());
        }
        for id in self.networks() {
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
