//! `file.*` execution functions: read, write, look at and edit one file, as Salt's do.
//!
//! Every path must be absolute (a minion's working directory is nothing a caller can see).
//! What goes wrong is a failed return naming the path and the cause: a missing file, a
//! directory where a file was expected, text that is not UTF-8. They run on a blocking
//! thread (see [`super::Handler::Blocking`]).

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User};
use regex::RegexBuilder;
use serde_json::json;
use sha2::Digest;
use similar::TextDiff;
use wire::msg::MAX_OUTPUT;

use super::{Call, Outcome, arity, boolean, known_kwargs, scalar_string};

/// Files larger than this are not read whole (by `file.read`, `file.replace`).
const MAX_READ: u64 = MAX_OUTPUT as u64;
/// `file.replace`'s diff is cut short past this long.
const DIFF_TIMEOUT: Duration = Duration::from_secs(1);

/// The first argument, checked to be an absolute path; then the function's own checks.
fn path_arg(
    call: &Call,
    args: std::ops::RangeInclusive<usize>,
    kwargs: &[&str],
    usage: &str,
) -> Result<PathBuf, Outcome> {
    arity(call, args, usage)?;
    known_kwargs(call, kwargs, usage)?;
    match scalar_string(&call.args[0]) {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(p) => {
            Err(Outcome::fail(format!("{} expects an absolute path, got '{p}'; usage: {usage}", call.fun)))
        }
        None => {
            Err(Outcome::fail(format!("{} expects a path, got {}; usage: {usage}", call.fun, call.args[0])))
        }
    }
}

/// "file.read: cannot read /etc/x: No such file or directory (os error 2)"
fn io_fail(call: &Call, what: &str, path: &Path, e: &io::Error) -> Outcome {
    Outcome::fail(format!("{}: cannot {what} {}: {e}", call.fun, path.display()))
}

/// The metadata of a regular file at `path` (a symlink is followed), else why not.
fn regular_file(call: &Call, path: &Path) -> Result<Metadata, Outcome> {
    let meta = fs::metadata(path).map_err(|e| io_fail(call, "open", path, &e))?;
    if meta.is_file() {
        Ok(meta)
    } else {
        Err(Outcome::fail(format!("{}: {} is {}, not a file", call.fun, path.display(), kind(&meta))))
    }
}

