//! A daemon's output file: `DIR/daemons/<name>.log`, rotated by size.
//!
//! One writer thread per daemon owns the file, so a slow disk never holds up the minion's
//! runtime. It is fed chunks by the readers of each of the daemon's processes (stdout and
//! stderr share one pipe, so their order is kept) and notes by the supervisor (`[drover]
//! started pid 42`), through a bounded queue: a daemon that writes faster than its log can
//! be written waits on its pipe, as it would on a terminal, instead of the minion buffering
//! without end. When a write would take the file past `max_bytes` it is renamed
//! `<name>.log.1` (`.1` → `.2` ... up to `keep`) and a new one begins. Writes are plain
//! appends (no fsync), which keep the file exactly up to date for [`tail`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::warn;

/// Size-based rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before it would grow past this.
    pub max_bytes: u64,
    /// How many rotated files are kept (`.log.1` .. `.log.<keep>`).
    pub keep: u32,
}

impl Default for Rotation {
    /// 10 MiB, 3 old files.
    fn default() -> Self {
        Self { max_bytes: 10 << 20, keep: 3 }
    }
}

/// How many chunks (of up to 16 KiB each) may wait for a log's writer.
const QUEUE: usize = 64;

/// Where a daemon's output goes; cheap to clone. The writer stops once every clone is gone.
#[derive(Clone, Debug)]
pub struct LogSink(mpsc::Sender<Vec<u8>>);

impl LogSink {
    /// Starts the writer thread of `path`. If no thread can be started, the output is
    /// dropped (and that is logged).
    pub fn open(path: PathBuf, rotation: Rotation) -> LogSink {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let name = format!("log {}", path.file_name().unwrap_or_default().to_string_lossy());
        let shown = path.display().to_string();
        let writer = move || {
            let mut log = LogFile { path, rotation, file: None, size: 0, warned: false };
            while let Some(chunk) = rx.blocking_recv() {
                log.write(&chunk);
            }
        };
        if let Err(e) = std::thread::Builder::new().name(name).stack_size(64 << 10).spawn(writer) {
            warn!(path = %shown, cause = %e, "cannot start a log writer; this daemon's output is dropped");
        }
        LogSink(tx)
    }

    /// Output of the daemon, as read: waits while the writer is [`QUEUE`] chunks behind.
    pub async fn write(&self, chunk: Vec<u8>) {
        let _ = self.0.send(chunk).await;
    }

    /// A line from the supervisor itself, marked `[drover]`. Never waits: when the writer
    /// is that far behind, the line is queued by a task of its own. Call it on the runtime.
    pub fn note(&self, line: &str) {
        let line = format!("[drover] {line}\n").into_bytes();
        if let Err(mpsc::error::TrySendError::Full(line)) = self.0.try_send(line) {
            let tx = self.0.clone();
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
        }
    }
}

struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    size: u64,
    warned: bool,
}

impl LogFile {
    fn write(&mut self, chunk: &[u8]) {
        if let Err(e) = self.try_write(chunk) {
            // once per failure streak: a full disk must not flood the minion's own log
            if !self.warned {
                warn!(path = %self.path.display(), cause = %e, "cannot write daemon output; dropping it");
                self.warned = true;
            }
            self.file = None;
        } else {
            self.warned = false;
        }
    }

    fn try_write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        if self.size > 0 && self.size + chunk.len() as u64 > self.rotation.max_bytes {
            self.file = None;
            rotate(&self.path, self.rotation.keep)?;
            self.file = Some(open_append(&self.path)?);
            self.size = 0;
        }
        if let Some(file) = &mut self.file {
            file.write_all(chunk)?;
            self.size += chunk.len() as u64;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(wire::private::FILE_MODE).open(path)
}

/// `<path>.<n>` for n ≥ 1.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `.log.<keep-1>` → `.log.<keep>`, ..., `.log` → `.log.1` (the oldest is overwritten).
fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    if keep == 0 {
        return fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        match fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(path, rotated(path, 1))
}

/// The last `lines` lines of the log at `path`, reaching into rotated files when the
/// current one has fewer. A missing file is an empty log.
pub fn tail(path: &Path, lines: usize, keep: u32) -> io::Result<String> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut wanted = lines;
    for n in 0..=keep {
        if wanted == 0 {
            break;
        }
        let file = if n == 0 { path.to_path_buf() } else { rotated(path, n) };
        let (text, found) = match last_lines(&file, wanted) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        };
        wanted -= found;
        parts.push(text);
    }
    parts.reverse();
    let text: Vec<u8> = parts.concat();
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// The last `n` lines of a file (each ending in a newline, but perhaps the very last), read
/// backwards in blocks; and how many lines that is.
fn last_lines(path: &Path, n: usize) -> io::Result<(Vec<u8>, usize)> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // newlines that start a kept line: all but a final one closing the last line
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let newlines = body.iter().filter(|&&b| b == b'\n').count();
        if newlines >= n || pos == 0 {
            let lines = if pos == 0 && buf.is_empty() { 0 } else { (newlines + 1).min(n) };
            let start = if newlines >= n {
                // just after the n-th newline from the end of the body
                body.iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, b)| **b == b'\n')
                    .nth(n - 1)
                    .map_or(0, |(i, _)| i + 1)
            } else {
                0
            };
            let mut kept = buf.split_off(start);
            if !kept.is_empty() && !kept.ends_with(b"\n") {
                kept.push(b'\n');
            }
            return Ok((kept, lines));
        }
        let step = BLOCK.min(pos);
        pos -= step;
        file.seek(SeekFrom::Start(pos))?;
        let mut block = vec![0u8; step as usize];
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_lines_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        assert_eq!(tail(&path, 5, 3).unwrap(), "");
        fs::write(rotated(&path, 1), "a\nb\nc\n").unwrap();
        fs::write(&path, "d\ne").unwrap();
        assert_eq!(tail(&path, 1, 3).unwrap(), "e\n");
        assert_eq!(tail(&path, 2, 3).unwrap(), "d\ne\n");
        assert_eq!(tail(&path, 4, 3).unwrap(), "b\nc\nd\ne\n");
        assert_eq!(tail(&path, 50, 3).unwrap(), "a\nb\nc\nd\ne\n");
        assert_eq!(tail(&path, 50, 0).unwrap(), "d\ne\n");
        assert_eq!(tail(&path, 0, 3).unwrap(), "");
    }

    #[test]
    fn long_files_are_read_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let text: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, &text).unwrap();
        assert_eq!(tail(&path, 3, 3).unwrap(), "line 49997\nline 49998\nline 49999\n");
        let all = tail(&path, 100_000, 3).unwrap();
        assert_eq!(all, text);
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let mut log = LogFile {
            path: path.clone(),
            rotation: Rotation { max_bytes: 10, keep: 2 },
            file: None,
            size: 0,
            warned: false,
        };
        for chunk in ["0123456\n", "abcdef\n", "ABCDEF\n", "xyz\n"] {
            log.write(chunk.as_bytes());
        }
        // every write but the first would pass 10 bytes: the first chunk was rotated away
        assert_eq!(fs::read_to_string(&path).unwrap(), "xyz\n");
        assert_eq!(fs::read_to_string(rotated(&path, 1)).unwrap(), "ABCDEF\n");
        assert_eq!(fs::read_to_string(rotated(&path, 2)).unwrap(), "abcdef\n");
        assert!(!rotated(&path, 3).exists());
    }
}
