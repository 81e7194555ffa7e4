//! The async door to SSH: one cached session per machine (operations on a
//! machine run one at a time, as libssh2 holds the session lock through a
//! blocking read anyway), one shared session per bastion, a reconnect when a
//! session died (a reboot), and every command logged per host through
//! `tracing` (target `ssh`, field `host`; `-v` shows them live).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::conn::{Conn, Open};
use super::error::SshError;
use super::hostkey::HostKey;
use super::quote::q;

/// A machine to reach: its name (for messages and pinning), address, login,
/// the bastion to jump through, and the host key pinned for it (None: first
/// contact, whatever it presents is returned for pinning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub via: Option<Box<Target>>,
    pub host_key: Option<HostKey>,
}

impl Target {
    pub fn label(&self) -> String {
        match &self.via {
            Some(b) => format!("{} ({} via {})", self.node, self.address, b.address),
            None => format!("{} ({})", self.node, self.address),
        }
    }
    fn key(&self) -> String {
        match &self.via {
            Some(b) => format!(
                "{}@{}:{} via {}",
                self.user,
                self.address,
                self.port,
                b.key()
            ),
            None => format!("{}@{}:{}", self.user, self.address, self.port),
        }
    }
}

/// How to log in: private key files (tried in order), then the agent.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub key_files: Vec<PathBuf>,
    pub agent: bool,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

type Slot = Arc<Mutex<Option<Conn>>>;

pub struct Ssh {
    auth: Auth,
    timeout: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    bastions: Mutex<HashMap<String, Arc<Conn>>>,
}

