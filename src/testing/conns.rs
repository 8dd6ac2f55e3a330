//! A recording fake of this host's established connections: answers with
//! the connections it is given (or fails, if told to) and records each
//! request's port filter.

use crate::core::conns::{Conn, Established, Via};
use crate::ports::{ConnError, Connections};

#[derive(Clone, Debug, Default)]
pub struct FakeConns {
    pub conns: Vec<Conn>,
    /// Answer every request with this error instead.
    pub fail: Option<String>,
    /// Each request's ports (None: every port).
    pub calls: Vec<Option<Vec<u16>>>,
}

impl FakeConns {
    /// Connections given as ("local addr:port", "peer addr:port").
    pub fn of(pairs: &[(&str, &str)]) -> FakeConns {
        FakeConns {
            conns: pairs
                .iter()
                .map(|(l, p)| Conn {
                    local: l.parse().expect("local socket address"),
                    peer: p.parse().expect("peer socket address"),
                })
                .collect(),
            ..FakeConns::default()
        }
    }
}

impl Connections for FakeConns {
    fn established(&mut self, ports: Option<&[u16]>) -> Result<Established, ConnError> {
        self.calls.push(ports.map(<[u16]>::to_vec));
        if let Some(e) = &self.fail {
            return Err(ConnError(e.clone()));
        }
        Ok(Established {
            conns: self
                .conns
                .iter()
                .filter(|c| ports.is_none_or(|p| p.contains(&c.local.port())))
                .copied()
                .collect(),
            via: Via::SockDiag,
        })
    }
}
