//! A local port forwarded through a bastion to a host behind it (`ssh -L`),
//! for clients that speak TCP themselves (the Kubernetes API client reaching a
//! private control plane): every connection accepted on 127.0.0.1 gets its
//! own direct-tcpip channel on the bastion's shared session. The forward
//! lives until it is dropped; TLS runs end to end through it.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::error::SshError;
use super::jump::Tunnel;
use super::pool::{Ssh, Target};

pub struct Forward {
    /// Where clients connect (`127.0.0.1:<port>`).
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Ssh {
    /// Forward a local port to `host:port` as `via` (a bastion) sees it.
    pub async fn forward(
        self: &Arc<Self>,
        via: &Target,
        host: &str,
        port: u16,
    ) -> Result<Forward, SshError> {
        let (ssh, via, host) = (self.clone(), via.clone(), host.to_owned());
        let label = via.label();
        tokio::task::spawn_blocking(move || ssh.forward_blocking(&via, host, port))
            .await
            .unwrap_or_else(|e| {
                Err(SshError::Connect {
                    target: label,
                    tried: "a local forward".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    fn forward_blocking(&self, via: &Target, host: String, port: u16) -> Result<Forward, SshError> {
        let bastion = self.bastion(via)?;
        let local_err = |source| SshError::Connect {
            target: format!("{host}:{port} via {}", via.label()),
            tried: "a listening socket on 127.0.0.1".into(),
            source,
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(local_err)?;
        let local = listener.local_addr().map_err(local_err)?;
        listener.set_nonblocking(true).map_err(local_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let timeout = self.timeout();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (bastion, host) = (bastion.clone(), host.clone());
                        std::thread::spawn(move || {
                            match Tunnel::open(bastion, &host, port, timeout) {
                                Ok((remote, tunnel)) => {
                                    relay(client, remote);
                                    drop(tunnel);
                                }
                                Err(e) => tracing::warn!("forward to {host}:{port}: {e}"),
                            }
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        tracing::warn!("forward on {local}: {e}");
                        break;
                    }
                }
            }
        });
        tracing::debug!(%local, "forwarding to {}:{port} through {}", via.address, via.label());
        Ok(Forward { local, stop })
    }
}

/// Copy both ways until either side closes.
fn relay(client: TcpStream, remote: UnixStream) {
    let _ = client.set_nonblocking(false);
    let (Ok(mut c2), Ok(mut r2)) = (client.try_clone(), remote.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut r2);
        let _ = r2.shutdown(Shutdown::Write);
    });
    let (mut c, mut r) = (client, remote);
    let _ = std::io::copy(&mut r, &mut c);
    let _ = c.shutdown(Shutdown::Both);
    let _ = up.join();
}
