//! The examples of the user reference read as it says: every `fleet.yaml` example in
//! `docs/fleet.md` (a YAML block starting with `fleet:`) parses without a problem.

use std::path::Path;

use render::FleetFile;

#[test]
fn every_fleet_example_in_the_docs_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fleet.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut examples = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().expect("a closed block");
        if !yaml.starts_with("fleet:") {
            continue;
        }
        let fleet = FleetFile::parse(yaml, |_| true)
            .unwrap_or_else(|d| panic!("{yaml}\n{}", d.iter().map(|d| format!("{d}\n")).collect::<String>()));
        assert!(!fleet.roles.is_empty(), "{yaml}");
        examples += 1;
    }
    assert!(examples >= 2, "the examples are found: {examples}");
}
