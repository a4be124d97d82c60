//! A Compose app, run by `docker-compose` and by drover from what `drover import compose`
//! made of the same file, on the real engine: under both, every service reaches the others
//! by its Compose service name, and gets the same answers.
//!
//! The app: `web` (an HTTP server), `cache` (redis) and `client`, which reaches both by name
//! over and over and serves what it got; all three built from one folder `FROM base` (the
//! project's base image, built once per engine). The services are named for the test's
//! [`Scope`] (`<fleet>-web`, ...), and so are the images drover builds for them; the Compose
//! project is `-p <fleet>`. Both runs are taken down at the end, passed or failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tests::docker::{Scope, base_yaml, ensure_base, required};
use tests::{ConfigRepo, Master, bin, ok, show, write_files};

const DOCKERFILE: &str =
    "FROM base\nCOPY client get /app/\nCOPY web /srv/web\nRUN chmod 755 /app/client /app/get\n";

/// `get HOST`: the body of `http://HOST/`, within 5 s. (bash's own TCP: busybox's wget is
/// static and cannot look names up through glibc's NSS.)
const GET: &str = r#"#!/bin/bash
exec timeout 5 bash -c '
exec 3<>"/dev/tcp/$0/80" || exit 1
printf "GET / HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3
sed "1,/^\r$/d" <&3
' "$1"
"#;

/// The client: reaches web and cache by the names it is given, every second, and serves
/// what it got last on port 80.
const CLIENT: &str = r#"#!/bin/sh
web=$1 cache=$2
mkdir -p /srv/client
busybox httpd -f -p 80 -h /srv/client &
while :; do
    page=$(/app/get "$web" 2>&1)
    count=$(redis-cli -h "$cache" incr visits 2>&1)
    echo "web said: $page; cache counted: $count" > /srv/client/index.new
    mv /srv/client/index.new /srv/client/index.html
    sleep 1
done
"#;

fn compose_file(f: &str) -> String {
    format!(
        "services:\n  \
         {f}-web:\n    build: ./app\n    command: [busybox, httpd, -f, -p, \"80\", -h, /srv/web]\n  \
         {f}-cache:\n    build: ./app\n    \
         command: [redis-server, --protected-mode, \"no\", --save, \"\", --appendonly, \"no\"]\n  \
         {f}-client:\n    build: ./app\n    command: [/app/client, {f}-web, {f}-cache]\n    \
         depends_on: [{f}-web, {f}-cache]\n"
    )
}

/// The app's project folder: the compose file and the services' build context.
fn project(dir: &Path, f: &str) -> PathBuf {
    let project = dir.join("shop");
    write_files(
        &project,
        &[
            ("docker-compose.yml", &compose_file(f)),
            ("app/Dockerfile", DOCKERFILE),
            ("app/client", CLIENT),
            ("app/get", GET),
            ("app/web/index.html", "hello from web\n"),
        ],
    );
    project
}

/// `docker-compose -p <project> -f <file>`: the project is taken down (with its volumes
/// and the images it built) when this is dropped, passed or failed.
struct ComposeProject {
    name: String,
    file: PathBuf,
}

impl ComposeProject {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            // the engine's own builder, as drover's image build uses
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .output()
            .expect("run docker-compose")
    }

    /// The container of `service`.
    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--volumes", "--rmi", "local", "--remove-orphans"]);
    }
}

/// Whether `docker-compose` runs here; with `DROVER_REQUIRE_DOCKER=1`, panics when not
/// (`scripts/deps.sh` installs Debian's docker-compose).
fn compose_available() -> bool {
    let ok = Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("DROVER_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "DROVER_REQUIRE_DOCKER=1 but `docker-compose version` does not run: scripts/deps.sh installs it"
        );
        eprintln!("skipped: no docker-compose (scripts/deps.sh installs it)");
    }
    ok
}

