//! UDP intake: the X-Ray daemon protocol (SPEC §2.1).
//!
//! One datagram = a JSON header line (`{"format":"json","version":1}`), one `\n`, one
//! document. Anything else is counted and remembered (the last few, with a preview) and
//! never stops the intake; neither does a datagram the console itself fails on (a panic
//! while reading or storing it: a bug), which is counted and remembered the same way.

use std::any::Any;
use std::collections::VecDeque;
use std::io::Write;
use std::net::UdpSocket;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::model::Entity;
use crate::store::Store;
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
    /// The console panicked while reading or storing it (a bug).
    Failed,
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
            Reject::Failed => "the console failed on it (a bug: see its standard error)",
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
    /// Datagrams the console panicked on while reading or storing them (a bug).
    pub failed: u64,
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
            Reject::Failed => &mut self.failed,
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

/// Stores a parsed document. A panic in the store (a bug) is caught, inside the
/// caller's lock so that it never unwinds through the guard, and returned as its message;
/// the store's bookkeeping, which it may have left half updated, is
/// [repaired](Store::repair).
pub fn insert_guarded(store: &mut Store, raw: String, entity: Entity) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| store.insert(raw, entity)))
        .map(drop)
        .map_err(|panic| {
            store.repair();
            panicked(&*panic)
        })
}

/// What a caught panic said, as the detail of a [`Reject::Failed`].
pub fn panicked(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("panicked: {message}")
}

/// Handles one datagram: stores it or counts the rejection.
///
/// A panic while reading or storing it (a bug) costs that datagram only: it is counted
/// and remembered as [`Reject::Failed`]. Uncaught, it would end the processing thread,
/// and with it the intake, while the pages went on showing what had arrived before.
pub fn handle_datagram(state: &State, buf: &[u8]) {
    let parsed = catch_unwind(|| parse_datagram(buf))
        .unwrap_or_else(|panic| Err((Reject::Failed, panicked(&*panic))));
    let mut inner = state.lock();
    inner.intake.datagrams += 1;
    let stored = parsed.and_then(|(raw, entity)| {
        insert_guarded(&mut inner.store, raw, entity).map_err(|e| (Reject::Failed, e))
    });
    match stored {
        Ok(()) => inner.intake.accepted += 1,
        Err((reason, detail)) => {
            inner.intake.reject(reason, detail, buf);
            if reason == Reject::Failed && inner.intake.failed == 1 {
                // Once: the panic hook has printed where; say that the intake goes on.
                // (Not `eprintln!`, which panics when standard error is gone.)
                let _ = writeln!(
                    std::io::stderr(),
                    "xray-console: failed on a datagram (a bug: please report it); it is \
                     counted as `failed` in /api/stats, and the intake goes on"
                );
            }
        }
    }
}

/// Bytes of datagrams that may wait between the receiving and the processing thread;
/// beyond this, datagrams are dropped and counted (`queue_dropped`). Each datagram is
/// charged [`QUEUED_DATAGRAM_OVERHEAD`] on top of its length, so that empty or tiny
/// ones are bounded too.
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// What a queued datagram costs beyond its bytes: its `Vec` and its place in the channel.
pub const QUEUED_DATAGRAM_OVERHEAD: usize = 64;

/// The bytes queued between the receiving and the processing thread, within
/// [`QUEUE_BYTES`].
#[derive(Debug, Default)]
struct QueueBudget(AtomicUsize);

impl QueueBudget {
    /// What a datagram of `n` bytes is charged.
    fn cost(n: usize) -> usize {
        n + QUEUED_DATAGRAM_OVERHEAD
    }

    /// Charges a datagram of `n` bytes; `false` (nothing charged) when it does not fit.
    /// Only the receiving thread admits, so the load and the add need no loop.
    fn admit(&self, n: usize) -> bool {
        if self.0.load(Ordering::Relaxed) + Self::cost(n) > QUEUE_BYTES {
            return false;
        }
        self.0.fetch_add(Self::cost(n), Ordering::Relaxed);
        true
    }

