//! End to end: `drover import compose` as a user runs it, each test in its own temp dir,
//! with no master. Images are never inspected here (`--no-inspect`), so the results do not
//! depend on what the machine's Docker engine has. The translation itself is tested case by
//! case in compose/tests/.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn drover(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(cwd)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("DROVER_DIR")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every file under `dir` (links as `-> target`), with its contents.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                found.insert(rel, format!("-> {}", fs::read_link(&path).unwrap().display()));
            } else if kind.is_dir() {
                stack.push(path);
            } else {
                found.insert(rel, fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    found
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

const APP: &str = "\
services:
  web:
    build: ./web
    ports: [\"8000:5000\"]
    depends_on: [cache]
  cache:
    image: redis:7.2
    entrypoint: [redis-server]
    command: [--appendonly, \"yes\"]
";

#[test]
fn nothing_is_written_when_the_file_is_refused() {
    for (compose, wanted) in [
        (
            "services:\n  web:\n    image: nginx\n   ports: [\"80\"]\n",
            "docker-compose.yml:4:4: did not find expected key",
        ),
        (
            "services:\n  web:\n    image: nginx\n    depends_on: [db]\n",
            "docker-compose.yml:4:18: services.web: depends on `db`, which is not a service of the file",
        ),
        (
            "services:\n  db:\n    image: postgres\n    environment:\n      PASSWORD: ${DB_PASSWORD:?set it}\n",
            "docker-compose.yml:5:17: services.db.environment.PASSWORD: required variable DB_PASSWORD is missing a \
             value: set it",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("docker-compose.yml", compose), ("web/Dockerfile", "FROM debian\n")]);
        let before = tree(dir.path());
        let out = drover(dir.path(), &["import", "compose", "--no-inspect"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(wanted), "{err}");
        assert!(err.contains("drover: the compose file was refused; nothing was written"), "{err}");
        assert_eq!(stdout(&out), "");
        assert_eq!(tree(dir.path()), before, "nothing written");
    }
}

#[test]
fn existing_files_are_listed_and_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("docker-compose.yml", APP), ("web/Dockerfile", "FROM debian:bookworm\nCMD [\"/app\"]\n")],
    );
    let args = ["import", "compose", "--no-inspect", "--fleet", "shop"];
    let first = drover(dir.path(), &args);
    assert_eq!(first.status.code(), Some(1), "the image of web is not inspected: {}", stderr(&first));
    let written = tree(dir.path());
    assert!(written.contains_key("fleet.yaml") && written.contains_key("states/shop/web.yaml"));

    fs::write(dir.path().join("fleet.yaml"), "# mine\n").unwrap();
    let again = drover(dir.path(), &args);
    assert_eq!(again.status.code(), Some(2));
    let err = stderr(&again);
    assert!(err.contains("these files exist; nothing was written (--force overwrites them)"), "{err}");
    for path in
        ["fleet.yaml", "roles/web.yaml", "roles/cache.yaml", "states/shop/web.yaml", "images/web/Dockerfile"]
    {
        assert!(err.contains(&format!("  {path}")), "{path} listed: {err}");
    }
    assert_eq!(fs::read_to_string(dir.path().join("fleet.yaml")).unwrap(), "# mine\n", "kept");

    let forced = drover(dir.path(), &[&args[..], &["--force"]].concat());
    assert_eq!(forced.status.code(), Some(1), "{}", stderr(&forced));
    assert_eq!(tree(dir.path()), written, "the same files again");
}

#[test]
fn writes_the_fleet_and_copies_the_build_context() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("shop");
    write(
        &project,
        &[
            ("docker-compose.yml", APP),
            ("web/Dockerfile", "FROM debian:bookworm\nCOPY app /app\nCMD [\"/app\"]\n"),
            ("web/app", "#!/bin/sh\n"),
            ("web/static/site.css", "body {}\n"),
            ("web/.git/HEAD", "ref: refs/heads/main\n"),
        ],
    );
    std::os::unix::fs::symlink("static/site.css", project.join("web/style.css")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", project.join("web/outside")).unwrap();
    fs::create_dir(dir.path().join("repo")).unwrap();
    let out = drover(
        dir.path(),
        &["import", "compose", "shop/docker-compose.yml", "--repo", "repo", "--no-inspect"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("shop/docker-compose.yml:3:12: services.web: left out: the entrypoint of the image debian:bookworm"),
        "messages name the file as given: {err}"
    );
    assert!(err.contains("drover: --no-inspect: images' configurations were not read"), "{err}");
    assert!(err.contains("drover: 1 setting of the compose file left out (above)"), "{err}");
    let text = stdout(&out);
    assert!(text.contains("wrote the fleet shop into repo"), "{text}");
    assert!(text.contains("  drover image build images/web --tag web:1.0\n"), "{text}");

    let repo = tree(&dir.path().join("repo"));
    let paths: Vec<&str> = repo.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "fleet.yaml",
            "images/cache/Dockerfile",
            "images/web/Dockerfile",
            "images/web/app",
            "images/web/static/site.css",
            "images/web/style.css",
            "roles/cache.yaml",
            "roles/web.yaml",
            "states/shop/cache.yaml",
            "states/shop/web.yaml",
        ],
        "the context without .git and without the link leaving it"
    );
    assert_eq!(repo["images/web/style.css"], "-> static/site.css");
    let dockerfile = &repo["images/web/Dockerfile"];
    assert!(dockerfile.starts_with("# services.web of docker-compose.yml"), "{dockerfile}");
    assert!(dockerfile.contains("FROM debian:bookworm\nCOPY app /app\n"), "{dockerfile}");
    assert!(dockerfile.ends_with("FROM base\nCOPY --from=0 / /\n"), "{dockerfile}");
    assert!(repo["roles/web.yaml"].contains("requires: [cache]"));
    assert!(repo["states/shop/cache.yaml"].contains("- cmd: [redis-server, \"--appendonly\", \"yes\"]"));
    assert_eq!(tree(&project).len(), 7, "the project is left as it was");
}

