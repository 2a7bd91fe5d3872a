//! [`TimelineExporter`]: draws each finished trace as a waterfall in the
//! terminal, for local development without AWS.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use serde_json::Value;

use super::{Document, DocumentKind, ExportError, ExportOutcome, Exporter};

/// Independent subsegments kept while their segment has not arrived.
const MAX_PENDING_SUBSEGMENTS: usize = 10_000;
/// The width off a terminal (a file, a pipe, a CI log).
const DEFAULT_WIDTH: usize = 100;
/// The width on a terminal whose width `COLUMNS` does not give (shells do not
/// export it): the narrowest terminal in common use, so that no row wraps.
const TERMINAL_WIDTH: usize = 80;
/// Traces whose waiting parts were dropped, remembered to say so when drawn.
const MAX_EVICTED_TRACES: usize = 1_000;
/// The ids of (sub)segments drawn lately, remembered so that a part whose
/// parent was drawn before it arrived is drawn on its own.
const MAX_DRAWN_IDS: usize = 100_000;

/// Prints every finished trace as a timeline: one row per (sub)segment,
/// indented by depth (past what the name column allows, the depth is
/// written out: `[57] name`), with its duration, a bar placed and scaled on the
/// trace's time axis, its annotations and its error / fault / throttle marks,
/// the rows on the critical path marked `▶`; then the bottleneck (the slowest
/// leaf on the critical path, with its share of the segment's time) and
/// the critical path (walked back from the segment's end: the child that
/// ended last, then the one that ended before it started, and so on; work
/// that outlived the segment, spawned by it, is drawn but not on it). The
/// `quickstart` example prints (bars shortened here):
///
/// ```text
/// trace 1-6b077309-20a520e155f258f9279bf653  quickstart  2.56 s
/// ▶ quickstart                  2562.1 ms │█████████████████████████████│ customer=c-42
/// ▶   load_customer (remote)      60.8 ms │█                            │ table=customers
///     fetch_invoice               45.5 ms │█                            │ bucket=invoices
/// ▶   call_payments_api         2501.2 ms │ ████████████████████████████│ FAULT
/// bottleneck: call_payments_api, 2501.2 ms (98% of the trace)
/// critical path: quickstart → load_customer (remote) → call_payments_api
/// ```
///
/// A trace is drawn when its segment arrives, with the parts streamed
/// before it put back; each segment of a trace continued by another service
/// is drawn on its own, and so is a part whose parent was drawn before it
/// arrived (work a request spawned, still running when its response was
/// sent), marked `(continued…)`; so are the parts still waiting for their
/// segment (a root still open) when the layer flushes or shuts down. In
/// Lambda no segment is sent (the function segment is Lambda's): each
/// invocation's subsegments are drawn at its flush, without it (see what
/// was sent with [`InMemoryExporter::traces`](super::InMemoryExporter::traces)).
///
/// Colours are used on a terminal unless `NO_COLOR` is set. The width on a
/// terminal is `COLUMNS`, else 80 columns; off one it is 100, fixed (so that
/// output can be compared in tests), unless set by
/// [`with_width`](TimelineExporter::with_width). [`TimelineExporter::ascii`] draws with
/// plain ASCII.
///
/// ```
/// use tracing_xray::export::TimelineExporter;
///
/// let layer = tracing_xray::builder()
///     .with_exporter(TimelineExporter::stdout())
///     .build();
/// # drop(layer);
/// ```
pub struct TimelineExporter {
    out: Box<dyn Write + Send>,
    width: usize,
    color: bool,
    ascii: bool,
    /// Parts waiting for their segment, by trace. Not yet reported: each is
    /// counted delivered or failed as it is drawn (or dropped).
    pending: HashMap<String, Vec<Part>>,
    pending_order: VecDeque<String>,
    pending_count: usize,
    /// Parts of traces dropped while waiting for their segment, by trace.
    evicted: HashMap<String, usize>,
    /// The ids of the (sub)segments drawn lately (at most
    /// [`MAX_DRAWN_IDS`]): a part whose parent was drawn before it arrived
    /// (work that outlived its request) is drawn on its own.
    drawn: HashSet<String>,
    drawn_order: VecDeque<String>,
}

impl std::fmt::Debug for TimelineExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimelineExporter")
            .field("width", &self.width)
            .field("color", &self.color)
            .field("ascii", &self.ascii)
            .finish_non_exhaustive()
    }
}

impl TimelineExporter {
    /// Draws on standard output.
    ///
    /// ```
    /// use tracing_xray::export::TimelineExporter;
    ///
    /// // In development: every trace, drawn as it finishes.
    /// let layer = tracing_xray::builder()
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(TimelineExporter::stdout())
    ///     .build();
    /// # drop(layer);
    /// ```
    pub fn stdout() -> Self {
        let tty = io::stdout().is_terminal();
        Self::new(io::stdout(), tty)
    }

    /// Draws on standard error.
    ///
    /// ```
    /// use tracing_xray::export::TimelineExporter;
    ///
    /// // Standard output stays the program's own.
    /// let layer = tracing_xray::builder()
    ///     .with_exporter(TimelineExporter::stderr())
    ///     .build();
    /// # drop(layer);
    /// ```
    pub fn stderr() -> Self {
        let tty = io::stderr().is_terminal();
        Self::new(io::stderr(), tty)
    }

