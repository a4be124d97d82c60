//! docs/from-compose.md's walk-through reads as the import runs: its compose file, imported
//! with the images it names known, gives the report lines, the fleet.yaml and the state the
//! page shows.

use std::path::Path;

use compose::{ImageConfig, Memory, Options};

fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str], workdir: &str) -> ImageConfig {
    let strings =
        |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).filter(|v| !v.is_empty());
    ImageConfig {
        entrypoint: strings(entrypoint),
        cmd: strings(cmd),
        env: strings(env),
        working_dir: Some(workdir.to_string()).filter(|w| !w.is_empty()),
        ..ImageConfig::default()
    }
}

/// The fenced blocks of `doc` whose info string is `lang`, in order.
fn blocks<'a>(doc: &'a str, lang: &str) -> Vec<&'a str> {
    doc.split(&format!("```{lang}\n"))
        .skip(1)
        .map(|b| b.split("```").next().expect("a closed block"))
        .collect()
}

/// A block indented in a list item, unindented.
fn unindent(block: &str) -> String {
    let indent = block.lines().next().map_or(0, |l| l.len() - l.trim_start().len());
    let text: String =
        block.lines().map(|l| format!("{}\n", l.get(indent..).unwrap_or("").trim_end())).collect();
    format!("{}\n", text.trim_end_matches('\n'))
}

#[test]
fn the_walk_through_is_what_the_import_makes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/from-compose.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml = blocks(&doc, "yaml");
    let compose =
        yaml.iter().find(|b| b.starts_with("# docker-compose.yml")).expect("the walk-through's compose file");

    let mut sources = Memory::default();
    sources.files.insert(
        "web/Dockerfile".into(),
        b"FROM python:3.12-slim\nCOPY . /app\nCMD [\"python\", \"/app/app.py\"]\n".to_vec(),
    );
    sources.files.insert(".env".into(), b"DB_PASSWORD=s3cret\n".to_vec());
    sources.files.insert("db.env".into(), b"POSTGRES_USER=shop\nPOSTGRES_PASSWORD=s3cret\n".to_vec());
    let path_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    sources.images.insert(
        "redis:7.2".into(),
        image(&["docker-entrypoint.sh"], &["redis-server"], &[path_env, "REDIS_VERSION=7.2.4"], "/data"),
    );
    sources
        .images
        .insert("postgres:16".into(), image(&["docker-entrypoint.sh"], &["postgres"], &[path_env], ""));
    sources.images.insert("python:3.12-slim".into(), image(&[], &["python3"], &[path_env], ""));
    let options = Options {
        file: "docker-compose.yml".into(),
        fleet: Some("shop".into()),
        folder: "shop".into(),
        project_dir: None,
    };
    let import = compose::import(compose, &options, &sources).unwrap_or_else(|d| panic!("{d:#?}"));

    let console = blocks(&doc, "console");
    let shown =
        unindent(console.iter().find(|b| b.contains("drover import compose --fleet shop")).expect("the run"));
    let report: Vec<String> = import.findings.iter().map(ToString::to_string).collect();
    for finding in &report {
        assert!(shown.contains(finding.as_str()), "the page shows the report line {finding}:\n{shown}");
    }
    for line in shown.lines().filter(|l| l.starts_with("docker-compose.yml")) {
        assert!(report.iter().any(|f| f == line), "the import reports {line}: {report:#?}");
    }

    let text = |path: &str| String::from_utf8(import.files[path].clone()).expect("text");
    let fleet = yaml
        .iter()
        .map(|b| unindent(b))
        .find(|b| b.starts_with("fleet: shop"))
        .expect("the fleet.yaml shown");
    let written: String =
        text("fleet.yaml").lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert_eq!(fleet, written);
    let state =
        yaml.iter().map(|b| unindent(b)).find(|b| b.starts_with("cache:\n")).expect("the state shown");
    assert!(text("states/shop/cache.yaml").ends_with(&state), "{}", text("states/shop/cache.yaml"));
    assert!(text("roles/web.yaml").contains("requires: [cache, db]\n"));
}