impl Ssh {
    /// `timeout` bounds connecting and each command unless a call says otherwise.
    pub fn new(auth: Auth, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            auth,
            timeout,
            slots: Mutex::new(HashMap::new()),
            bastions: Mutex::new(HashMap::new()),
        })
    }

    /// The time limit of `run` (connecting and each command).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn slot(&self, t: &Target) -> Slot {
        let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(t.key()).or_default().clone()
    }

    fn open(&self, t: &Target) -> Result<(Conn, HostKey), SshError> {
        let via = match &t.via {
            Some(b) => Some(self.bastion(b)?),
            None => None,
        };
        Conn::open(
            &Open {
                label: t.label(),
                node: &t.node,
                host: &t.address,
                port: t.port,
                user: &t.user,
                key_files: &self.auth.key_files,
                agent: self.auth.agent,
                pinned: t.host_key.as_ref(),
                timeout: self.timeout,
            },
            via.as_ref(),
        )
    }

    /// The shared, non-blocking session of a bastion (tunnels only).
    pub(super) fn bastion(&self, b: &Target) -> Result<Arc<Conn>, SshError> {
        let mut m = self.bastions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(&b.key()) {
            return Ok(c.clone());
        }
        let (c, _) = Conn::open(
            &Open {
                label: b.label(),
                node: &b.node,
                host: &b.address,
                port: b.port,
                user: &b.user,
                key_files: &self.auth.key_files,
                agent: self.auth.agent,
                pinned: b.host_key.as_ref(),
                timeout: self.timeout,
            },
            None,
        )?;
        c.sess.set_blocking(false);
        let c = Arc::new(c);
        m.insert(b.key(), c.clone());
        Ok(c)
    }

    /// Forget the session to a machine that is gone (a deleted builder).
    pub fn forget(&self, t: &Target) {
        self.drop_session(t);
    }

    /// Forget every session to `t` (and its bastion's, when `t` is one).
    fn drop_session(&self, t: &Target) {
        if let Ok(mut s) = self.slot(t).lock() {
            *s = None;
        }
    }

    /// Run `f` with `t`'s session on the blocking pool, connecting (or
    /// reconnecting once, when the session died) as needed.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        t: &Target,
        f: impl Fn(&Conn) -> Result<T, SshError> + Send + Sync + 'static,
    ) -> Result<T, SshError> {
        let me = self.clone();
        let t = t.clone();
        let slot = self.slot(&t);
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            for attempt in 0..2 {
                if guard.is_none() {
                    *guard = Some(me.open(&t)?.0);
                }
                let Some(conn) = guard.as_ref() else { continue };
                match f(conn) {
                    // A dead session (rebooted machine): connect again, once.
                    Err(SshError::Protocol { .. } | SshError::Io { .. }) if attempt == 0 => {
                        *guard = None
                    }
                    other => return other,
                }
            }
            Err(SshError::Timeout {
                target: t.label(),
                what: "reconnecting".into(),
                after: me.timeout,
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(SshError::Local {
                target: "ssh".into(),
                path: String::new(),
                source: std::io::Error::other(e.to_string()),
            })
        })
    }

    /// First contact (or a check): connect and return the host key presented.
    /// With a pinned key, a different one is refused.
    pub async fn host_key(self: &Arc<Self>, t: &Target) -> Result<HostKey, SshError> {
        let me = self.clone();
        let t2 = t.clone();
        let (conn, key) = tokio::task::spawn_blocking(move || me.open(&t2))
            .await
            .map_err(|e| SshError::Local {
                target: t.label(),
                path: String::new(),
                source: std::io::Error::other(e.to_string()),
            })??;
        *self.slot(t).lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        Ok(key)
    }

    /// Wait until `t` answers again (after a reboot), up to `timeout`.
    pub async fn reconnect(
        self: &Arc<Self>,
        t: &Target,
        timeout: Duration,
    ) -> Result<(), SshError> {
        self.drop_session(t);
        let found = crate::core::wait::until(timeout, Duration::from_secs(2), || async {
            Ok::<_, SshError>(match self.host_key(t).await {
                Ok(_) => Some(()),
                Err(e @ SshError::HostKeyMismatch { .. }) | Err(e @ SshError::Auth { .. }) => {
                    return Err(e);
                }
                Err(_) => None,
            })
        })
        .await?;
        found.ok_or_else(|| SshError::Timeout {
            target: t.label(),
            what: "coming back".into(),
            after: timeout,
        })
    }

    /// `sh -c command` as root (through `sudo -n` unless logged in as root),
    /// failing on a non-zero exit.
    pub async fn run(self: &Arc<Self>, t: &Target, command: &str) -> Result<Output, SshError> {
        let out = self.try_run(t, command, self.timeout()).await?;
        if out.status != 0 {
            return Err(SshError::Command {
                target: t.label(),
                command: summary(command),
                status: out.status,
                stderr: tail(&out.stderr, &out.stdout),
            });
        }
        Ok(out)
    }

    /// Like `run`, returning the exit status instead of failing on it.
    pub async fn try_run(
        self: &Arc<Self>,
        t: &Target,
        command: &str,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        let line = as_root(&t.user, command);
        let host = t.node.clone();
        tracing::debug!(target: "ssh", host = %host, "$ {command}");
        let out = self.with(t, move |c| c.exec(&line, None, timeout)).await?;
        let out = Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for l in out.stdout.lines().chain(out.stderr.lines()) {
            tracing::debug!(target: "ssh", host = %host, "  {l}");
        }
        Ok(out)
    }

    /// Upload local file `src` (whose sha256 the caller knows) to `path`:
    /// streamed into a temporary file beside it, checked against its sha256
    /// there, then renamed over `path`, so the file is either old or new.
    pub async fn put_file(
        self: &Arc<Self>,
        t: &Target,
        path: &str,
        mode: u32,
        src: PathBuf,
        sha256: &str,
    ) -> Result<(), SshError> {
        let label = t.label();
        self.put_from(t, path, mode, sha256, move || {
            std::fs::File::open(&src)
                .map(|f| {
                    Box::new(std::io::BufReader::with_capacity(256 * 1024, f))
                        as Box<dyn Read + Send>
                })
                .map_err(|source| SshError::Local {
                    target: label.clone(),
                    path: src.display().to_string(),
                    source,
                })
        })
        .await
    }

    /// Write several small files (configuration, certificates) in one round
    /// trip, each checked and renamed into place like `put`.
    pub async fn put_all(
        self: &Arc<Self>,
        t: &Target,
        files: Vec<(String, u32, Vec<u8>)>,
    ) -> Result<(), SshError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut script = String::from("set -e\n");
        let mut stream = Vec::new();
        for (path, mode, content) in &files {
            let sha = crate::core::digest::sha256_hex(content);
            // dd with one full block reads exactly this file's bytes from the shared stdin.
            let fill = if content.is_empty() {
                ": > \"$t\"".to_owned()
            } else {
                format!(
                    "dd of=\"$t\" bs={} count=1 iflag=fullblock status=none",
                    content.len()
                )
            };
            script.push_str(&install_step(&fill, path, &sha, *mode));
            stream.extend_from_slice(content);
            tracing::debug!(target: "ssh", host = %t.node, "upload {path} ({sha})");
        }
        let line = as_root(&t.user, &script);
        let timeout = self.timeout.max(Duration::from_secs(120));
        let stream = Arc::new(stream);
        let out = self
            .with(t, move |c| {
                let mut src = std::io::Cursor::new(stream.as_ref().clone());
                c.exec(&line, Some(&mut src), timeout)
            })
            .await?;
        match out.status {
            0 => Ok(()),
            97 => {
                let (path, got) = corrupt(&out.stderr);
                let expected = files
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map_or_else(String::new, |(_, _, c)| crate::core::digest::sha256_hex(c));
                Err(SshError::Corrupt {
                    target: t.label(),
                    path,
                    expected,
                    got,
                })
            }
            status => Err(SshError::Command {
                target: t.label(),
                command: format!("upload of {} files", files.len()),
                status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }

    async fn put_from(
        self: &Arc<Self>,
        t: &Target,
        path: &str,
        mode: u32,
        sha256: &str,
        source: impl Fn() -> Result<Box<dyn Read + Send>, SshError> + Send + Sync + 'static,
    ) -> Result<(), SshError> {
        // 97: the bytes that arrived are not the bytes sent.
        let script = format!(
            "set -e; {}",
            install_step("cat > \"$t\"", path, sha256, mode)
        );
        let line = as_root(&t.user, &script);
        tracing::debug!(target: "ssh", host = %t.node, "upload {path} ({sha256})");
        let timeout = self.timeout.max(Duration::from_secs(600));
        let out = self
            .with(t, move |c| {
                let mut src = source()?;
                c.exec(&line, Some(&mut *src), timeout)
            })
            .await?;
        match out.status {
            0 => Ok(()),
            97 => Err(SshError::Corrupt {
                target: t.label(),
                path: path.to_owned(),
                expected: sha256.to_owned(),
                got: corrupt(&out.stderr).1,
            }),
            status => Err(SshError::Command {
                target: t.label(),
                command: format!("upload {path}"),
                status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }
}

/// A shell step that installs one file atomically: `fill` writes the bytes
/// into `"$t"`, a temporary file beside `path`; the bytes are checked against
/// `sha256` there (exit 97 with the path and the digest found when they
/// differ), then given `mode` and renamed over `path`. The temporary file is
/// removed on any failure.
pub fn install_step(fill: &str, path: &str, sha256: &str, mode: u32) -> String {
    let dir = path
        .rsplit_once('/')
        .map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
    format!(
        "mkdir -p {dir}; t=$(mktemp -p {dir} .provisioner.XXXXXX); trap 'rm -f \"$t\"' EXIT; \
         {fill}; got=$(sha256sum \"$t\" | cut -d' ' -f1); \
         if [ \"$got\" != {sha} ]; then echo {path} \"$got\" >&2; exit 97; fi; \
         chmod {mode:o} \"$t\"; mv -f \"$t\" {path}; trap - EXIT\n",
        dir = q(dir),
        sha = q(sha256),
        path = q(path),
    )
}

/// What `install_step` says on exit 97: (path, the digest found).
fn corrupt(stderr: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().last().unwrap_or_default();
    let (path, got) = line.rsplit_once(' ').unwrap_or((line, ""));
    (path.trim_matches('\'').to_owned(), got.to_owned())
}

fn as_root(user: &str, command: &str) -> String {
    if user == "root" {
        format!("sh -c {}", q(command))
    } else {
        format!("sudo -n sh -c {}", q(command))
    }
}

/// A command as an error names it: its first line, shortened (scripts are long).
fn summary(command: &str) -> String {
    let first = command.trim().lines().next().unwrap_or_default();
    let short: String = first.chars().take(100).collect();
    if short.len() < command.trim().len() {
        format!("{short} …")
    } else {
        short
    }
}

/// The last lines of what a failed command said, for its error.
fn tail(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