    /// Draws into any writer (a file, a buffer in a test). No colours.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_subscriber::prelude::*;
    /// use tracing_xray::export::TimelineExporter;
    ///
    /// # use std::io::Write;
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Clone, Default)]
    /// # struct Buffer(Arc<Mutex<Vec<u8>>>);
    /// # impl Write for Buffer {
    /// #     fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
    /// #         self.0.lock().unwrap().write(bytes)
    /// #     }
    /// #     fn flush(&mut self) -> std::io::Result<()> {
    /// #         Ok(())
    /// #     }
    /// # }
    /// # impl Buffer {
    /// #     fn text(&self) -> String {
    /// #         String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    /// #     }
    /// # }
    /// let out = Buffer::default(); // a `Vec<u8>` that clones share
    /// let layer = tracing_xray::builder()
    ///     .with_service_name("quickstart")
    ///     .with_sampler(tracing_xray::sampling::AlwaysSample)
    ///     .with_exporter(TimelineExporter::to_writer(out.clone()))
    ///     .build();
    /// let xray = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info_span!("request").in_scope(|| {
    ///         tracing::info_span!("load_customer").in_scope(|| {});
    ///     });
    /// });
    /// xray.flush(Duration::from_secs(1)).unwrap();
    ///
    /// let text = out.text();
    /// assert!(text.starts_with("trace 1-"), "{text}");
    /// assert!(text.contains("quickstart") && text.contains("load_customer"), "{text}");
    /// assert!(text.contains("bottleneck: load_customer"), "{text}");
    /// ```
    pub fn to_writer(out: impl Write + Send + 'static) -> Self {
        Self::new(out, false)
    }

    fn new(out: impl Write + Send + 'static, tty: bool) -> Self {
        // `COLUMNS` is the terminal's: off one the width is fixed, so that
        // output compared in tests does not change with the shell it runs
        // in ([`with_width`](Self::with_width) sets another).
        let width = if tty {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(TERMINAL_WIDTH)
                .clamp(60, 300)
        } else {
            DEFAULT_WIDTH
        };
        TimelineExporter {
            out: Box::new(out),
            width,
            color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            ascii: false,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            pending_count: 0,
            evicted: HashMap::new(),
            drawn: HashSet::new(),
            drawn_order: VecDeque::new(),
        }
    }

    /// Plain ASCII bars and marks (`#`, `|`), for terminals without Unicode.
    ///
    /// ```
    /// use tracing_xray::export::TimelineExporter;
    ///
    /// # use std::io::Write;
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Clone, Default)]
    /// # struct Buffer(Arc<Mutex<Vec<u8>>>);
    /// # impl Write for Buffer {
    /// #     fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
    /// #         self.0.lock().unwrap().write(bytes)
    /// #     }
    /// #     fn flush(&mut self) -> std::io::Result<()> {
    /// #         Ok(())
    /// #     }
    /// # }
    /// # impl Buffer {
    /// #     fn text(&self) -> String {
    /// #         String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    /// #     }
    /// # }
    /// let out = Buffer::default(); // a `Vec<u8>` that clones share
    /// let exporter = TimelineExporter::to_writer(out.clone()).ascii();
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # let layer = tracing_xray::builder()
    /// #     .with_service_name("quickstart")
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter)
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("request").in_scope(|| {
    /// #         tracing::info_span!("load_customer").in_scope(|| {});
    /// #     });
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// // ... once a trace has been drawn:
    /// let root_row = out.text().lines().nth(1).unwrap().to_owned();
    /// assert!(root_row.starts_with("* quickstart"), "{root_row}");
    /// assert!(root_row.ends_with("#|") && root_row.is_ascii(), "{root_row}");
    /// ```
    #[must_use]
    pub fn ascii(mut self) -> Self {
        self.ascii = true;
        self
    }

    /// Width of a row, in columns, between 60 and 300 (default: on a
    /// terminal `COLUMNS`, else 80; 100 off one). Marks and annotations follow
    /// the bar within it: the bar leaves them up to half the room right of
    /// the names, and annotations longer than that are cut (`…`).
    ///
    /// ```
    /// use tracing_xray::export::TimelineExporter;
    ///
    /// // A CI log 120 columns wide:
    /// let exporter = TimelineExporter::stderr().with_width(120);
    /// let layer = tracing_xray::builder().with_exporter(exporter).build();
    /// # drop(layer);
    /// ```
    #[must_use]
    pub fn with_width(mut self, columns: usize) -> Self {
        self.width = columns.clamp(60, 300);
        self
    }

    /// Whether to colour the output (default: on a terminal, unless `NO_COLOR`).
    ///
    /// ```
    /// use tracing_xray::export::TimelineExporter;
    ///
    /// # use std::io::Write;
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Clone, Default)]
    /// # struct Buffer(Arc<Mutex<Vec<u8>>>);
    /// # impl Write for Buffer {
    /// #     fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
    /// #         self.0.lock().unwrap().write(bytes)
    /// #     }
    /// #     fn flush(&mut self) -> std::io::Result<()> {
    /// #         Ok(())
    /// #     }
    /// # }
    /// # impl Buffer {
    /// #     fn text(&self) -> String {
    /// #         String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    /// #     }
    /// # }
    /// let out = Buffer::default(); // a `Vec<u8>` that clones share
    /// // Colours off a terminal too (for `less -R`):
    /// let exporter = TimelineExporter::to_writer(out.clone()).with_color(true);
    /// # use std::time::Duration;
    /// # use tracing_subscriber::prelude::*;
    /// # let layer = tracing_xray::builder()
    /// #     .with_service_name("quickstart")
    /// #     .with_sampler(tracing_xray::sampling::AlwaysSample)
    /// #     .with_exporter(exporter)
    /// #     .build();
    /// # let xray = layer.handle();
    /// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    /// #     tracing::info_span!("request").in_scope(|| {
    /// #         tracing::info_span!("load_customer").in_scope(|| {});
    /// #     });
    /// # });
    /// # xray.flush(Duration::from_secs(1)).unwrap();
    /// // ... once a trace has been drawn:
    /// assert!(out.text().starts_with("\x1b[1mtrace 1-"));
    /// ```
    #[must_use]
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    /// Keeps `part` until its segment arrives. Past
    /// [`MAX_PENDING_SUBSEGMENTS`], the oldest trace's parts are dropped,
    /// reported failed in `outcome`.
    fn keep_pending(&mut self, part: Part, outcome: &mut ExportOutcome) {
        let trace = part.doc.trace_id().to_string();
        if self.pending_count >= MAX_PENDING_SUBSEGMENTS {
            if let Some(oldest) = self.pending_order.pop_front() {
                if let Some(parts) = self.pending.remove(&oldest) {
                    self.pending_count -= parts.len();
                    // Said when the trace is drawn, or at the next flush (a
                    // bounded memory of it), in subsegments: a part is a
                    // whole subtree.
                    if self.evicted.len() >= MAX_EVICTED_TRACES {
                        self.evicted.clear();
                    }
                    let subsegments: usize = parts.iter().map(|p| p.ids.len()).sum();
                    *self.evicted.entry(oldest).or_default() += subsegments;
                    for part in parts {
                        outcome.fail(
                            part.doc,
                            ExportError::Other(
                                format!(
                                    "not drawn: more than {MAX_PENDING_SUBSEGMENTS} \
                                     subsegments waited for their segment"
                                )
                                .into(),
                            ),
                        );
                    }
                }
            }
        }
        if !self.pending.contains_key(&trace) {
            self.pending_order.push_back(trace.clone());
        }
        self.pending.entry(trace).or_default().push(part);
        self.pending_count += 1;
    }

    /// Remembers the ids of the tree drawn from `root`.
    fn remember_drawn(&mut self, root: &Value) {
        let mut work = vec![root];
        while let Some(n) = work.pop() {
            if let Some(id) = n["id"].as_str() {
                if self.drawn.insert(id.to_owned()) {
                    self.drawn_order.push_back(id.to_owned());
                    if self.drawn_order.len() > MAX_DRAWN_IDS {
                        if let Some(oldest) = self.drawn_order.pop_front() {
                            self.drawn.remove(&oldest);
                        }
                    }
                }
            }
            if let Some(children) = n["subsegments"].as_array() {
                work.extend(children);
            }
        }
    }

    /// Puts under `root` the waiting parts of `trace` that hang below it,
    /// and returns their documents (reported with `root`'s drawing); the
    /// others wait on. Only those below are parsed: which they are, their
    /// ids and their parents' tell.
    fn put_back_parts(
        &mut self,
        root: &mut Value,
        trace: &str,
        outcome: &mut ExportOutcome,
    ) -> Vec<Document> {
        let pending = self.take_pending(trace);
        if pending.is_empty() {
            return Vec::new();
        }
        let mut by_parent = by_parent(pending);
        let below = take_below(tree_ids(root), &mut by_parent);
        for (parent, parts) in by_parent {
            for part in parts {
                debug_assert_eq!(part.parent, parent);
                self.keep_pending(part, outcome);
            }
        }
        attach_parts(root, below, outcome)
    }

    /// Draws `root` (its document `doc`) with the parts of its trace that
    /// waited for it, and reports them all in `outcome`: delivered once
    /// written, failed if the writing failed.
    fn draw(
        &mut self,
        mut root: Value,
        doc: Document,
        continued: Option<Continued>,
        outcome: &mut ExportOutcome,
    ) {
        let trace = doc.trace_id().to_string();
        // Parts of another segment of this trace (a service that called
        // this one, in the same process) wait on for theirs.
        let parts = self.put_back_parts(&mut root, &trace, outcome);
        self.draw_tree(root, doc, parts, continued, outcome);
    }

    /// Draws `root` (its document `doc`, with `parts` put under it) and
    /// reports them all in `outcome`.
    fn draw_tree(
        &mut self,
        root: Value,
        doc: Document,
        parts: Vec<Document>,
        continued: Option<Continued>,
        outcome: &mut ExportOutcome,
    ) {
        let trace = doc.trace_id().to_string();
        let mut text = self.render(&root, continued);
        self.remember_drawn(&root);
        drop_iteratively(root);
        let evicted = if continued.is_some() {
            None
        } else {
            self.evicted.remove(&trace)
        };
        if let Some(n) = evicted {
            let _ = writeln!(text, "{}", not_drawn_note(n, None));
        }
        match self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
        {
            Ok(()) => outcome.delivered += 1 + parts.len(),
            Err(e) => {
                for part in parts {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    outcome.fail(part, ExportError::Io(copy));
                }
                outcome.fail(doc, ExportError::Io(e));
            }
        }
    }

    fn take_pending(&mut self, trace: &str) -> Vec<Part> {
        self.pending_order.retain(|t| t != trace);
        let v = self.pending.remove(trace).unwrap_or_default();
        self.pending_count -= v.len();
        v
    }
}