#[test]
fn the_default_file_everything_translated_and_json() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("compose.yaml", "services:\n  cache:\n    image: redis:7.2\n    entrypoint: [redis-server]\n")],
    );
    let out = drover(dir.path(), &["import", "compose", "--no-inspect", "--fleet", "kv", "--out", "json"]);
    assert_eq!(out.status.code(), Some(0), "nothing left out: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["fleet"], "kv");
    assert_eq!(report["images"][0]["tag"], "cache:1.0");
    assert_eq!(report["findings"][0]["key"], "services.cache");
    assert_eq!(report["findings"][0]["level"], "note");
    assert_eq!(report["written"].as_array().unwrap().len(), 4);
    assert!(fs::read_to_string(dir.path().join("fleet.yaml")).unwrap().contains("fleet: kv\n"));

    let empty = tempfile::tempdir().unwrap();
    let out = drover(empty.path(), &["import", "compose"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no compose file here: expected one of docker-compose.yml, compose.yaml"));

    // --dir is the master's directory: refused rather than quietly writing elsewhere
    let out = drover(dir.path(), &["import", "compose", "--dir", "out", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("name the folder to write into with --repo DIR"), "{}", stderr(&out));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn settings_left_out_are_listed_at_their_lines_and_the_rest_is_written_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let compose = "\
services:
  tool:
    image: debian:bookworm
    entrypoint: [sleep]
    command: [infinity]
    privileged: true
    devices: [/dev/fuse]
    network_mode: host
    volumes:
      - /srv/data:/data
  cache:
    image: redis:7.2
    entrypoint: [redis-server]
";
    write(dir.path(), &[("docker-compose.yml", compose)]);
    let out = drover(dir.path(), &["import", "compose", "--no-inspect", "--fleet", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let left_out: Vec<&str> = err.lines().filter(|l| l.contains(": left out: ")).collect();
    let at: Vec<&str> = left_out.iter().map(|l| l.split(": left out: ").next().unwrap()).collect();
    assert_eq!(
        at,
        [
            "docker-compose.yml:6:5: services.tool.privileged",
            "docker-compose.yml:7:5: services.tool.devices",
            "docker-compose.yml:8:5: services.tool.network_mode",
            "docker-compose.yml:10:9: services.tool.volumes",
        ],
        "{err}"
    );
    assert!(left_out[3].ends_with("/srv/data is outside the project: drover mounts no host path into a container; put what the service needs in the image, in a state (file.managed), or in a volume"), "{err}");
    assert!(
        err.contains(
            "drover: 4 settings of the compose file left out (above): review them before `drover up`"
        ),
        "{err}"
    );
    // the rest is written: both roles, and the tool's daemon as its container ran it
    let written = tree(dir.path());
    assert!(stdout(&out).contains("wrote the fleet shop into .: fleet.yaml, 2 roles"), "{}", stdout(&out));
    assert!(written["fleet.yaml"].contains("  tool:\n") && written["fleet.yaml"].contains("  cache:\n"));
    assert!(
        written["states/shop/tool.yaml"].contains("- cmd: [sleep, infinity]"),
        "{}",
        written["states/shop/tool.yaml"]
    );

    // the same findings in the JSON report, with their lines
    let out = drover(
        dir.path(),
        &["import", "compose", "--no-inspect", "--fleet", "shop", "--force", "--out", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let findings: Vec<(String, u64, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "left-out")
        .map(|f| {
            (f["key"].as_str().unwrap().to_string(), f["line"].as_u64().unwrap(), f["file"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        findings,
        [
            ("services.tool.privileged".to_string(), 6, "docker-compose.yml"),
            ("services.tool.devices".to_string(), 7, "docker-compose.yml"),
            ("services.tool.network_mode".to_string(), 8, "docker-compose.yml"),
            ("services.tool.volumes".to_string(), 10, "docker-compose.yml"),
        ]
    );
}