/// What each service gets from each other one, reached by its service name from inside
/// its container (`container` names it): `(from, to)` → the answer, or why there was none.
fn reachability(
    services: &[String],
    container: impl Fn(&str) -> String,
) -> BTreeMap<(String, String), String> {
    let mut seen = BTreeMap::new();
    for from in services {
        for to in services.iter().filter(|to| *to != from) {
            let ask = if to.ends_with("-cache") {
                format!("redis-cli -h {to} ping")
            } else {
                format!("/app/get {to}")
            };
            let out = Command::new("docker")
                .args(["exec", &container(from), "sh", "-c", &ask])
                .output()
                .expect("docker exec");
            let answer = if out.status.success() {
                // the client's count of visits differs from run to run
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match text.rsplit_once("cache counted: ") {
                    Some((said, n)) if n.parse::<u64>().is_ok() => format!("{said}cache counted: N"),
                    _ => text,
                }
            } else {
                format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim())
            };
            seen.insert((from.clone(), to.clone()), answer);
        }
    }
    seen
}

/// Polls [`reachability`] until every service answers as it should; panics with the last
/// answers after `limit`.
fn reach_all(
    what: &str,
    services: &[String],
    container: impl Fn(&str) -> String,
) -> BTreeMap<(String, String), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = reachability(services, &container);
        if all_answer(&seen) {
            return seen;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: after 60 s, still {seen:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every service answered as it should.
fn all_answer(seen: &BTreeMap<(String, String), String>) -> bool {
    seen.iter().all(|((_, to), answer)| {
        let wanted = if to.ends_with("-web") {
            "hello from web"
        } else if to.ends_with("-cache") {
            "PONG"
        } else {
            "web said: hello from web; cache counted: N"
        };
        answer == wanted
    })
}

#[test]
fn services_reach_each_other_by_name_under_drover_as_under_docker_compose() {
    if !required() || !compose_available() {
        return;
    }
    let scope = Scope::new("compose");
    let f = scope.fleet.clone();
    let services: Vec<String> = ["web", "cache", "client"].iter().map(|s| format!("{f}-{s}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), &f);
    // the app's Dockerfile starts FROM base: the engine must have it before anything reads
    // or builds the app
    ensure_base();

    // docker-compose
    let compose = ComposeProject { name: f.clone(), file: project.join("docker-compose.yml") };
    let out = compose.run(&["up", "-d", "--build"]);
    assert!(out.status.success(), "docker-compose up: {}", show(&out));
    let under_compose = reach_all("under docker-compose", &services, |s| compose.container(s));
    let out = compose.run(&["down", "--volumes", "--rmi", "local"]);
    assert!(out.status.success(), "docker-compose down: {}", show(&out));

    // drover: import, build what the import says, commit, up
    let repo = ConfigRepo::new();
    repo.commit("the base", &[("images/base/base.yaml", &base_yaml())]);
    let out = Command::new(bin("drover"))
        .args(["--out", "json", "import", "compose", "docker-compose.yml", "--fleet", &f, "--repo"])
        .arg(repo.path())
        .current_dir(&project)
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "everything translated: {}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    repo.commit("the fleet of docker-compose.yml", &[]);
    let master = Master::start_for_containers(repo.path());
    let builds = report["images"].as_array().unwrap();
    assert_eq!(builds.len(), 3, "{report}");
    for build in builds {
        let (folder, tag) = (build["folder"].as_str().unwrap(), build["tag"].as_str().unwrap());
        let out =
            master.drover(&["image", "build", repo.path().join(folder).to_str().unwrap(), "--tag", tag]);
        assert!(out.status.success(), "image build {tag}: {}", show(&out));
    }
    ok(&master.drover(&["up", "--timeout", "180"]));
    let under_drover = reach_all("under drover", &services, |s| format!("{f}-{s}-1"));

    // the same names, the same answers
    assert_eq!(under_drover, under_compose);
    assert_eq!(under_drover.len(), 6, "{under_drover:?}");
    ok(&master.drover(&["down", "--volumes"]));
    drop(compose);
    assert_eq!(scope.containers(), Vec::<String>::new());
}
