//! UDP intake: the X-Ray daemon protocol (SPEC §2.1).
//!
//! One datagram = a JSON header line (`{"format":"json","version":1}`), one `\n`, one
//! document. Anything else is counted and remembered (the last few, with a preview) and
//! never stops the intake.

use std::collections::VecDeque;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::model::Entity;
use crate::State;

/// Receive buffer: the daemon's 64 KiB.
pub const BUFFER_SIZE: usize = 64 * 1024;
/// How many rejected datagrams are remembered for the page.
pub const RECENT_REJECTS: usize = 20;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// No `\n` between header and document.
    NoSeparator,
    /// The header is not `{"format":"json","version":1}`.
    BadHeader,
    /// Nothing after the header.
    EmptyBody,
    /// The document is not valid UTF-8 JSON.
    BadJson,
    /// Valid JSON, but not a segment or subsegment (missing `id`, `name`, ...).
    BadDocument,
}

impl Reject {
    /// Human-readable reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NoSeparator => "no newline after the header",
            Reject::BadHeader => "header is not {\"format\":\"json\",\"version\":1}",
            Reject::EmptyBody => "empty document",
            Reject::BadJson => "document is not valid JSON",
            Reject::BadDocument => "not a segment document",
        }
    }
}

/// A remembered rejected datagram.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Why.
    pub reason: Reject,
    /// Details (the parser's message).
    pub detail: String,
    /// Datagram length in bytes.
    pub len: usize,
    /// The first bytes, lossily decoded.
    pub preview: String,
}

/// Intake counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IntakeStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Documents accepted into the store.
    pub accepted: u64,
    /// Documents imported over HTTP.
    pub imported: u64,
    /// Datagrams rejected.
    pub rejected: u64,
    /// Rejections without a separator.
    pub no_separator: u64,
    /// Rejections for a bad header.
    pub bad_header: u64,
    /// Rejections for an empty body.
    pub empty_body: u64,
    /// Rejections for invalid JSON.
    pub bad_json: u64,
    /// Rejections for JSON that is not a segment.
    pub bad_document: u64,
    /// The last few rejections, newest last.
    pub recent: VecDeque<Rejected>,
}

impl IntakeStats {
    /// Counts a rejection and remembers it.
    pub fn reject(&mut self, reason: Reject, detail: String, datagram: &[u8]) {
        self.rejected += 1;
        *match reason {
            Reject::NoSeparator => &mut self.no_separator,
            Reject::BadHeader => &mut self.bad_header,
            Reject::EmptyBody => &mut self.empty_body,
            Reject::BadJson => &mut self.bad_json,
            Reject::BadDocument => &mut self.bad_document,
        } += 1;
        if self.recent.len() == RECENT_REJECTS {
            self.recent.pop_front();
        }
        let head = &datagram[..datagram.len().min(160)];
        self.recent.push_back(Rejected {
            reason,
            detail,
            len: datagram.len(),
            preview: String::from_utf8_lossy(head).into_owned(),
        });
    }
}

/// Reads one datagram: checks the header and returns the document text and its summary.
pub fn parse_datagram(buf: &[u8]) -> Result<(String, Entity), (Reject, String)> {
    let nl = buf
        .iter()
        .position(|&b| b == b'\n')
        .ok_or((Reject::NoSeparator, String::new()))?;
    let header: Value =
        serde_json::from_slice(&buf[..nl]).map_err(|e| (Reject::BadHeader, e.to_string()))?;
    let format_ok = header
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let version_ok = header.get("version").and_then(Value::as_u64) == Some(1);
    if !format_ok || !version_ok {
        return Err((Reject::BadHeader, header.to_string()));
    }
    parse_document(&buf[nl + 1..])
}

