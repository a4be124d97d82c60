//! The Salt side: runs the Salt baseline script (`salt-baseline.sh N`) and reads its
//! `name value unit` lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// Runs the baseline script; returns figure name → value (in the script's units).
pub fn run(script: &Path, n: usize, raw_out: Option<&Path>) -> anyhow::Result<BTreeMap<String, f64>> {
    eprintln!("running {} {n} (installs Salt into a temp venv; takes minutes)", script.display());
    let out = Command::new("bash")
        .arg(script)
        .arg(n.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    ensure!(out.status.success(), "{} failed", script.display());
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(path) = raw_out {
        std::fs::write(path, text.as_bytes()).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(parse(&text))
}

/// Reads `name value unit` lines; skips comments, the header and anything unparseable.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, value) = (w.next()?, w.next()?.parse().ok()?);
            Some((name.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_scripts_table() {
        let t = "# salt 3008\nfigure value unit\ntest_ping_median        4.400  s\nbad line\n";
        let m = super::parse(t);
        assert_eq!(m.len(), 1);
        assert_eq!(m["test_ping_median"], 4.4);
    }
}