/// `s` with its control characters (`\n`, `\u{1b}`) and bidirectional
/// formatting characters (`\u{202e}`) escaped: request data in annotations
/// must not move the cursor, clear the screen, recolour it, or turn the rest
/// of the row around.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(unprintable) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if unprintable(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// A control character; a line or paragraph separator (`\u{2028}`,
/// `\u{2029}`: line breaks to log viewers and editors); one that reorders
/// text on terminals that apply the bidirectional algorithm (marks,
/// embeddings, overrides, isolates); or an invisible one that makes two
/// different values look alike (zero-width space, Mongolian vowel
/// separator, word joiner and invisible operators, deprecated format
/// characters, byte order mark, interlinear annotation marks, tags). The
/// joiners that shape scripts and emoji (`\u{200C}`, `\u{200D}`) are kept.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{180E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// One drawn row.
struct Row {
    depth: usize,
    name: String,
    start: f64,
    end: f64,
    marks: Vec<&'static str>,
    annotations: String,
    leaf: bool,
    critical: bool,
}

fn flatten(node: &Value, depth: usize, rows: &mut Vec<Row>) {
    // Iterative pre-order, children sorted by start time.
    let mut stack = vec![(node, depth)];
    while let Some((n, d)) = stack.pop() {
        let start = n["start_time"].as_f64().unwrap_or(0.0);
        let end = n["end_time"].as_f64().unwrap_or(start).max(start);
        let mut marks = Vec::new();
        if n["fault"] == true {
            marks.push("FAULT");
        }
        // A throttle is an error too (a 429): one mark says it.
        if n["throttle"] == true {
            marks.push("THROTTLE");
        } else if n["error"] == true {
            marks.push("ERROR");
        }
        let mut annotations = String::new();
        if let Some(map) = n["annotations"].as_object() {
            for (k, v) in map {
                if !annotations.is_empty() {
                    annotations.push(' ');
                }
                match v {
                    Value::String(s) => {
                        let _ = write!(annotations, "{k}={}", printable(s));
                    }
                    other => {
                        let _ = write!(annotations, "{k}={other}");
                    }
                }
            }
        }
        let mut name = printable(n["name"].as_str().unwrap_or("?")).into_owned();
        if let Some(ns) = n["namespace"].as_str() {
            let _ = write!(name, " ({ns})");
        }
        let mut children: Vec<&Value> = n["subsegments"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        rows.push(Row {
            depth: d,
            name,
            start,
            end,
            marks,
            annotations,
            leaf: children.is_empty(),
            critical: false,
        });
        // By start time, ties in the document's order (the stack pops the
        // last pushed first).
        children.sort_by(|a, b| {
            let sa = a["start_time"].as_f64().unwrap_or(0.0);
            let sb = b["start_time"].as_f64().unwrap_or(0.0);
            sa.total_cmp(&sb)
        });
        stack.extend(children.into_iter().rev().map(|c| (c, d + 1)));
    }
}

/// How far past its parent's end a child may end and still be one the
/// parent waited for (times have microsecond precision, rounded).
const SLACK: f64 = 1e-5;

/// Where each row's subtree ends (rows are in depth-first order).
fn subtree_ends(rows: &[Row]) -> Vec<usize> {
    let mut subtree_end = vec![rows.len(); rows.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        while let Some(&top) = open.last() {
            if rows[top].depth < r.depth {
                break;
            }
            subtree_end[top] = i;
            open.pop();
        }
        open.push(i);
    }
    subtree_end
}

/// Marks the critical path, walked back from each row's end: the child that
/// ended last, then the one that ended before that one started, and so on
/// (sequential steps are all on it; of concurrent ones, the one waited for),
/// and in each, the same. A child that ended after its parent (work the
/// parent spawned and did not wait for) is not on it. Each step looks at
/// the row's children only, jumping over their subtrees: linear in the rows
/// (and a sort of each critical row's children), where a scan of each
/// subtree was quadratic in a deep chain's depth.
fn mark_critical(rows: &mut [Row], subtree_end: &[usize]) {
    let mut stack = vec![0];
    let mut kids = Vec::new();
    while let Some(i) = stack.pop() {
        rows[i].critical = true;
        let limit = rows[i].end + SLACK;
        kids.clear();
        let mut j = i + 1;
        while j < subtree_end[i] {
            #[cfg(test)]
            tests::LOOKED_AT.with(|n| n.set(n.get() + 1));
            if rows[j].end <= limit {
                kids.push(j);
            }
            j = subtree_end[j];
        }
        // Latest end first; walking back, each one taken ended before the
        // one after it started.
        kids.sort_by(|&a, &b| rows[b].end.total_cmp(&rows[a].end));
        let mut until = limit;
        for &k in &kids {
            if rows[k].end <= until {
                stack.push(k);
                until = rows[k].start + SLACK;
            }
        }
    }
}

/// Which rows belong to work their trace's segment did not wait for: rows
/// that ended after their parent, and everything below them.
fn outlived(rows: &[Row]) -> Vec<bool> {
    let mut out = vec![false; rows.len()];
    let mut ancestors: Vec<usize> = Vec::new();
    for i in 0..rows.len() {
        while let Some(&top) = ancestors.last() {
            if rows[top].depth < rows[i].depth {
                break;
            }
            ancestors.pop();
        }
        if let Some(&parent) = ancestors.last() {
            out[i] = out[parent] || rows[i].end > rows[parent].end + SLACK;
        }
        ancestors.push(i);
    }
    out
}

impl TimelineExporter {
    /// `root`'s waterfall; `continued`: a part drawn apart from its segment.
    fn render(&self, root: &Value, continued: Option<Continued>) -> String {
        let mut rows = Vec::new();
        flatten(root, 0, &mut rows);
        if rows.is_empty() {
            return String::new();
        }
        let subtree_end = subtree_ends(&rows);
        mark_critical(&mut rows, &subtree_end);
        let outlived = outlived(&rows);
        // The axis spans every row, work that outlived the segment included;
        // the trace's time is its segment's.
        let t0 = rows.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
        let t1 = rows.iter().map(|r| r.end).fold(f64::NEG_INFINITY, f64::max);
        let total = (t1 - t0).max(1e-6);
        let segment_time = (rows[0].end - rows[0].start).max(1e-6);
        let (bar_full, bar_edge, bar_empty, path_mark) = if self.ascii {
            ("#", "|", " ", "*")
        } else {
            ("█", "│", " ", "▶")
        };
        let (bold, red, yellow, dim, reset) = if self.color {
            ("\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m")
        } else {
            ("", "", "", "", "")
        };
        let label_width = rows
            .iter()
            .map(|r| 2 + r.depth * 2 + columns(&r.name))
            .max()
            .unwrap_or(10)
            .min(self.width / 3);
        // A row: mark, space, label (`label_width - 2`), space, duration
        // (9), unit (" ms " or " s  "), the bar between its two edges, then
        // the marks and annotations ("tail"). The bar leaves the longest
        // tail up to half the room right of the labels; longer annotations
        // are cut to fit the width.
        let tails: Vec<usize> = rows.iter().map(tail_columns).collect();
        let room = self.width.saturating_sub(label_width + 16);
        // The marks always fit (at most `FAULT THROTTLE`).
        let marks = rows.iter().map(marks_columns).max().unwrap_or(0);
        let reserve = tails
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .min(room / 2)
            .max(marks);
        let bar_width = room.saturating_sub(reserve).max(10);
        let tail_room = self.width.saturating_sub(label_width + 16 + bar_width);

        let mut s = String::new();
        let _ = writeln!(
            s,
            "{bold}trace {}  {}  {}{}{reset}",
            printable(root["trace_id"].as_str().unwrap_or("?")),
            printable(root["name"].as_str().unwrap_or("?")),
            short_duration(segment_time),
            match continued {
                Some(Continued::AfterIt) => "  (continued: ended after its parent was drawn)",
                Some(Continued::BeforeIt) => "  (continued: drawn without its segment)",
                None => "",
            }
        );
        for r in &rows {
            // Indented two columns a level while the name (or 10 columns of
            // it) still fits; deeper, the depth is written out instead, so
            // that the row keeps its name.
            let room = label_width - 2;
            let max_indent = room.saturating_sub(columns(&r.name).min(10));
            let mut label = if r.depth * 2 <= max_indent {
                " ".repeat(r.depth * 2)
            } else {
                let depth = format!("[{}] ", r.depth);
                " ".repeat(max_indent.saturating_sub(depth.len())) + &depth
            };
            label.push_str(&r.name);
            let label = cut_to_columns(&label, label_width - 2);
            let from = (((r.start - t0) / total) * bar_width as f64).floor() as usize;
            let to = ((((r.end - t0) / total) * bar_width as f64).ceil() as usize)
                .max(from + 1)
                .min(bar_width);
            let from = from.min(to.saturating_sub(1));
            let bar = format!(
                "{}{}{}",
                bar_empty.repeat(from),
                bar_full.repeat(to - from),
                bar_empty.repeat(bar_width - to)
            );
            let color = if r.marks.contains(&"FAULT") {
                red
            } else if !r.marks.is_empty() {
                yellow
            } else {
                ""
            };
            let mark = if r.critical { path_mark } else { " " };
            let pad = label_width - 2 - columns(label);
            let _ = write!(
                s,
                "{mark} {label}{:pad$} {} {bar_edge}{color}{bar}{reset}{bar_edge}",
                "",
                duration_column(r.end - r.start),
            );
            let mut left = tail_room;
            if !r.marks.is_empty() {
                let marks = r.marks.join(" ");
                left = left.saturating_sub(1 + marks.len());
                let _ = write!(s, " {color}{marks}{reset}");
            }
            if !r.annotations.is_empty() && left >= 2 {
                let cut = if columns(&r.annotations) < left {
                    std::borrow::Cow::Borrowed(r.annotations.as_str())
                } else {
                    let ellipsis = if self.ascii { "~" } else { "…" };
                    format!("{}{ellipsis}", cut_to_columns(&r.annotations, left - 2)).into()
                };
                let _ = write!(s, " {dim}{cut}{reset}");
            }
            s.push('\n');
        }
        // The slowest leaf on the critical path: what made the request
        // as long as it was (a slower one beside the path did not).
        let bottleneck = rows
            .iter()
            .zip(&outlived)
            .filter(|&(r, &out)| r.leaf && r.critical && r.depth > 0 && !out)
            .map(|(r, _)| r)
            .max_by(|a, b| (a.end - a.start).total_cmp(&(b.end - b.start)));
        if let Some(b) = bottleneck {
            let d = b.end - b.start;
            let _ = writeln!(
                s,
                "{bold}bottleneck: {}, {:.1} ms ({:.0}% of {}){reset}",
                b.name.trim(),
                d * 1000.0,
                (d / segment_time * 100.0).min(100.0),
                if continued.is_some() {
                    "this part"
                } else {
                    "the trace"
                },
            );
        }
        let path: Vec<&str> = rows
            .iter()
            .filter(|r| r.critical)
            .map(|r| r.name.as_str())
            .collect();
        let arrow = if self.ascii { " -> " } else { " → " };
        let _ = writeln!(s, "critical path: {}", path.join(arrow));
        s
    }
}

/// The columns of a row's marks, after a space.
fn marks_columns(r: &Row) -> usize {
    if r.marks.is_empty() {
        0
    } else {
        1 + r.marks.join(" ").len()
    }
}

/// The columns of a row's marks and annotations, each after a space.
fn tail_columns(r: &Row) -> usize {
    let marks = marks_columns(r);
    let annotations = if r.annotations.is_empty() {
        0
    } else {
        1 + columns(&r.annotations)
    };
    marks + annotations
}

/// A row's duration, 12 columns: milliseconds with one decimal, seconds
/// past 1,000,000 ms (a job of hours), so that the column keeps its width.
fn duration_column(secs: f64) -> String {
    let ms = secs * 1000.0;
    if ms < 999_999.95 {
        format!("{ms:>9.1} ms")
    } else {
        format!("{secs:>9.1} s ")
    }
}

/// A trace's time in its title: milliseconds under a second (three
/// decimals under one), else seconds.
fn short_duration(secs: f64) -> String {
    if secs < 0.00095 {
        format!("{:.3} ms", secs * 1000.0)
    } else if secs < 0.99995 {
        format!("{:.1} ms", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

fn attach(node: &mut Value, orphans: &mut HashMap<String, Vec<Value>>) {
    let mut work: Vec<&mut Value> = vec![node];
    while let Some(n) = work.pop() {
        if let Some(id) = n["id"].as_str().map(str::to_owned) {
            if let Some(kids) = orphans.remove(&id) {
                if let Some(obj) = n.as_object_mut() {
                    if let Some(arr) = obj
                        .entry("subsegments")
                        .or_insert_with(|| Value::Array(Vec::new()))
                        .as_array_mut()
                    {
                        arr.extend(kids);
                    }
                }
            }
        }
        if let Some(arr) = n.get_mut("subsegments").and_then(Value::as_array_mut) {
            work.extend(arr.iter_mut());
        }
    }
}

/// Drops `root` one node at a time. Put back together, a trace is as deep
/// as its call chain (a recursive function makes 10,000 levels), and
/// `Value`'s own drop recurses once per level: on the worker's stack, that
/// is an overflow, which aborts the process.
fn drop_iteratively(root: Value) {
    let mut stack = vec![root];
    while let Some(mut value) = stack.pop() {
        match &mut value {
            Value::Array(items) => stack.append(items),
            Value::Object(map) => stack.extend(std::mem::take(map).into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

impl Exporter for TimelineExporter {
    fn export(&mut self, batch: Vec<Document>) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        for doc in batch {
            let value: Value = match serde_json::from_str(doc.as_str()) {
                Ok(v) => v,
                Err(e) => {
                    outcome.fail(doc, ExportError::Other(Box::new(e)));
                    continue;
                }
            };
            // A segment is drawn with the parts that came before it; a part
            // whose parent was drawn before it arrived (work that ended after
            // its request answered) on its own, with its own earlier parts;
            // any other part waits for its segment (reported when drawn).
            let continued = match doc.kind() {
                DocumentKind::Segment => None,
                DocumentKind::Subsegment => {
                    let parent = value["parent_id"].as_str().unwrap_or_default();
                    if !self.drawn.contains(parent) {
                        let parent = parent.to_owned();
                        let ids = tree_ids(&value);
                        drop_iteratively(value);
                        self.keep_pending(Part { parent, ids, doc }, &mut outcome);
                        continue;
                    }
                    Some(Continued::AfterIt)
                }
            };
            self.draw(value, doc, continued, &mut outcome);
        }
        outcome
    }

    /// Draws the parts still waiting for their segment (a root still
    /// open), each tree of them on its own, marked `(continued…)`: a flush
    /// delivers what the exporter holds, and at shutdown that segment will
    /// not come. Parts that come later under them are drawn on their own
    /// too, and the segment without them.
    fn flush(&mut self, _timeout: std::time::Duration) -> ExportOutcome {
        let mut outcome = ExportOutcome::default();
        // All of them, each parsed once: a flush may find thousands.
        let order = std::mem::take(&mut self.pending_order);
        let mut pending = std::mem::take(&mut self.pending);
        self.pending_count = 0;
        for trace in order {
            let Some(parts) = pending.remove(&trace) else {
                continue;
            };
            // (Any of a part's own (sub)segments may be another's parent.)
            let ids: HashSet<String> = parts.iter().flat_map(|p| p.ids.iter().cloned()).collect();
            // A part whose parent is none of the others' tops a tree.
            let (tops, rest): (Vec<Part>, Vec<Part>) =
                parts.into_iter().partition(|p| !ids.contains(&p.parent));
            let mut by_parent = by_parent(rest);
            for top in tops {
                let below = take_below(top.ids.clone(), &mut by_parent);
                self.draw_part(top, below, &mut outcome);
            }
            // (Parts whose parents are one another's: none a real trace
            // holds; each drawn on its own.)
            for part in by_parent.into_values().flatten() {
                self.draw_part(part, Vec::new(), &mut outcome);
            }
        }
        // Parts dropped from traces whose segment has not come: said now,
        // since at shutdown it never will.
        if !self.evicted.is_empty() {
            let mut text = String::new();
            for (trace, n) in std::mem::take(&mut self.evicted) {
                let _ = writeln!(text, "{}", not_drawn_note(n, Some(&trace)));
            }
            let _ = self
                .out
                .write_all(text.as_bytes())
                .and_then(|_| self.out.flush());
        }
        outcome
    }
}

/// The line saying that `n` subsegments of a trace (`trace`, when not the
/// one just drawn) were dropped before their segment came.
fn not_drawn_note(n: usize, trace: Option<&str>) -> String {
    let whose = match trace {
        Some(trace) => format!("trace {trace}"),
        None => "this trace".to_owned(),
    };
    format!(
        "({n} subsegments of {whose} are not drawn: more than \
         {MAX_PENDING_SUBSEGMENTS} waited for their segment)"
    )
}

impl TimelineExporter {
    /// Draws a waiting part with the parts `below` it, marked continued.
    fn draw_part(&mut self, part: Part, below: Vec<Part>, outcome: &mut ExportOutcome) {
        match serde_json::from_str(part.doc.as_str()) {
            Ok(mut root) => {
                let parts = attach_parts(&mut root, below, outcome);
                self.draw_tree(root, part.doc, parts, Some(Continued::BeforeIt), outcome);
            }
            Err(e) => {
                outcome.fail(part.doc, ExportError::Other(Box::new(e)));
                for part in below {
                    self.draw_part(part, Vec::new(), outcome);
                }
            }
        }
    }
}

/// Waiting parts by their parent's id.
fn by_parent(parts: Vec<Part>) -> HashMap<String, Vec<Part>> {
    let mut map: HashMap<String, Vec<Part>> = HashMap::new();
    for part in parts {
        map.entry(part.parent.clone()).or_default().push(part);
    }
    map
}

/// The parts hanging, at any depth, below the (sub)segments `ids`, taken
/// from `by_parent`.
fn take_below(mut ids: Vec<String>, by_parent: &mut HashMap<String, Vec<Part>>) -> Vec<Part> {
    let mut below = Vec::new();
    while let Some(id) = ids.pop() {
        if let Some(kids) = by_parent.remove(&id) {
            ids.extend(kids.iter().flat_map(|k| k.ids.iter().cloned()));
            below.extend(kids);
        }
    }
    below
}

/// The ids of the (sub)segments of the tree drawn from `root`.
fn tree_ids(root: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    let mut work = vec![root];
    while let Some(n) = work.pop() {
        if let Some(id) = n["id"].as_str() {
            ids.push(id.to_owned());
        }
        if let Some(children) = n["subsegments"].as_array() {
            work.extend(children);
        }
    }
    ids
}

/// Puts `parts` (all below `root`) under it, and returns their documents;
/// one that does not parse is reported failed.
fn attach_parts(root: &mut Value, parts: Vec<Part>, outcome: &mut ExportOutcome) -> Vec<Document> {
    let mut orphans: HashMap<String, Vec<Value>> = HashMap::new();
    let mut docs: HashMap<String, Vec<Document>> = HashMap::new();
    for part in parts {
        match serde_json::from_str(part.doc.as_str()) {
            Ok(value) => {
                orphans.entry(part.parent.clone()).or_default().push(value);
                docs.entry(part.parent).or_default().push(part.doc);
            }
            Err(e) => outcome.fail(part.doc, ExportError::Other(Box::new(e))),
        }
    }
    attach(root, &mut orphans);
    // Below a part that did not parse: not drawn, so failed too.
    for (parent, values) in orphans {
        drop_iteratively(Value::Array(values));
        for doc in docs.remove(&parent).unwrap_or_default() {
            outcome.fail(
                doc,
                ExportError::Other("not drawn: its parent's document did not parse".into()),
            );
        }
    }
    docs.into_values().flatten().collect()
}

/// Why a part of a trace is drawn apart from its segment.
#[derive(Clone, Copy)]
enum Continued {
    /// Its parent was drawn before it arrived (work that outlived it).
    AfterIt,
    /// A flush or the shutdown came before its segment.
    BeforeIt,
}

/// A streamed part waiting for its segment: its document, kept as it came
/// (parsed again when drawn), its parent's id, and the ids of its
/// (sub)segments (another part may hang below any of them).
struct Part {
    parent: String,
    ids: Vec<String>,
    doc: Document,
}

/// The terminal columns `s` takes, as terminals draw it (the
/// `unicode-width` crate: Unicode's East Asian Width and emoji
/// presentation): 2 for CJK, fullwidth forms and emoji (`✅`, `🚀`, and
/// `❤️`, a text character made emoji by its variation selector), 0 for
/// combining marks and zero-width characters, else 1. Whole strings, not
/// characters one by one: a variation selector widens the character
/// before it. The names drawn have no control characters left.
fn columns(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// The longest start of `s` that fits in `max` columns.
fn cut_to_columns(s: &str, max: usize) -> &str {
    if columns(s) <= max {
        return s;
    }
    // The longest start that fits: a start's width only grows with it, so
    // a binary search over the character boundaries finds it.
    let ends: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    let fitting = ends.partition_point(|&end| columns(&s[..end]) <= max);
    &s[..ends[fitting.saturating_sub(1)]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    thread_local! {
        /// Rows `mark_critical` looked at, on this thread.
        pub(super) static LOOKED_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn row(depth: usize, end: f64) -> Row {
        Row {
            depth,
            name: format!("r{depth}"),
            start: 0.0,
            end,
            marks: Vec::new(),
            annotations: String::new(),
            leaf: false,
            critical: false,
        }
    }

    /// The critical path walks back from each row's end over its children
    /// only: a chain of 20,000 rows is one look per row below the root (a
    /// scan of each subtree was 200 million).
    #[test]
    fn the_critical_path_looks_at_each_row_once() {
        // root → a (ends 5, with a child ending 9) and b (ends 7), both from
        // 0: concurrent, the root waited for b.
        let mut rows = vec![row(0, 10.0), row(1, 5.0), row(2, 9.0), row(1, 7.0)];
        let ends = subtree_ends(&rows);
        mark_critical(&mut rows, &ends);
        let marked: Vec<bool> = rows.iter().map(|r| r.critical).collect();
        assert_eq!(marked, [true, false, false, true]);

        let mut chain: Vec<Row> = (0..20_000).map(|d| row(d, 1.0)).collect();
        LOOKED_AT.with(|n| n.set(0));
        let ends = subtree_ends(&chain);
        mark_critical(&mut chain, &ends);
        assert!(chain.iter().all(|r| r.critical));
        assert_eq!(LOOKED_AT.with(std::cell::Cell::get), 19_999);
    }

    fn sample() -> Value {
        json!({
            "name": "quickstart", "id": "0000000000000001",
            "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
            "start_time": 100.0, "end_time": 103.0,
            "annotations": {"customer": "c-42"},
            "subsegments": [
                {"name": "call_api", "id": "0000000000000003", "start_time": 100.4, "end_time": 102.9, "fault": true},
                {"name": "load", "id": "0000000000000002", "start_time": 100.0, "end_time": 100.3, "namespace": "aws"}
            ]
        })
    }

    #[test]
    fn renders_rows_bars_and_bottleneck() {
        let t = TimelineExporter::to_writer(io::sink())
            .with_width(80)
            .ascii();
        let text = t.render(&sample(), None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[0].starts_with("trace 1-5759e988-bd862e3fe1be46a994272793  quickstart  3.00 s")
        );
        assert!(lines[1].starts_with("* quickstart"), "{text}");
        assert!(lines[1].contains("3000.0 ms"), "{text}");
        assert!(lines[1].contains("customer=c-42"));
        // Children sorted by start time; both are on the critical path: the
        // call started after the load ended.
        assert!(lines[2].starts_with("*   load (aws)"), "{text}");
        assert!(lines[3].starts_with("*   call_api"), "{text}");
        assert!(lines[3].ends_with("FAULT"), "{text}");
        assert_eq!(
            lines[4],
            "bottleneck: call_api, 2500.0 ms (83% of the trace)"
        );
        assert_eq!(
            lines[5],
            "critical path: quickstart -> load (aws) -> call_api"
        );
        // The bars sit on one axis: the root's is full, the first child's starts at 0.
        let bar = |l: &str| l.split('|').nth(1).unwrap().to_owned();
        assert!(!bar(lines[1]).contains(' '));
        assert!(bar(lines[2]).starts_with('#'));
        assert!(bar(lines[3]).starts_with(' '));
        assert!(lines.iter().all(|l| l.is_ascii()), "{text}");
        // A row fits the width asked, its marks and annotations included:
        // the bar leaves them room, and ends in the same column on each row.
        assert!(lines[1..4].iter().all(|l| l.len() <= 80), "{text}");
        assert_eq!(lines[1].len(), 80, "{text}");
        let edge = lines[1].rfind('|');
        assert!(lines[2..4].iter().all(|l| l.rfind('|') == edge), "{text}");
    }

    #[test]
    fn long_annotations_are_cut_to_the_width_and_long_jobs_keep_the_column() {
        let mut doc = sample();
        doc["annotations"]["note"] = json!("x".repeat(200));
        let text = TimelineExporter::to_writer(io::sink())
            .with_width(80)
            .ascii()
            .render(&doc, None);
        let root = text.lines().nth(1).unwrap();
        assert_eq!(root.len(), 80, "{text}");
        assert!(root.ends_with("xx~"), "{text}");
        // The bar keeps at least half the room right of the names.
        let bar = root.split('|').nth(1).unwrap();
        assert!(bar.len() >= 20, "{text}");
        // A job of hours: seconds, in the same 12 columns.
        assert_eq!(duration_column(3.0 * 3600.0), "  10800.0 s ");
        assert_eq!(duration_column(2.5), "   2500.0 ms");
        assert_eq!(short_duration(0.0041), "4.1 ms");
        assert_eq!(short_duration(2.5612), "2.56 s");
    }

    #[test]
    fn wide_names_keep_the_bars_aligned() {
        let mut doc = sample();
        doc["subsegments"][0]["name"] = json!("注文サービス");
        doc["subsegments"][1]["name"] = json!("Café\u{301}");
        let text = TimelineExporter::to_writer(io::sink())
            .with_width(80)
            .ascii()
            .render(&doc, None);
        let rows: Vec<&str> = text.lines().skip(1).take(3).collect();
        // The bars' left edge is in the same terminal column on every row.
        let edge = |l: &str| columns(&l[..l.find('|').unwrap()]);
        assert!(rows.iter().all(|r| edge(r) == edge(rows[0])), "{text}");
        assert!(rows[2].contains("注文サービス"), "{text}");
        // A name too wide for the label column is cut on a character, by
        // columns.
        assert_eq!(cut_to_columns("注文サービス", 5), "注文");
        assert_eq!(cut_to_columns("abc", 5), "abc");
        assert_eq!(columns("e\u{301}"), 1);
    }

    #[test]
    fn request_data_cannot_steer_the_terminal() {
        let mut doc = sample();
        doc["annotations"]["evil"] = json!("\u{1b}[2J\u{1b}[31mRED\nnewline");
        let text = TimelineExporter::to_writer(io::sink())
            .ascii()
            .with_width(200)
            .render(&doc, None);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(
            text.contains("evil=\\u{1b}[2J\\u{1b}[31mRED\\nnewline"),
            "{text}"
        );
    }

    /// Buffer shared with the exporter, for what it wrote.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_of_a_segment_wait_while_another_segment_of_the_trace_is_drawn() {
        use crate::id::{SegmentId, TraceId};
        let trace = TraceId::new();
        let (caller, callee, part) = (SegmentId::new(), SegmentId::new(), SegmentId::new());
        let doc =
            |kind, id: SegmentId, json: Value| Document::new(json.to_string(), kind, trace, id);
        let t = trace.to_string();
        // The caller's streamed child, then the callee's segment (it ends
        // first), then the caller's segment.
        let batch = vec![
            doc(
                DocumentKind::Subsegment,
                part,
                json!({"name": "early_work", "id": part.to_string(),
                "type": "subsegment", "trace_id": t, "parent_id": caller.to_string(),
                "start_time": 1.0, "end_time": 2.0}),
            ),
            doc(
                DocumentKind::Segment,
                callee,
                json!({"name": "callee", "id": callee.to_string(),
                "trace_id": t, "parent_id": "0000000000000009", "start_time": 3.0, "end_time": 4.0}),
            ),
            doc(
                DocumentKind::Segment,
                caller,
                json!({"name": "caller", "id": caller.to_string(),
                "trace_id": t, "start_time": 0.0, "end_time": 5.0}),
            ),
        ];
        let out = Shared::default();
        let mut timeline = TimelineExporter::to_writer(out.clone()).ascii();
        assert_eq!(timeline.export(batch).delivered, 3);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let caller_drawing = text.split("trace ").nth(2).unwrap_or_default();
        assert!(caller_drawing.contains("caller"), "{text}");
        assert!(caller_drawing.contains("early_work"), "{text}");
        assert_eq!(timeline.pending_count, 0);
    }

    #[test]
    fn merges_streamed_subsegments_before_drawing() {
        let mut root = json!({"name": "r", "id": "0000000000000001", "trace_id": "t", "start_time": 0.0, "end_time": 1.0});
        let mut orphans = HashMap::new();
        orphans.insert(
            "0000000000000001".to_owned(),
            vec![
                json!({"name": "c", "id": "0000000000000002", "start_time": 0.1, "end_time": 0.9}),
            ],
        );
        attach(&mut root, &mut orphans);
        assert_eq!(root["subsegments"][0]["name"], "c");
    }
}