/// Reads one document (no header).
pub fn parse_document(body: &[u8]) -> Result<(String, Entity), (Reject, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((Reject::EmptyBody, String::new()));
    }
    let text = std::str::from_utf8(body).map_err(|e| (Reject::BadJson, e.to_string()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| (Reject::BadJson, e.to_string()))?;
    let entity = Entity::from_document(&value).map_err(|e| (Reject::BadDocument, e.to_string()))?;
    Ok((text.trim().to_owned(), entity))
}

/// Handles one datagram: stores it or counts the rejection.
pub fn handle_datagram(state: &State, buf: &[u8]) {
    let parsed = parse_datagram(buf);
    let mut inner = state.lock();
    inner.intake.datagrams += 1;
    match parsed {
        Ok((raw, entity)) => {
            inner.intake.accepted += 1;
            inner.store.insert(raw, entity);
        }
        Err((reason, detail)) => inner.intake.reject(reason, detail, buf),
    }
}

/// Bytes of datagrams that may wait between the receiving and the processing thread;
/// beyond this, datagrams are dropped and counted (`queue_dropped`).
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// The UDP receive loop; returns when `state.stop` is set.
///
/// This thread only drains the socket (so bursts do not overflow the kernel buffer while
/// the store is busy) and hands datagrams to a processing thread over a queue bounded
/// by [`QUEUE_BYTES`].
pub fn run(socket: UdpSocket, state: Arc<State>) {
    // A short timeout lets the loop notice a stop request.
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let queued = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let worker = {
        let state = state.clone();
        let queued = queued.clone();
        std::thread::Builder::new()
            .name("xray-intake".into())
            .spawn(move || {
                for d in rx {
                    handle_datagram(&state, &d);
                    queued.fetch_sub(d.len(), Ordering::Relaxed);
                }
            })
    };
    let Ok(worker) = worker else {
        // No second thread: process inline.
        return run_inline(socket, &state);
    };
    let mut buf = vec![0u8; BUFFER_SIZE];
    while !state.stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if queued.load(Ordering::Relaxed) + n > QUEUE_BYTES {
                    state.queue_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                queued.fetch_add(n, Ordering::Relaxed);
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // ICMP errors and the like: keep receiving.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    drop(tx);
    let _ = worker.join();
}

fn run_inline(socket: UdpSocket, state: &State) {
    let mut buf = vec![0u8; BUFFER_SIZE];
    while !state.stop.load(Ordering::Relaxed) {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            handle_datagram(state, &buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_header_spellings() {
        let doc = r#"{"trace_id":"1-a-b","id":"a","name":"n","start_time":1,"end_time":2}"#;
        for h in [
            r#"{"format":"json","version":1}"#,
            r#"{"format": "JSON", "version": 1}"#,
        ] {
            let d = format!("{h}\n{doc}");
            let (raw, e) = parse_datagram(d.as_bytes()).unwrap();
            assert_eq!(raw, doc);
            assert_eq!(e.name, "n");
        }
    }

    #[test]
    fn rejects_with_reasons() {
        let cases: [(&[u8], Reject); 7] = [
            (b"no newline", Reject::NoSeparator),
            (b"{\"format\":\"xml\",\"version\":1}\n{}", Reject::BadHeader),
            (
                b"{\"format\":\"json\",\"version\":2}\n{}",
                Reject::BadHeader,
            ),
            (b"garbage\n{}", Reject::BadHeader),
            (
                b"{\"format\":\"json\",\"version\":1}\n  ",
                Reject::EmptyBody,
            ),
            (
                b"{\"format\":\"json\",\"version\":1}\n{\xff",
                Reject::BadJson,
            ),
            (
                b"{\"format\":\"json\",\"version\":1}\n{\"id\":\"a\"}",
                Reject::BadDocument,
            ),
        ];
        let mut stats = IntakeStats::default();
        for (d, want) in cases {
            let (got, detail) = parse_datagram(d).unwrap_err();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(d));
            stats.reject(got, detail, d);
        }
        assert_eq!(stats.rejected, 7);
        assert_eq!(stats.bad_header, 3);
        assert_eq!(stats.recent.len(), 7);
    }
}