/// The text of the regular file `path`: at most [`MAX_READ`] bytes, valid UTF-8.
fn read_text(call: &Call, path: &Path) -> Result<String, Outcome> {
    let meta = regular_file(call, path)?;
    if meta.len() > MAX_READ {
        return Err(Outcome::fail(format!(
            "{}: {} is {} bytes, more than {} reads (1 MiB); use cmd.run with {}",
            call.fun,
            path.display(),
            meta.len(),
            call.fun,
            if call.fun == "file.replace" { "sed -i" } else { "head or grep" }
        )));
    }
    let bytes = fs::read(path).map_err(|e| io_fail(call, "read", path, &e))?;
    String::from_utf8(bytes).map_err(|e| {
        Outcome::fail(format!(
            "{}: {} is not UTF-8 text (invalid byte at offset {}); file.get_hash reads any file",
            call.fun,
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// `file.read <path>` → the file's text.
pub fn read(call: &Call) -> Outcome {
    let path = match path_arg(call, 1..=1, &[], "file.read <path>") {
        Ok(path) => path,
        Err(o) => return o,
    };
    read_text(call, &path).map_or_else(|o| o, Outcome::ok)
}

/// `file.write <path> <line>...` → writes the lines, each ended by a newline, over the
/// file (Salt's `file.write`): "Wrote 2 lines to "/etc/x"". An existing file keeps its
/// mode and owner; a new one is created with the minion's umask.
pub fn write(call: &Call) -> Outcome {
    let usage = "file.write <path> <line>...";
    let path = match path_arg(call, 1..=usize::MAX, &[], usage) {
        Ok(path) => path,
        Err(o) => return o,
    };
    let mut lines = Vec::with_capacity(call.args.len() - 1);
    for arg in &call.args[1..] {
        match scalar_string(arg) {
            Some(line) => lines.push(line),
            None => return Outcome::fail(format!("file.write writes strings, got {arg}; usage: {usage}")),
        }
    }
    match fs::metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Outcome::fail(format!("file.write: {} is {}, not a file", path.display(), kind(&meta)));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.is_dir()) {
                return Outcome::fail(format!(
                    "file.write: directory {} does not exist; create it first (file.directory state, or cmd.run 'mkdir -p …')",
                    parent.display()
                ));
            }
        }
        Err(e) => return io_fail(call, "inspect", &path, &e),
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    match fs::write(&path, text) {
        Ok(()) => Outcome::ok(format!("Wrote {} lines to \"{}\"", lines.len(), path.display())),
        Err(e) => io_fail(call, "write", &path, &e),
    }
}

/// `file.exists <path>` → whether anything is there (a symlink is followed, as Salt does).
pub fn exists(call: &Call) -> Outcome {
    match path_arg(call, 1..=1, &[], "file.exists <path>") {
        Ok(path) => Outcome::ok(path.exists()),
        Err(o) => o,
    }
}

/// `file.stats <path>` → the file's metadata, Salt's keys (`sum` left out: see
/// `file.get_hash`).
pub fn stats(call: &Call) -> Outcome {
    let path = match path_arg(call, 1..=1, &[], "file.stats <path>") {
        Ok(path) => path,
        Err(o) => return o,
    };
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) => return io_fail(call, "inspect", &path, &e),
    };
    let user = User::from_uid(Uid::from_raw(meta.uid())).ok().flatten().map(|u| u.name);
    let group = Group::from_gid(Gid::from_raw(meta.gid())).ok().flatten().map(|g| g.name);
    let seconds = |s: i64, ns: i64| s as f64 + ns as f64 / 1e9;
    let target = fs::canonicalize(&path).map(|p| p.display().to_string()).ok();
    Outcome::ok(json!({
        "inode": meta.ino(),
        "uid": meta.uid(),
        "gid": meta.gid(),
        "user": user,
        "group": group,
        "mode": format!("{:04o}", meta.mode() & 0o7777),
        "size": meta.size(),
        "atime": seconds(meta.atime(), meta.atime_nsec()),
        "mtime": seconds(meta.mtime(), meta.mtime_nsec()),
        "ctime": seconds(meta.ctime(), meta.ctime_nsec()),
        "type": type_name(&meta),
        "target": target,
    }))
}

/// `file.get_hash <path> [form=sha256]` → the hex digest of the file's bytes.
pub fn get_hash(call: &Call) -> Outcome {
    let usage = "file.get_hash <path> [form=sha224|sha256|sha384|sha512]";
    let path = match path_arg(call, 1..=1, &["form"], usage) {
        Ok(path) => path,
        Err(o) => return o,
    };
    let form = call.kwargs.get("form").and_then(scalar_string).unwrap_or_else(|| "sha256".into());
    let digest = match form.as_str() {
        "sha224" => hash::<sha2::Sha224>(call, &path),
        "sha256" => hash::<sha2::Sha256>(call, &path),
        "sha384" => hash::<sha2::Sha384>(call, &path),
        "sha512" => hash::<sha2::Sha512>(call, &path),
        other => {
            return Outcome::fail(format!(
                "file.get_hash: form={other} is not one this minion computes (sha224, sha256, sha384, sha512); usage: {usage}"
            ));
        }
    };
    digest.map_or_else(|o| o, Outcome::ok)
}

fn hash<D: Digest>(call: &Call, path: &Path) -> Result<String, Outcome> {
    regular_file(call, path)?;
    let mut file = File::open(path).map_err(|e| io_fail(call, "open", path, &e))?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_fail(call, "read", path, &e)),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `file.contains <path> <text>` → whether the file holds the text (any bytes of the file;
/// the text is plain, not a pattern).
pub fn contains(call: &Call) -> Outcome {
    let usage = "file.contains <path> <text>";
    let path = match path_arg(call, 2..=2, &[], usage) {
        Ok(path) => path,
        Err(o) => return o,
    };
    let Some(text) = scalar_string(&call.args[1]) else {
        return Outcome::fail(format!(
            "file.contains looks for a string, got {}; usage: {usage}",
            call.args[1]
        ));
    };
    if let Err(o) = regular_file(call, &path) {
        return o;
    }
    match fs::read(&path) {
        Ok(bytes) => {
            let needle = text.as_bytes();
            Outcome::ok(needle.is_empty() || bytes.windows(needle.len()).any(|w| w == needle))
        }
        Err(e) => io_fail(call, "read", &path, &e),
    }
}

/// `file.replace <path> <pattern> <repl> [count=0] [dry_run=false] [show_changes=true]`:
/// Salt's, with the `regex` crate's syntax for the pattern and Python's for the
/// replacement (`\1`, `\g<name>`). `^` and `$` match at line ends (Salt's default flag
/// `MULTILINE`). Returns the unified diff (`""` when nothing matched), or with
/// `show_changes=false` whether the file changed. The file is rewritten in place, so it
/// keeps its inode, mode and owner.
pub fn replace(call: &Call) -> Outcome {
    let usage = "file.replace <path> <pattern> <repl> [count=N] [dry_run=true] [show_changes=false]";
    let path = match path_arg(call, 3..=3, &["count", "dry_run", "show_changes"], usage) {
        Ok(path) => path,
        Err(o) => return o,
    };
    let fail = |what: String| Outcome::fail(format!("file.replace: {what}; usage: {usage}"));
    let (Some(pattern), Some(repl)) = (scalar_string(&call.args[1]), scalar_string(&call.args[2])) else {
        return fail("the pattern and the replacement are strings".into());
    };
    let flag = |name: &str, default: bool| match call.kwargs.get(name) {
        None => Ok(default),
        Some(v) => boolean(v).ok_or_else(|| fail(format!("{name}= takes true or false, got {v}"))),
    };
    let (dry_run, show_changes) = match (flag("dry_run", false), flag("show_changes", true)) {
        (Ok(d), Ok(s)) => (d, s),
        (Err(o), _) | (_, Err(o)) => return o,
    };
    let count = match call.kwargs.get("count") {
        None => 0,
        Some(v) => match v.as_u64().or_else(|| scalar_string(v)?.parse().ok()) {
            Some(n) => n as usize,
            None => return fail(format!("count= takes a number of replacements (0: all), got {v}")),
        },
    };
    let regex = match RegexBuilder::new(&pattern).multi_line(true).build() {
        Ok(regex) => regex,
        Err(e) => return fail(format!("pattern {pattern:?} is not a valid regular expression: {e}")),
    };
    let old = match read_text(call, &path) {
        Ok(text) => text,
        Err(o) => return o,
    };
    let new = regex.replacen(&old, count, python_replacement(&repl).as_str()).into_owned();
    let changed = new != old;
    if changed
        && !dry_run
        && let Err(e) = fs::write(&path, &new)
    {
        return io_fail(call, "write", &path, &e);
    }
    if !show_changes {
        return Outcome::ok(changed);
    }
    let shown = path.display().to_string();
    let diff = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(&old, &new)
        .unified_diff()
        .header(&shown, &shown)
        .to_string();
    Outcome::ok(diff)
}

/// A replacement in Python's syntax (`\1`, `\g<1>`, `\g<name>`, `\\`, `\n`, `\t`) in the
/// `regex` crate's (`${1}`, `${name}`, `$$`), so states and calls written for Salt work.
fn python_replacement(repl: &str) -> String {
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) =
                        chars.peek().copied().filter(|d| d.is_ascii_digit() && group.len() < 2)
                    {
                        group.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') => {
                    let rest: String = chars.clone().skip(1).take_while(|&c| c != '>').collect();
                    let closed = chars.clone().nth(1) == Some('<') && chars.clone().skip(2).any(|c| c == '>');
                    if closed && rest.len() > 1 {
                        let name = &rest[1..];
                        out.push_str(&format!("${{{name}}}"));
                        // 'g', '<', the name, '>'
                        for _ in 0..name.chars().count() + 3 {
                            chars.next();
                        }
                    } else {
                        out.push('\\');
                    }
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                Some('n') => {
                    out.push('\n');
                    chars.next();
                }
                Some('t') => {
                    out.push('\t');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// What kind of thing `meta` is, for messages.
fn kind(meta: &Metadata) -> &'static str {
    match type_name(meta) {
        "dir" => "a directory",
        "file" => "a file",
        _ => "a special file",
    }
}

/// Salt's `type` of `file.stats`.
fn type_name(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "link"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else if t.is_fifo() {
        "pipe"
    } else if t.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::tests::run;
    use super::*;
    use serde_json::Value;

    fn p(path: &Path) -> Value {
        json!(path.display().to_string())
    }

    #[tokio::test]
    async fn write_read_exists_contains() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("motd");
        assert_eq!(run("file.exists", vec![p(&f)], &[]).await.ret, json!(false));
        let o = run("file.write", vec![p(&f), json!("hello"), json!("world")], &[]).await;
        assert_eq!(o.ret, json!(format!("Wrote 2 lines to \"{}\"", f.display())));
        assert_eq!(fs::read_to_string(&f).unwrap(), "hello\nworld\n");
        assert_eq!(run("file.exists", vec![p(&f)], &[]).await.ret, json!(true));
        assert_eq!(run("file.exists", vec![p(dir.path())], &[]).await.ret, json!(true));
        assert_eq!(run("file.read", vec![p(&f)], &[]).await.ret, json!("hello\nworld\n"));
        assert_eq!(run("file.contains", vec![p(&f), json!("lo\nwo")], &[]).await.ret, json!(true));
        assert_eq!(run("file.contains", vec![p(&f), json!("bye")], &[]).await.ret, json!(false));

        // an existing file keeps its mode
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(run("file.write", vec![p(&f), json!("x")], &[]).await.success);
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&f).unwrap(), "x\n");
    }

    #[tokio::test]
    async fn bad_paths_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let binary = dir.path().join("bin");
        fs::write(&binary, [0x66, 0xff, 0x00]).unwrap();
        let cases = [
            ("file.read", vec![json!("etc/hosts")], "file.read expects an absolute path, got 'etc/hosts'"),
            ("file.read", vec![p(&missing)], "cannot open"),
            ("file.read", vec![p(dir.path())], "is a directory, not a file"),
            ("file.read", vec![p(&binary)], "is not UTF-8 text (invalid byte at offset 1)"),
            ("file.write", vec![p(&missing.join("x")), json!("a")], "does not exist; create it first"),
            ("file.write", vec![p(dir.path()), json!("a")], "is a directory, not a file"),
            ("file.stats", vec![p(&missing)], "file.stats: cannot inspect"),
            ("file.get_hash", vec![p(&missing)], "file.get_hash: cannot open"),
            ("file.contains", vec![p(dir.path()), json!("a")], "is a directory"),
            ("file.replace", vec![p(&binary), json!("a"), json!("b")], "is not UTF-8 text"),
            ("file.exists", vec![], "file.exists takes 1 argument, got 0"),
        ];
        for (fun, args, want) in cases {
            let o = run(fun, args.clone(), &[]).await;
            assert!(!o.success, "{fun} {args:?}");
            let msg = o.ret.as_str().unwrap();
            assert!(msg.contains(want), "{fun} {args:?}: {msg}");
        }
        let big = dir.path().join("big");
        fs::write(&big, vec![b'a'; MAX_OUTPUT + 1]).unwrap();
        let o = run("file.read", vec![p(&big)], &[]).await;
        assert!(
            o.ret
                .as_str()
                .unwrap()
                .ends_with("more than file.read reads (1 MiB); use cmd.run with head or grep")
        );
        let o = run("file.replace", vec![p(&big), json!("a"), json!("b")], &[]).await;
        assert!(o.ret.as_str().unwrap().ends_with("use cmd.run with sed -i"), "{}", o.ret);
        let o = run("file.get_hash", vec![p(&binary)], &[("form", json!("md5"))]).await;
        assert!(o.ret.as_str().unwrap().contains("form=md5 is not one this minion computes"));
    }

    #[tokio::test]
    async fn stats_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "abc").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        let s = run("file.stats", vec![p(&f)], &[]).await.ret;
        assert_eq!((&s["type"], &s["size"], &s["mode"]), (&json!("file"), &json!(3), &json!("0640")));
        assert_eq!(s["uid"], json!(Uid::current().as_raw()));
        assert_eq!(s["target"], p(&fs::canonicalize(&f).unwrap()));
        assert!(s["mtime"].as_f64().unwrap() > 1e9);
        assert_eq!(run("file.stats", vec![p(dir.path())], &[]).await.ret["type"], json!("dir"));

        // the well-known digests of "abc"
        let sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(run("file.get_hash", vec![p(&f)], &[]).await.ret, json!(sha256));
        let sha224 = "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7";
        assert_eq!(run("file.get_hash", vec![p(&f)], &[("form", json!("sha224"))]).await.ret, json!(sha224));
    }

    #[tokio::test]
    async fn replace_with_a_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("conf");
        fs::write(&f, "port = 80\nhost = a\n#port = 1\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let inode = fs::metadata(&f).unwrap().ino();

        // dry run: the diff, nothing written
        let args = vec![p(&f), json!(r"^port = (\d+)$"), json!(r"port = 8\1")];
        let o = run("file.replace", args.clone(), &[("dry_run", json!(true))]).await;
        assert!(o.ret.as_str().unwrap().contains("-port = 80\n+port = 880\n"), "{}", o.ret);
        assert_eq!(fs::read_to_string(&f).unwrap(), "port = 80\nhost = a\n#port = 1\n");

        let o = run("file.replace", args.clone(), &[]).await;
        assert!(o.success);
        assert!(o.ret.as_str().unwrap().starts_with(&format!("--- {}\n", f.display())));
        assert_eq!(fs::read_to_string(&f).unwrap(), "port = 880\nhost = a\n#port = 1\n");
        let meta = fs::metadata(&f).unwrap();
        assert_eq!((meta.ino(), meta.mode() & 0o777), (inode, 0o600));

        // nothing matches any more: an empty diff, or false
        let again = vec![p(&f), json!("^port = 80$"), json!("x")];
        assert_eq!(run("file.replace", again.clone(), &[]).await.ret, json!(""));
        assert_eq!(run("file.replace", again, &[("show_changes", json!(false))]).await.ret, json!(false));

        // count= and named groups; a literal $ stays literal
        let named = vec![p(&f), json!(r"(?P<k>\w+) = "), json!(r"\g<k>=$")];
        let o = run("file.replace", named, &[("count", json!(1)), ("show_changes", json!(false))]).await;
        assert_eq!(o.ret, json!(true));
        assert_eq!(fs::read_to_string(&f).unwrap(), "port=$880\nhost = a\n#port = 1\n");

        let bad = run("file.replace", vec![p(&f), json!("("), json!("")], &[]).await;
        assert!(bad.ret.as_str().unwrap().contains("is not a valid regular expression"), "{}", bad.ret);
    }

    #[test]
    fn python_replacements() {
        let cases = [
            (r"\1", "${1}"),
            (r"a\12b", "a${12}b"),
            (r"\g<name>-\g<2>", "${name}-${2}"),
            (r"$5 \\ \n", "$$5 \\ \n"),
            (r"\g", r"\g"),
            (r"\q", r"\q"),
        ];
        for (python, want) in cases {
            assert_eq!(python_replacement(python), want, "{python}");
        }
    }
}
