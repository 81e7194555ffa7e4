//! Local file backend: `<dir>/<env>.state.json`, written atomically (temp
//! file, fsync, rename, fsync of the folder), and `<dir>/<env>.lock` created
//! exclusively, naming its holder.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Backend, LockHandle, LockInfo, StateError};

pub struct LocalBackend {
    dir: PathBuf,
    env: String,
}

impl LocalBackend {
    pub fn new(dir: PathBuf, env: &str) -> Self {
        Self {
            dir,
            env: env.to_owned(),
        }
    }
    fn state_path(&self) -> PathBuf {
        self.dir.join(format!("{}.state.json", self.env))
    }
    fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.env))
    }
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn read_lock(&self) -> Result<Option<LockInfo>, StateError> {
        let p = self.lock_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StateError::Corrupt {
                    what: p.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(&p)(e)),
        }
    }
}

/// `pid`'s state letter and start time (clock ticks since boot), from /proc.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; field 22 (starttime) is fields[19].
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// When `pid` started, for telling a holder from a process that reused its pid.
pub fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// A lock held by a dead process on this host can be taken over safely. A
/// zombie (exited, not yet reaped: PID 1 in containers often never reaps) is
/// dead, and so is a live process that only reused the holder's pid.
fn holder_is_dead(info: &LockInfo) -> bool {
    let here = gethostname::gethostname().to_string_lossy().into_owned();
    if info.host != here {
        return false;
    }
    match proc_stat(info.pid) {
        Some(('Z' | 'X', _)) => true,
        Some((_, start)) => info.pid_start.is_some_and(|s| s != start),
        None => {
            let Ok(pid) = libc::pid_t::try_from(info.pid) else {
                return false;
            };
            // No /proc entry: ask the kernel. SAFETY: signal 0 only checks existence.
            let rc = unsafe { libc::kill(pid, 0) };
            rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
    }
}

struct LocalLock {
    info: LockInfo,
    path: PathBuf,
}

#[async_trait]
impl LockHandle for LocalLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
    fn check(&self) -> Result<(), StateError> {
        Ok(())
    }
    async fn release(self: Box<Self>) -> Result<(), StateError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LocalBackend::io(&self.path)(e))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn describe(&self) -> String {
        format!("local {}", self.state_path().display())
    }

    async fn acquire(&self, operation: &str) -> Result<Box<dyn LockHandle>, StateError> {
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.lock_path();
        let info = LockInfo::new(operation, None);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let bytes =
                        serde_json::to_vec_pretty(&info).map_err(|e| StateError::Corrupt {
                            what: "lock".into(),
                            message: e.to_string(),
                        })?;
                    f.write_all(&bytes)
                        .and_then(|()| f.sync_all())
                        .map_err(Self::io(&path))?;
                    return Ok(Box::new(LocalLock { info, path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held = self.read_lock()?;
                    match held {
                        Some(h) if holder_is_dead(&h) => {
                            tracing::warn!(pid = h.pid, operation = %h.operation, "taking over the lock of a process that no longer runs");
                            std::fs::remove_file(&path).map_err(Self::io(&path))?;
                        }
                        Some(h) => {
                            return Err(StateError::Locked {
                                env: self.env.clone(),
                                info: Box::new(h),
                            });
                        }
                        None => {} // released meanwhile: try again
                    }
                }
                Err(e) => return Err(Self::io(&path)(e)),
            }
        }
        match self.read_lock()? {
            Some(h) => Err(StateError::Locked {
                env: self.env.clone(),
                info: Box::new(h),
            }),
            None => Err(StateError::Io {
                path,
                source: std::io::Error::other("lock file keeps changing"),
            }),
        }
    }

    async fn read(&self) -> Result<Option<Vec<u8>>, StateError> {
        let p = self.state_path();
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(&p)(e)),
        }
    }

    async fn write(&self, bytes: &[u8], _lock: &dyn LockHandle) -> Result<(), StateError> {
        let path = self.state_path();
        let tmp = self.dir.join(format!(
            ".{}.state.json.tmp-{}",
            self.env,
            std::process::id()
        ));
        {
            let mut f = std::fs::File::create(&tmp).map_err(Self::io(&tmp))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(Self::io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        // The rename is durable only once the folder entry is on disk.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io(&self.dir))
    }

    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        self.read_lock()
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        match self.read_lock()? {
            Some(h) if h.id == id => {
                let p = self.lock_path();
                std::fs::remove_file(&p).map_err(Self::io(&p))?;
                Ok(h)
            }
            other => Err(StateError::LockMismatch {
                env: self.env.clone(),
                id: id.into(),
                current: other.map(|h| h.id),
            }),
        }
    }

    async fn list(&self) -> Result<Vec<String>, StateError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut v: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".state.json"))
                    .map(str::to_owned)
            })
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lock_excludes_and_releases() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path().to_path_buf(), "t");
        let l = b.acquire("up").await.unwrap();
        let e = b.acquire("plan").await.err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("locked by") && msg.contains(&l.info().id),
            "{msg}"
        );
        l.release().await.unwrap();
        b.acquire("plan").await.unwrap().release().await.unwrap();
    }

    #[tokio::test]
    async fn dead_holder_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path().to_path_buf(), "t");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut info = LockInfo::new("up", None);
        info.pid = pid;
        std::fs::write(b.lock_path(), serde_json::to_vec(&info).unwrap()).unwrap();
        b.acquire("up").await.unwrap().release().await.unwrap();
    }

    #[tokio::test]
    async fn zombie_and_reused_pid_holders_are_dead() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path().to_path_buf(), "t");
        // A child that exits and is not waited for stays a zombie of this test.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        while proc_stat(pid).map(|(s, _)| s) != Some('Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut info = LockInfo::new("up", None);
        info.pid = pid;
        std::fs::write(b.lock_path(), serde_json::to_vec(&info).unwrap()).unwrap();
        b.acquire("up").await.unwrap().release().await.unwrap();
        child.wait().unwrap();

        // A live process whose start time is not the holder's: the pid was reused.
        let mut info = LockInfo::new("up", None);
        info.pid_start = info.pid_start.map(|s| s + 1);
        std::fs::write(b.lock_path(), serde_json::to_vec(&info).unwrap()).unwrap();
        b.acquire("up").await.unwrap().release().await.unwrap();

        // The live holder itself (this process) keeps its lock.
        let info = LockInfo::new("up", None);
        std::fs::write(b.lock_path(), serde_json::to_vec(&info).unwrap()).unwrap();
        assert!(matches!(
            b.acquire("up").await,
            Err(StateError::Locked { .. })
        ));
    }

    #[tokio::test]
    async fn force_unlock_needs_the_id() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path().to_path_buf(), "t");
        let l = b.acquire("up").await.unwrap();
        assert!(b.force_unlock("nope").await.is_err());
        assert_eq!(b.force_unlock(&l.info().id).await.unwrap().id, l.info().id);
        assert!(b.lock_info().await.unwrap().is_none());
    }
}
