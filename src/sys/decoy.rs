//! Decoy listeners: TCP ports capture opens so that scanners find them
//! open. The kernel completes each handshake (a bare SYN earns only its
//! SYN-ACK, as any open port gives); a source that completes one cannot be
//! forged, so each accepted connection is handed to the capture loop, with
//! the time it was accepted, and closed at once. Nothing is read or sent.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::mpsc::{channel, Receiver};

/// A completed handshake: the peer, the decoy port, when (µs).
pub type Touch = (IpAddr, u16, u64);

/// Why the decoys could not be set up (capture does not start without them).
#[derive(Debug, thiserror::Error)]
pub enum DecoyError {
    #[error("decoy port {port} is in use by another listener (ss -ltnp 'sport = :{port}'); fix: remove it from [capture] decoy_ports")]
    InUse { port: u16 },
    #[error("cannot listen on decoy port {port}: {err}; fix: run as root (CAP_NET_BIND_SERVICE below 1024)")]
    Denied { port: u16, err: io::Error },
    #[error("cannot listen on decoy port {port}: {err}")]
    Listen { port: u16, err: io::Error },
    #[error("decoy listener thread: {0}")]
    Thread(io::Error),
}

pub struct Decoys {
    pub touches: Receiver<Touch>,
}

/// Listen on every port (IPv4 and IPv6: one dual-stack socket, or one per
/// family where the host has net.ipv6.bindv6only set).
pub fn listen(ports: &[u16]) -> Result<Decoys, DecoyError> {
    let (tx, rx) = channel();
    for &port in ports {
        let in_use = |err: io::Error| match err.kind() {
            io::ErrorKind::AddrInUse => DecoyError::InUse { port },
            io::ErrorKind::PermissionDenied => DecoyError::Denied { port, err },
            _ => DecoyError::Listen { port, err },
        };
        let mut listeners =
            vec![
                TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
                    .map_err(in_use)?,
            ];
        // Dual-stack unless bindv6only: then IPv4 needs a socket of its own.
        if std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
            .map(|v| v.trim() == "1")
            .unwrap_or(false)
        {
            listeners.push(
                TcpListener::bind(SocketAddr::new(
                    std::net::Ipv4Addr::UNSPECIFIED.into(),
                    port,
                ))
                .map_err(in_use)?,
            );
        }
        for l in listeners {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("decoy-{port}"))
                .spawn(move || loop {
                    match l.accept() {
                        Ok((conn, peer)) => {
                            let at = super::host::now_micros();
                            drop(conn);
                            let ip = match peer.ip() {
                                IpAddr::V6(v6) => v6
                                    .to_ipv4_mapped()
                                    .map(IpAddr::V4)
                                    .unwrap_or(IpAddr::V6(v6)),
                                v4 => v4,
                            };
                            if tx.send((ip, port, at)).is_err() {
                                return;
                            }
                        }
                        // A peer gone before accept (ECONNABORTED), or out
                        // of descriptors for a moment: keep listening.
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    }
                })
                .map_err(DecoyError::Thread)?;
        }
    }
    Ok(Decoys { touches: rx })
}
