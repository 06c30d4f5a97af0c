//! A STUN server for the lab (RFC 5389, Binding requests only): it answers each request with
//! the address and port it came from, in an XOR-MAPPED-ADDRESS. Behind the lab's NAT, that is
//! the router's outside address. Written apart from knock's client, from the RFC.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::Netns;

const COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Answers Binding requests on `address` inside a namespace until dropped.
pub struct StunResponder {
    answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl StunResponder {
    pub fn start(ns: &Netns, address: SocketAddr) -> std::io::Result<Self> {
        let socket = ns.enter(move || -> std::io::Result<UdpSocket> {
            let socket = UdpSocket::bind(address)?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(socket)
        })??;
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (Arc::clone(&answered), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while !halt.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                if let Some(answer) = answer(&buffer[..len], from) {
                    let _ = socket.send_to(&answer, from);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { answered, stop })
    }

    /// How many requests were answered.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for StunResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The Binding success response to `request` from `from`, or `None` for anything else.
fn answer(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    // Type 0x0001 (Binding request), with the magic cookie.
    if request.len() < 20 || request[0..2] != [0x00, 0x01] || request[4..8] != COOKIE {
        return None;
    }
    let transaction = &request[8..20];
    let port = from.port() ^ 0x2112;
    let mut value = vec![0x00];
    let address: Vec<u8> = match from.ip() {
        IpAddr::V4(v4) => {
            value.push(0x01);
            v4.octets().iter().zip(COOKIE).map(|(b, k)| b ^ k).collect()
        }
        IpAddr::V6(v6) => {
            value.push(0x02);
            let key: Vec<u8> = COOKIE.iter().chain(transaction).copied().collect();
            v6.octets().iter().zip(key).map(|(b, k)| b ^ k).collect()
        }
    };
    value.extend_from_slice(&port.to_be_bytes());
    value.extend_from_slice(&address);
    let mut message = vec![0x01, 0x01];
    message.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    message.extend_from_slice(&COOKIE);
    message.extend_from_slice(transaction);
    message.extend_from_slice(&[0x00, 0x20]);
    message.extend_from_slice(&(value.len() as u16).to_be_bytes());
    message.extend_from_slice(&value);
    Some(message)
}