    /// Gives back what a processed datagram of `n` bytes was charged.
    fn release(&self, n: usize) {
        self.0.fetch_sub(Self::cost(n), Ordering::Relaxed);
    }
}

/// The UDP receive loop; returns when `state.stop` is set.
///
/// This thread only drains the socket (so bursts do not overflow the kernel buffer while
/// the store is busy) and hands datagrams to a processing thread over a queue bounded
/// by [`QUEUE_BYTES`].
pub fn run(socket: UdpSocket, state: Arc<State>) {
    // A short timeout lets the loop notice a stop request.
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let queued = Arc::new(QueueBudget::default());
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let worker = {
        let state = state.clone();
        let queued = queued.clone();
        std::thread::Builder::new()
            .name("xray-intake".into())
            .spawn(move || {
                for d in rx {
                    handle_datagram(&state, &d);
                    queued.release(d.len());
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
                if !queued.admit(n) {
                    state.queue_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Err(mpsc::SendError(d)) = tx.send(buf[..n].to_vec()) {
                    // The processing thread is gone (it catches its panics, so this
                    // should never happen): go on alone rather than stop receiving.
                    handle_datagram(&state, &d);
                    return run_inline(socket, &state);
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

    /// Empty datagrams are bounded as any: each is charged what it holds in the queue.
    #[test]
    fn the_queue_bound_holds_for_empty_datagrams() {
        let budget = QueueBudget::default();
        let admitted = (0..QUEUE_BYTES).take_while(|_| budget.admit(0)).count();
        assert_eq!(admitted, QUEUE_BYTES / QUEUED_DATAGRAM_OVERHEAD);
        // Processing one makes room for one more.
        budget.release(0);
        assert!(budget.admit(0));
        assert!(!budget.admit(0));
        // A full datagram needs room for its bytes too.
        for _ in 0..20 {
            budget.release(0);
        }
        assert!(!budget.admit(BUFFER_SIZE));
        assert!(budget.admit(20 * QUEUED_DATAGRAM_OVERHEAD - QUEUED_DATAGRAM_OVERHEAD));
    }

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

    #[test]
    fn a_panic_on_one_datagram_does_not_stop_the_intake() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let state = Arc::new(State::new(crate::store::Limits::default()));
        let intake = {
            let state = state.clone();
            std::thread::spawn(move || run(socket, state))
        };
        let datagram = |trace: u32, name: &str| {
            format!(
                "{{\"format\":\"json\",\"version\":1}}\n{{\"trace_id\":\"1-a-{trace}\",\"id\":\"a\",\
                 \"name\":\"{name}\",\"start_time\":1,\"end_time\":2}}"
            )
        };
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let marker = datagram(1, crate::store::tests::PANIC_MARKER);
        sender.send_to(marker.as_bytes(), addr).unwrap();
        sender.send_to(datagram(2, "ok").as_bytes(), addr).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while state.lock().intake.datagrams < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        state.stop.store(true, Ordering::Relaxed);
        intake.join().unwrap();
        let inner = state.lock();
        assert_eq!(inner.intake.datagrams, 2, "{:?}", inner.intake);
        assert_eq!(inner.intake.accepted, 1, "{:?}", inner.intake);
        assert_eq!(inner.intake.failed, 1);
        assert_eq!(inner.intake.rejected, 1);
        let failed = inner.intake.recent.back().unwrap();
        assert_eq!(failed.reason, Reject::Failed);
        assert!(
            failed.detail.ends_with(": injected by a test"),
            "{failed:?}"
        );
        assert_eq!(failed.preview, marker);
        // The panic left the half-inserted trace charged and listed: repaired.
        inner.store.check().unwrap();
        assert_eq!(inner.store.len(), 1);
        assert!(inner.store.get("1-a-2").is_some());
    }
}
