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

pub struct Decoys {
    pub touches: Receiver<Touch>,
}

/// Listen on every port (IPv4 and IPv6: one dual-stack socket, or one per
/// family where the host has net.ipv6.bindv6only set).
pub fn listen(ports: &[u16]) -> Result<Decoys, String> {
    let (tx, rx) = channel();
    for &port in ports {
        let in_use = |e: io::Error| {
            if e.kind() == io::ErrorKind::AddrInUse {
                format!("decoy port {port} is in use by another listener (ss -ltnp 'sport = :{port}'); fix: remove it from [capture] decoy_ports")
            } else if e.kind() == io::ErrorKind::PermissionDenied {
                format!("cannot listen on decoy port {port}: {e}; fix: run as root (CAP_NET_BIND_SERVICE below 1024)")
            } else {
                format!("cannot listen on decoy port {port}: {e}")
            }
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
                .map_err(|e| format!("decoy listener thread: {e}"))?;
        }
    }
    Ok(Decoys { touches: rx })
}
