//! A lock per thing built (a base by its content hash, an app image by its tag): an
//! exclusive `flock` on `<locks>/drover-<kind>-<hash of key>.lock`. Every master and test
//! on the machine shares one folder (`drover-locks` in the system's temp dir), so two
//! builds of one base never both run debootstrap, and two builds of one tag never race to
//! it. The kernel drops the lock when its holder ends, however it ends. The files stay
//! (removing one while another process waits on it would let a third take a new one).

use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::{ImageError, ProgressTx, Result, say};

/// Held until dropped.
pub struct Lock {
    _flock: Flock<File>,
}

/// Takes the lock named `kind` + `key`; says on `progress` when it has to wait for it.
pub async fn take(locks: &Path, kind: &str, key: &str, what: &str, progress: &ProgressTx) -> Result<Lock> {
    std::fs::create_dir_all(locks).map_err(ImageError::io(format!("create {}", locks.display())))?;
    // the key may be a tag (`coins:1.0`): a hash of it is always a good file name
    let name = format!("drover-{kind}-{}.lock", &hex::encode(Sha256::digest(key.as_bytes()))[..24]);
    let path = locks.join(name);
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io(format!("open {}", path.display())))
    };
    match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => return Ok(Lock { _flock: flock }),
        Err((_, Errno::EWOULDBLOCK)) => {}
        Err((_, e)) => return Err(ImageError::io(format!("lock {}", path.display()))(e.into())),
    }
    say(progress, format!("waiting for another build of {what} to finish"));
    let file = open()?;
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await
        .map_err(|e| ImageError::io(format!("lock {shown}"))(std::io::Error::other(e)))?
        .map(|flock| Lock { _flock: flock })
        .map_err(|(_, e)| ImageError::io(format!("lock {shown}"))(e.into()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::image::Progress;

    #[tokio::test]
    async fn a_second_taker_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let first = take(dir.path(), "base", "abc", "base:abc", &tx).await.unwrap();
        assert!(rx.try_recv().is_err(), "the first taker does not wait");
        let (dir2, tx2) = (dir.path().to_path_buf(), tx.clone());
        let second =
            tokio::spawn(async move { take(&dir2, "base", "abc", "base:abc", &tx2).await.map(|_| ()) });
        // the second says it waits, and does not finish while the first holds the lock
        let said = rx.recv().await.unwrap();
        assert_eq!(said, Progress::Phase("waiting for another build of base:abc to finish".into()));
        assert!(!second.is_finished());
        // another key is not held up
        take(dir.path(), "base", "other", "base:other", &tx).await.unwrap();
        drop(first);
        tokio::time::timeout(Duration::from_secs(60), second).await.unwrap().unwrap().unwrap();
    }
}
