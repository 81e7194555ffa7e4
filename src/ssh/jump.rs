//! Jumping through a bastion: a direct-tcpip channel on the bastion's one
//! shared session, bridged to a socket pair so the inner session has a file
//! descriptor (libssh2 needs one). The bastion session is non-blocking: a
//! blocking read would hold its lock and starve every other tunnel's writes.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::ErrorCode;

use super::conn::{Conn, EAGAIN};
use super::error::SshError;

pub(super) struct Tunnel {
    stop: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
    }
}

impl Tunnel {
    /// A stream to `host:port` as seen from the bastion.
    pub fn open(
        bastion: Arc<Conn>,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(UnixStream, Tunnel), SshError> {
        let start = Instant::now();
        let opening = bastion.opening.lock().unwrap_or_else(|p| p.into_inner());
        let mut ch = loop {
            match bastion.sess.channel_direct_tcpip(host, port, None) {
                Ok(ch) => break ch,
                Err(e) if e.code() == ErrorCode::Session(EAGAIN) && start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    return Err(SshError::Connect {
                        target: format!("{host}:{port} via {}", bastion.label),
                        tried: "a direct-tcpip channel through the bastion".into(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        };
        drop(opening);
        let (inner, mut outer) = UnixStream::pair().map_err(|source| SshError::Connect {
            target: format!("{host}:{port}"),
            tried: "a local socket pair".into(),
            source,
        })?;
        let _ = outer.set_nonblocking(true);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let pump = std::thread::spawn(move || {
            let mut down: Vec<u8> = Vec::new(); // bastion -> inner session
            let mut up: Vec<u8> = Vec::new(); // inner session -> bastion
            let mut buf = vec![0u8; 64 * 1024];
            let mut outer_eof = false;
            while !flag.load(Ordering::Relaxed) {
                let mut progress = false;
                if down.is_empty() {
                    match ch.read(&mut buf) {
                        Ok(0) if ch.eof() => break,
                        Ok(n) => {
                            down.extend_from_slice(&buf[..n]);
                            progress |= n > 0;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                if !down.is_empty() {
                    match outer.write(&down) {
                        Ok(n) => {
                            down.drain(..n);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                if up.is_empty() && !outer_eof {
                    match outer.read(&mut buf) {
                        Ok(0) => outer_eof = true,
                        Ok(n) => {
                            up.extend_from_slice(&buf[..n]);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                if !up.is_empty() {
                    match ch.write(&up) {
                        Ok(n) => {
                            up.drain(..n);
                            progress |= n > 0;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                if outer_eof && up.is_empty() {
                    break;
                }
                if !progress {
                    wait_readable(&[outer.as_raw_fd(), bastion.fd], 5);
                }
            }
            // Best effort: the bastion may already be gone.
            let _ = ch.close();
        });
        Ok((
            inner,
            Tunnel {
                stop,
                pump: Some(pump),
            },
        ))
    }
}

/// Sleep until one of `fds` has data or `ms` pass.
fn wait_readable(fds: &[i32], ms: i32) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of pollfd for the duration of the call.
    unsafe {
        libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms);
    }
}
