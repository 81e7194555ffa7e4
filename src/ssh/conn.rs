//! One authenticated libssh2 session to one machine (blocking; callers are on
//! tokio's blocking pool). Opening checks the host key against the pinned one
//! before anything is sent; commands return status, stdout and stderr.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use ssh2::{ErrorCode, MethodType, Session};

use super::error::SshError;
use super::hostkey::HostKey;
use super::jump::Tunnel;

/// libssh2's codes for "try again" (non-blocking) and "timed out".
pub(super) const EAGAIN: i32 = -37;
const ETIMEOUT: i32 = -9;

pub(super) struct Conn {
    pub sess: Session,
    /// `cp-1 (10.0.0.5 via 203.0.113.7)`, for every message about it.
    pub label: String,
    /// The socket underneath, for the tunnel pumps of a bastion.
    pub fd: RawFd,
    /// Keeps the jump channel pumping while this session lives.
    _tunnel: Option<Tunnel>,
    /// A bastion opens one channel at a time: libssh2 keeps a non-blocking
    /// open's progress in the session, so an open resumed by another thread
    /// would hand that thread the first thread's channel (to another machine).
    pub opening: std::sync::Mutex<()>,
}

pub(super) struct Open<'a> {
    pub label: String,
    pub node: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub key_files: &'a [PathBuf],
    pub agent: bool,
    pub pinned: Option<&'a HostKey>,
    pub timeout: Duration,
}

pub(super) struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Conn {
    /// Connect directly, or through `via` (a bastion session), authenticate,
    /// and return the session with the host key it presented.
    pub fn open(o: &Open, via: Option<&std::sync::Arc<Conn>>) -> Result<(Conn, HostKey), SshError> {
        let label = o.label.clone();
        let proto = |what: &str| {
            let label = label.clone();
            let what = what.to_owned();
            move |source| SshError::Protocol {
                target: label.clone(),
                what: what.clone(),
                source,
            }
        };
        let mut sess = Session::new().map_err(proto("session setup"))?;
        let (fd, tunnel) = match via {
            None => {
                let addr = (o.host, o.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| SshError::Connect {
                        target: label.clone(),
                        tried: format!("resolving {}:{}", o.host, o.port),
                        source: std::io::Error::other("no address"),
                    })?;
                let tcp = TcpStream::connect_timeout(&addr, o.timeout).map_err(|source| {
                    SshError::Connect {
                        target: label.clone(),
                        tried: format!("TCP to {addr}"),
                        source,
                    }
                })?;
                let fd = tcp.as_raw_fd();
                sess.set_tcp_stream(tcp);
                (fd, None)
            }
            Some(bastion) => {
                let (stream, tunnel) = Tunnel::open(bastion.clone(), o.host, o.port, o.timeout)?;
                let fd = stream.as_raw_fd();
                sess.set_tcp_stream(stream);
                (fd, Some(tunnel))
            }
        };
        sess.set_timeout(o.timeout.as_millis().min(u32::MAX as u128) as u32);
        if let Some(p) = o.pinned {
            // Ask for the pinned key's type first, so a host with several keys
            // presents the one we know (a different type would look like a change).
            sess.method_pref(MethodType::HostKey, p.method())
                .map_err(proto("host key preference"))?;
        }
        sess.handshake().map_err(proto("handshake"))?;
        let presented = sess
            .host_key()
            .map(|(blob, kind)| HostKey::from_blob(kind, blob))
            .ok_or_else(|| SshError::Connect {
                target: label.clone(),
                tried: "reading the host key".into(),
                source: std::io::Error::other("the server sent none"),
            })?;
        if let Some(p) = o.pinned
            && *p != presented
        {
            return Err(SshError::HostKeyMismatch {
                target: label,
                node: o.node.to_owned(),
                pinned: p.fingerprint(),
                presented: presented.fingerprint(),
            });
        }
        let mut tried = Vec::new();
        for key in o.key_files {
            tried.push(key.display().to_string());
            if sess.userauth_pubkey_file(o.user, None, key, None).is_ok() && sess.authenticated() {
                break;
            }
        }
        if !sess.authenticated() && o.agent {
            tried.push("the SSH agent".into());
            if let Ok(mut agent) = sess.agent()
                && agent.connect().is_ok()
                && agent.list_identities().is_ok()
            {
                for id in agent.identities().unwrap_or_default() {
                    if agent.userauth(o.user, &id).is_ok() {
                        break;
                    }
                }
            }
        }
        if !sess.authenticated() {
            return Err(SshError::Auth {
                target: label,
                user: o.user.to_owned(),
                tried: if tried.is_empty() {
                    "nothing: no key file and no agent".into()
                } else {
                    tried.join(", ")
                },
            });
        }
        Ok((
            Conn {
                sess,
                label,
                fd,
                _tunnel: tunnel,
                opening: std::sync::Mutex::new(()),
            },
            presented,
        ))
    }

    fn err(&self, what: &str, source: ssh2::Error) -> SshError {
        if source.code() == ErrorCode::Session(ETIMEOUT) {
            return SshError::Timeout {
                target: self.label.clone(),
                what: what.to_owned(),
                after: Duration::from_millis(self.sess.timeout() as u64),
            };
        }
        SshError::Protocol {
            target: self.label.clone(),
            what: what.to_owned(),
            source,
        }
    }

    fn io(&self, what: &str, e: std::io::Error) -> SshError {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => SshError::Timeout {
                target: self.label.clone(),
                what: what.to_owned(),
                after: Duration::from_millis(self.sess.timeout() as u64),
            },
            _ => SshError::Io {
                target: self.label.clone(),
                what: what.to_owned(),
                source: e,
            },
        }
    }

    /// Run `command` (a shell line), feeding `stdin` (a reader, streamed in
    /// 64 KiB pieces) and collecting both outputs.
    pub fn exec(
        &self,
        command: &str,
        stdin: Option<&mut dyn Read>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        self.sess
            .set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
        let mut ch = self
            .sess
            .channel_session()
            .map_err(|e| self.err("opening a channel", e))?;
        ch.exec(command)
            .map_err(|e| self.err("starting a command", e))?;
        if let Some(input) = stdin {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = input.read(&mut buf).map_err(|e| SshError::Local {
                    target: self.label.clone(),
                    path: "(upload source)".into(),
                    source: e,
                })?;
                if n == 0 {
                    break;
                }
                ch.write_all(&buf[..n])
                    .map_err(|e| self.io("sending input", e))?;
            }
            ch.send_eof().map_err(|e| self.err("ending input", e))?;
        }
        let mut stdout = Vec::new();
        ch.read_to_end(&mut stdout)
            .map_err(|e| self.io(&format!("`{command}`"), e))?;
        let mut stderr = Vec::new();
        ch.stderr()
            .read_to_end(&mut stderr)
            .map_err(|e| self.io(&format!("`{command}`"), e))?;
        ch.wait_close()
            .map_err(|e| self.err("closing a channel", e))?;
        let status = ch
            .exit_status()
            .map_err(|e| self.err("reading the exit status", e))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}
