//! Data-driven tests: each `tests/data/*.txt` holds a compose project and what
//! `drover import compose` makes of it, side by side. `UPDATE_EXPECT=1 cargo test -p
//! compose` rewrites the expected sections (review the diff before committing).
//!
//! A case file:
//!
//! ```text
//! # what the case checks (comment lines before the header)
//! fleet: shop                  # header (YAML), all optional: --fleet,
//! folder: shop                 #   the project folder's name (default `shop`),
//! file: docker-compose.yml     #   the compose file's name (default docker-compose.yml),
//! env: {TAG: "7"}              #   the environment,
//! images:                      #   what `docker image inspect` knows (`.Config`)
//!   redis:7: {Cmd: [redis-server]}
//! === docker-compose.yml       # then the project's files, each after `=== <path>`
//! ...
//! === expected                 # last: the report, then every file made (`--- <path>`) and
//! ...                          # every folder copied; or `--- refused` and the errors
//! ```
//!
//! Every case that is not refused is also loaded and planned as drover's master would
//! (`render::Repo::load`, `Repo::plan` for a slot of each role): drover must accept every
//! file the import writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use compose::{ImageConfig, Import, Memory, Options};
use render::{Files, Minion, Repo};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Header {
    fleet: Option<String>,
    folder: Option<String>,
    file: Option<String>,
    project_dir: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    images: BTreeMap<String, ImageConfig>,
}

struct Case {
    header: Header,
    files: BTreeMap<String, Vec<u8>>,
    expected: String,
    input: String,
}

fn parse_case(text: &str) -> Case {
    let (input, expected) = match text.find("\n=== expected\n") {
        Some(at) => (&text[..at + 1], &text[at + "\n=== expected\n".len()..]),
        None => (text, ""),
    };
    let mut header = Vec::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in input.lines() {
        if let Some(path) = line.strip_prefix("=== ") {
            current = Some(path.trim().to_string());
            files.insert(path.trim().to_string(), Vec::new());
            continue;
        }
        let target = match &current {
            Some(path) => files.get_mut(path).expect("inserted above"),
            None => &mut header,
        };
        target.extend_from_slice(line.as_bytes());
        target.push(b'\n');
    }
    let header = String::from_utf8(header).expect("a UTF-8 case");
    let header: Header = serde_yaml::from_str::<Option<Header>>(&header)
        .unwrap_or_else(|e| panic!("bad case header: {e}"))
        .unwrap_or_default();
    Case { header, files, expected: expected.to_string(), input: input.to_string() }
}

fn run(case: &Case) -> String {
    let h = &case.header;
    let file = h.file.clone().unwrap_or_else(|| "docker-compose.yml".into());
    let text =
        String::from_utf8(case.files.get(&file).cloned().unwrap_or_default()).expect("UTF-8 compose file");
    let sources = Memory { files: case.files.clone(), env: h.env.clone(), images: h.images.clone() };
    let options = Options {
        file: file.clone(),
        fleet: h.fleet.clone(),
        folder: h.folder.clone().unwrap_or_else(|| "shop".into()),
        project_dir: h.project_dir.clone(),
    };
    match compose::import(&text, &options, &sources) {
        Err(diags) => {
            let mut out = "--- refused\n".to_string();
            for d in diags {
                out.push_str(&format!("{d}\n"));
            }
            out
        }
        Ok(import) => {
            accepted_by_drover(&import);
            shown(&import)
        }
    }
}

fn shown(import: &Import) -> String {
    let mut out = "--- report\n".to_string();
    for f in &import.findings {
        out.push_str(&format!("{f}\n"));
    }
    for (path, bytes) in &import.files {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(&format!("--- {path}\n{text}"));
                if !text.ends_with('\n') {
                    out.push_str("(no final newline)\n");
                }
            }
            Err(_) => out.push_str(&format!("--- {path} ({} bytes)\n", bytes.len())),
        }
    }
    for copy in &import.copies {
        let from = if copy.from.is_empty() { "." } else { copy.from.as_str() };
        out.push_str(&format!("--- copy {from} -> {}\n", copy.to));
    }
    out
}

/// The master would take these files: the repository loads, each role plans for a slot.
fn accepted_by_drover(import: &Import) {
    let files: Files = import
        .files
        .iter()
        .filter(|(path, _)| !path.starts_with("images/"))
        .map(|(path, bytes)| (path.clone(), String::from_utf8(bytes.clone()).expect("text")))
        .collect();
    let repo = Repo::load(&files).unwrap_or_else(|d| panic!("drover refuses the files: {d:#?}"));
    let fleet = repo.fleet.as_ref().expect("a fleet.yaml");
    for role in fleet.roles.keys() {
        let minion = Minion { id: fleet.slot_name(role, 1), ..Minion::default() };
        repo.plan(&files, &minion, std::slice::from_ref(role))
            .unwrap_or_else(|d| panic!("drover refuses the state of {role}: {d:#?}"));
    }
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .expect("tests/data exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn data_cases() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failed = Vec::new();
    let paths = case_files();
    for path in &paths {
        let text = fs::read_to_string(path).expect("readable case");
        let case = parse_case(&text);
        let actual = run(&case);
        if actual != case.expected {
            if update {
                fs::write(path, format!("{}=== expected\n{actual}", case.input)).expect("writable case");
            } else {
                failed.push(format!(
                    "--- {}\n--- expected:\n{}--- actual:\n{}",
                    path.display(),
                    case.expected,
                    actual
                ));
            }
        }
    }
    assert!(paths.len() >= 10, "expected the cases under tests/data");
    assert!(
        failed.is_empty(),
        "{} case(s) differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failed.len(),
        failed.join("\n")
    );
}
