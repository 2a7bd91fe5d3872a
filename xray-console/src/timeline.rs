//! The timeline of one trace: rows grouped by (name, origin), and its critical path.
//!
//! The critical path starts at the root segment and walks back from its end: the child
//! (subsegment, or downstream segment whose `parent_id` is a subsegment) that ended last
//! is on the path, then the one that ended last before that child started, and so on,
//! recursively. Each entity on the path gets the time the path spends in it and not in a
//! child ("self time"); the bottleneck is the entity with the largest self time, and its
//! share is that time over the trace duration.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::model::{Entity, Health, HttpSummary};
use crate::store::{Assembled, Trace, MAX_DEPTH};

/// One bar.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Segment or subsegment id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Nesting depth in its group (0 = segment).
    pub depth: usize,
    /// Start (epoch seconds).
    pub start: f64,
    /// End (epoch seconds), absent while in progress.
    pub end: Option<f64>,
    /// In progress.
    pub in_progress: bool,
    /// `ok`, `error`, `throttle`, `fault`.
    pub health: &'static str,
    /// A segment (group header row) rather than a subsegment.
    pub segment: bool,
    /// `namespace`.
    pub namespace: Option<String>,
    /// HTTP summary.
    pub http: Option<HttpSummaryOut>,
    /// On the critical path.
    pub critical: bool,
    /// Self time on the critical path, in seconds.
    pub self_time: f64,
    /// The bottleneck row.
    pub bottleneck: bool,
    /// Starts before, or ends after, its parent (clock skew or a late part).
    pub skewed: bool,
    /// Streamed subsegments under this one (with their own subtrees) nested too deep to be
    /// grafted: they are shown apart, in the group of [`Group::deep`] rows.
    pub cut: usize,
    /// At the top of a tree shown apart for being nested too deep: the id of the entity it
    /// was cut from.
    pub cut_from: Option<String>,
    /// In a parent cycle: its chain of parent_ids leads back to it. Shown in the group of
    /// [`Group::cycle`] rows, each loop from its earliest member.
    pub cycle: bool,
    /// The entity's JSON, without its `subsegments`.
    pub detail: Value,
}

/// HTTP fields of a row.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSummaryOut {
    /// Method.
    pub method: Option<String>,
    /// URL.
    pub url: Option<String>,
    /// Status.
    pub status: Option<u16>,
}

impl From<&HttpSummary> for HttpSummaryOut {
    fn from(h: &HttpSummary) -> Self {
        HttpSummaryOut {
            method: h.method.clone(),
            url: h.url.clone(),
            status: h.status,
        }
    }
}

/// Rows under one header.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Segment name.
    pub name: String,
    /// Segment origin.
    pub origin: Option<String>,
    /// Which trees the group holds, serialized as the flags `orphan`, `cycle` and `deep`.
    #[serde(flatten)]
    pub kind: Kind,
    /// Rows.
    pub rows: Vec<Row>,
}

/// Which of an [`Assembled`] trace's lists a group's trees come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Segments (a group per name and origin).
    Segment,
    /// Subsegments whose parent has not arrived.
    Orphan,
    /// Subsegments in or under a parent cycle, each loop from its earliest member.
    Cycle,
    /// Subsegments nested deeper than [`MAX_DEPTH`] levels, cut from their parent and
    /// shown apart.
    Deep,
}

/// Three flags, at most one of them true (none for segments): what the page's scripts
/// and `/api/timeline` have always been given.
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut flags = s.serialize_struct("Kind", 3)?;
        flags.serialize_field("orphan", &(*self == Kind::Orphan))?;
        flags.serialize_field("cycle", &(*self == Kind::Cycle))?;
        flags.serialize_field("deep", &(*self == Kind::Deep))?;
        flags.end()
    }
}

/// The bottleneck of a trace.
#[derive(Debug, Clone, Serialize)]
pub struct Bottleneck {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Name of its group (segment).
    pub group: String,
    /// Self time on the critical path, seconds.
    pub self_time: f64,
    /// Share of the trace duration (0..=1).
    pub share: f64,
}

/// A trace's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// Trace id.
    pub trace_id: String,
    /// Axis start.
    pub start: f64,
    /// Axis end.
    pub end: f64,
    /// Groups in order of first start.
    pub groups: Vec<Group>,
    /// Ids on the critical path, root first.
    pub critical_path: Vec<String>,
    /// The bottleneck.
    pub bottleneck: Option<Bottleneck>,
    /// Where the critical path stopped at [`MAX_PATH_DEPTH`] with children left unfollowed:
    /// that entity's id and name (all its time counts as its own).
    pub path_cut: Option<(String, String)>,
    /// Why the trace is partial.
    pub partial: Vec<String>,
}

fn details(trace: &Trace) -> HashMap<String, Value> {
    fn walk(v: &Value, out: &mut HashMap<String, Value>) {
        let Some(obj) = v.as_object() else { return };
        if let Some(subs) = obj.get("subsegments").and_then(Value::as_array) {
            for s in subs {
                walk(s, out);
            }
        }
        if let Some(id) = obj.get("id").and_then(Value::as_str) {
            let mut o = obj.clone();
            o.remove("subsegments");
            out.insert(id.to_owned(), Value::Object(o));
        }
    }
    let mut out = HashMap::new();
    // The copies the rows are drawn from: a late in-progress copy of a subsegment
    // does not stand in for its complete one.
    for d in trace.counted_docs() {
        if let Ok(v) = serde_json::from_str::<Value>(&d.raw) {
            walk(&v, &mut out);
        }
    }
    out
}

/// How deep the critical path follows children and downstream segments; an entity at
/// this depth counts its whole time as its own. Downstream segments are not grafted, so
/// a chain of segments (each called by a subsegment of the one before) could otherwise
/// make the walk recurse deep enough to overflow a thread's stack.
pub const MAX_PATH_DEPTH: usize = 256;

/// The critical path from a root: `(id, self time)` pairs, root first.
#[derive(Debug, Clone, Default)]
pub struct CriticalPath {
    /// `(id, self time)` pairs, root first.
    pub steps: Vec<(String, f64)>,
    /// The entity at [`MAX_PATH_DEPTH`] whose children the walk did not follow, if any.
    pub cut: Option<(String, String)>,
}

/// Computes the critical path from a root.
pub fn critical_path(root: &Entity, segments: &[Entity]) -> CriticalPath {
    let mut downstream: HashMap<&str, Vec<&Entity>> = HashMap::new();
    for s in segments {
        if let Some(p) = s.parent_id.as_deref() {
            if s.id != root.id {
                downstream.entry(p).or_default().push(s);
            }
        }
    }
    fn go<'a>(
        e: &'a Entity,
        depth: usize,
        down: &HashMap<&str, Vec<&'a Entity>>,
        seen: &mut HashSet<&'a str>,
        out: &mut CriticalPath,
    ) {
        if !seen.insert(e.id.as_str()) {
            return;
        }
        // Each child, and whether it is a downstream segment (timed by another host's
        // clock).
        let mut kids: Vec<(&Entity, bool)> = e
            .children
            .iter()
            .map(|k| (k, false))
            .chain(
                down.get(e.id.as_str())
                    .into_iter()
                    .flatten()
                    .map(|&k| (k, true)),
            )
            .filter(|(k, _)| k.end.is_some())
            .collect();
        if depth >= MAX_PATH_DEPTH && !kids.is_empty() {
            // Said on the page: the bottleneck may be this entity only for want of depth.
            out.cut = Some((e.id.clone(), e.name.clone()));
            kids.clear();
        }
        kids.sort_by(|a, b| b.0.end.unwrap_or(0.0).total_cmp(&a.0.end.unwrap_or(0.0)));
        let end = e.end.unwrap_or_else(|| {
            kids.first()
                .and_then(|k| k.0.end)
                .unwrap_or(e.start)
                .max(e.start)
        });
        let at = out.steps.len();
        out.steps.push((e.id.clone(), 0.0));
        let mut t = end;
        let mut self_time = 0.0;
        for (k, downstream) in kids {
            let mut kend = k.end.unwrap_or(k.start);
            // A downstream segment is the work of the call it hangs from: its end, by
            // another host's clock, may pass the call's by a skew, and is taken as the
            // call's.
            if downstream {
                kend = kend.min(t);
            }
            if kend > t + 1e-9 || seen.contains(k.id.as_str()) {
                continue;
            }
            self_time += (t - kend).max(0.0);
            go(k, depth + 1, down, seen, out);
            t = k.start.min(kend);
            if t <= e.start {
                break;
            }
        }
        self_time += (t - e.start).max(0.0);
        out.steps[at].1 = self_time;
    }
    let mut out = CriticalPath::default();
    go(root, 0, &downstream, &mut HashSet::new(), &mut out);
    out
}

/// Builds the timeline of a stored trace.
pub fn build(trace: &Trace) -> Timeline {
    let a: Assembled = trace.assemble();
    let mut detail = details(trace);
    let (start, end) = a.span();
    let path = a
        .root()
        .map(|r| critical_path(r, &a.segments))
        .unwrap_or_default();
    let on_path: HashMap<&str, f64> = path.steps.iter().map(|(id, t)| (id.as_str(), *t)).collect();
    // How many subtrees were cut from under each entity, to mark it.
    let mut cut: HashMap<&str, usize> = HashMap::new();
    for d in &a.deep {
        *cut.entry(d.parent_id.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    let duration = end - start;
    let bottleneck_id = path
        .steps
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, t)| *t > 0.0)
        .map(|(id, _)| id.clone());

    let mut groups: Vec<Group> = Vec::new();
    // Each group's index, by kind (and for segments, name and origin): found at once, not
    // by a scan of the groups so far (a trace of 20,000 services took seconds).
    /// A group's kind, and for segments their name and origin.
    type GroupKey = (Kind, Option<(String, Option<String>)>);
    let mut group_of: HashMap<GroupKey, usize> = HashMap::new();
    let mut bottleneck = None;
    let mut add_tree = |root: &Entity, kind: Kind, groups: &mut Vec<Group>| {
        // One group per kind, but segments have one per name and origin.
        let key = (
            kind,
            (kind == Kind::Segment).then(|| (root.name.clone(), root.origin.clone())),
        );
        let gi = *group_of.entry(key).or_insert_with(|| {
            groups.push(Group {
                name: match kind {
                    Kind::Segment => root.name.clone(),
                    Kind::Orphan => "Subsegments whose parent has not arrived".into(),
                    Kind::Cycle => "Subsegments in a parent cycle".into(),
                    Kind::Deep => {
                        format!("Subsegments nested deeper than {MAX_DEPTH} levels, shown apart")
                    }
                },
                origin: if kind == Kind::Segment {
                    root.origin.clone()
                } else {
                    None
                },
                kind,
                rows: Vec::new(),
            });
            groups.len() - 1
        });
        let group_name = groups[gi].name.clone();
        let rows = &mut groups[gi].rows;
        fn push(
            e: &Entity,
            parent: Option<&Entity>,
            depth: usize,
            ctx: &mut dyn FnMut(&Entity, Option<&Entity>, usize),
        ) {
            ctx(e, parent, depth);
            let mut kids: Vec<&Entity> = e.children.iter().collect();
            kids.sort_by(|a, b| a.start.total_cmp(&b.start));
            for k in kids {
                push(k, Some(e), depth + 1, ctx);
            }
        }
        push(root, None, 0, &mut |e, parent, depth| {
            let skewed = parent.is_some_and(|p| {
                e.start + 1e-6 < p.start
                    || matches!((e.end, p.end), (Some(ce), Some(pe)) if ce > pe + 1e-6)
            });
            let is_bottleneck = bottleneck_id.as_deref() == Some(e.id.as_str());
            let self_time = on_path.get(e.id.as_str()).copied().unwrap_or(0.0);
            if is_bottleneck {
                bottleneck = Some(Bottleneck {
                    id: e.id.clone(),
                    name: e.name.clone(),
                    group: group_name.clone(),
                    self_time,
                    share: if duration > 0.0 {
                        self_time / duration
                    } else {
                        0.0
                    },
                });
            }
            rows.push(Row {
                id: e.id.clone(),
                name: e.name.clone(),
                depth,
                start: e.start,
                end: e.end,
                in_progress: e.in_progress,
                health: match e.health() {
                    Health::Ok => "ok",
                    h => h.as_str(),
                },
                segment: depth == 0 && kind == Kind::Segment,
                namespace: e.namespace.clone(),
                http: e.http.as_ref().map(HttpSummaryOut::from),
                critical: on_path.contains_key(e.id.as_str()),
                self_time,
                bottleneck: is_bottleneck,
                skewed,
                cut: cut.get(e.id.as_str()).copied().unwrap_or(0),
                cut_from: if kind == Kind::Deep && depth == 0 {
                    e.parent_id.clone()
                } else {
                    None
                },
                cycle: kind == Kind::Cycle && a.looped.contains(&e.id),
                detail: detail.remove(&e.id).unwrap_or(Value::Null),
            });
        });
    };
    for s in &a.segments {
        add_tree(s, Kind::Segment, &mut groups);
    }
    for o in &a.orphans {
        add_tree(o, Kind::Orphan, &mut groups);
    }
    for c in &a.cycles {
        add_tree(c, Kind::Cycle, &mut groups);
    }
    for d in &a.deep {
        add_tree(d, Kind::Deep, &mut groups);
    }
    Timeline {
        trace_id: a.id.clone(),
        start,
        end,
        groups,
        critical_path: path.steps.into_iter().map(|(id, _)| id).collect(),
        bottleneck,
        path_cut: path.cut,
        partial: a.partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, Store};
    use serde_json::json;

    /// Each group's `orphan`, `cycle` and `deep` flags as `/api/timeline` gives them.
    fn flags(tl: &Timeline) -> Vec<[Option<bool>; 3]> {
        let json = serde_json::to_value(tl).unwrap();
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| ["orphan", "cycle", "deep"].map(|k| g[k].as_bool()))
            .collect()
    }

    /// The fastest of 3 `build`s of one trace of `n` segments, each its own service
    /// when `apart`.
    fn time_build(n: usize, apart: bool) -> std::time::Duration {
        let mut s = Store::new(Limits {
            max_traces: 10,
            max_bytes: 1 << 30,
        });
        for i in 0..n {
            let name = if apart {
                format!("svc-{i}")
            } else {
                "svc".into()
            };
            let d = json!({"trace_id":"t","id":format!("{:016x}", i + 1),"name":name,
                "start_time":1000.0 + i as f64,"end_time":1000.5 + i as f64});
            s.insert(d.to_string(), Entity::from_document(&d).unwrap());
        }
        let trace = s.get("t").unwrap();
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                let tl = build(trace);
                assert_eq!(tl.groups.len(), if apart { n } else { 1 });
                t.elapsed()
            })
            .min()
            .unwrap()
    }

    /// A trace of many services (a peer can send one) is grouped in linear time: each
    /// group was found by a scan of the groups made so far, and the page held the
    /// store's lock meanwhile. The same segments named apart or alike take about the
    /// same time (measured, debug, 16,000 segments: 1.3x with the index, 13x with the
    /// scan; the bound leaves 4x for a busy machine).
    #[test]
    fn a_trace_of_many_services_is_grouped_in_linear_time() {
        let alike = time_build(16_000, false);
        let apart = time_build(16_000, true);
        let ratio = apart.as_secs_f64() / alike.as_secs_f64().max(1e-6);
        assert!(
            ratio < 6.0,
            "{apart:?} named apart, {alike:?} alike ({ratio:.1}x)"
        );
    }

    #[test]
    fn critical_path_and_bottleneck_cross_segments() {
        let mut s = Store::new(Limits::default());
        let docs = [
            json!({"trace_id":"t","id":"root","name":"front","start_time":0.0,"end_time":1.0,
            "subsegments":[
              {"id":"a","name":"cache","start_time":0.05,"end_time":0.1},
              {"id":"b","name":"backend","namespace":"remote","start_time":0.1,"end_time":0.9},
              {"id":"c","name":"parallel","start_time":0.2,"end_time":0.3}
            ]}),
            json!({"trace_id":"t","id":"down","parent_id":"b","name":"backend","start_time":0.15,"end_time":0.85,
              "subsegments":[{"id":"q","name":"query","namespace":"remote","start_time":0.2,"end_time":0.8,"fault":true}]}),
        ];
        for d in docs {
            s.insert(d.to_string(), Entity::from_document(&d).unwrap());
        }
        let tl = build(s.get("t").unwrap());
        assert_eq!(tl.critical_path, ["root", "b", "down", "q", "a"]);
        assert!(tl.path_cut.is_none());
        let b = tl.bottleneck.unwrap();
        assert_eq!(b.name, "query");
        assert_eq!(b.group, "backend");
        assert!((b.share - 0.6).abs() < 1e-9);
        assert_eq!(tl.groups.len(), 2);
        assert_eq!(tl.groups[0].rows.len(), 4);
        let q = &tl.groups[1].rows[1];
        assert!(q.bottleneck && q.critical && q.health == "fault");
        assert!(q.detail.get("subsegments").is_none());
        assert_eq!(q.detail["name"], "query");
        let c = tl.groups[0].rows.iter().find(|r| r.id == "c").unwrap();
        assert!(!c.critical);
        // root: 0..0.05 and 0.9..1.0 are its own.
        let root = &tl.groups[0].rows[0];
        assert!((root.self_time - 0.15).abs() < 1e-9);
    }

    #[test]
    fn a_long_chain_of_downstream_segments_is_walked_without_overflow() {
        // 20,000 segments, each called by the one subsegment of the one before: the
        // critical path crosses them all. Built on a spawned thread (default stack), as
        // the HTTP workers do.
        let mut s = Store::new(Limits {
            max_traces: 1,
            max_bytes: usize::MAX,
        });
        for i in 0..20_000 {
            let mut d = json!({"trace_id":"t","id":format!("g{i}"),"name":"svc","start_time":1.0,"end_time":2.0,
                "subsegments":[{"id":format!("c{i}"),"name":"call","namespace":"remote","start_time":1.0,"end_time":2.0}]});
            if i > 0 {
                d["parent_id"] = json!(format!("c{}", i - 1));
            }
            s.insert(d.to_string(), Entity::from_document(&d).unwrap());
        }
        let trace = s.get("t").unwrap().clone();
        let tl = std::thread::spawn(move || build(&trace)).join().unwrap();
        assert_eq!(tl.critical_path.len(), MAX_PATH_DEPTH + 1);
        assert_eq!(tl.critical_path[0], "g0");
        assert!(tl.bottleneck.is_some());
        // Where the path stops is said: it is the bottleneck only for want of depth.
        let (id, name) = tl.path_cut.clone().unwrap();
        assert_eq!((id.as_str(), name.as_str()), ("g128", "svc"));
        assert_eq!(tl.critical_path.last(), Some(&id));
        let page = crate::pages::trace_page(&tl, &json!({}));
        assert!(page.contains("id=\"path-cut\""));
    }

    #[test]
    fn parent_cycles_are_labelled() {
        // a's parent is b and b's is a, with c under a.
        let mut s = Store::new(Limits::default());
        for d in [
            json!({"trace_id":"t","id":"s","name":"front","start_time":1.0,"end_time":2.0}),
            json!({"trace_id":"t","id":"a","parent_id":"b","type":"subsegment","name":"call a",
                "start_time":1.2,"end_time":1.8}),
            json!({"trace_id":"t","id":"b","parent_id":"a","type":"subsegment","name":"call b",
                "start_time":1.1,"end_time":1.9}),
            json!({"trace_id":"t","id":"c","parent_id":"a","type":"subsegment","name":"call c",
                "start_time":1.3,"end_time":1.4}),
        ] {
            s.insert(d.to_string(), Entity::from_document(&d).unwrap());
        }
        let tl = build(s.get("t").unwrap());
        let groups: Vec<(&str, Kind)> = tl
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.kind))
            .collect();
        assert_eq!(
            groups,
            [
                ("front", Kind::Segment),
                ("Subsegments in a parent cycle", Kind::Cycle)
            ]
        );
        let rows: Vec<(&str, usize, bool)> = tl.groups[1]
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r.depth, r.cycle))
            .collect();
        assert_eq!(rows, [("b", 0, true), ("a", 1, true), ("c", 2, false)]);
        assert!(tl.partial[0].contains("2 subsegment(s) in 1 parent cycle(s)"));
        // What `/api/timeline` gives, and the page.
        let json = serde_json::to_value(&tl).unwrap();
        assert_eq!(json["groups"][1]["cycle"], true);
        let (no, yes) = (Some(false), Some(true));
        assert_eq!(flags(&tl), [[no, no, no], [no, yes, no]]);
        assert_eq!(json["groups"][1]["rows"][0]["cycle"], true);
        let page = crate::pages::trace_page(&tl, &json!({}));
        assert_eq!(page.matches(">parent cycle</span>").count(), 2);
    }

    #[test]
    fn subsegments_cut_at_the_depth_limit_are_labelled() {
        // A segment with a chain of 100 streamed subsegments, each the parent of the next
        // (s1..s64 are grafted, s65..s100 nested too deep), and a chain of 70 whose first
        // parent never arrives (o1..o64 grafted under o0, o65..o69 too deep).
        let mut s = Store::new(Limits::default());
        let mut put = |d: Value| {
            s.insert(d.to_string(), Entity::from_document(&d).unwrap());
        };
        put(json!({"trace_id":"t","id":"s0","name":"front","start_time":1.0,"end_time":2.0}));
        let link = |p: &str, i: usize, parent: String| {
            json!({"trace_id":"t","id":format!("{p}{i}"),"parent_id":parent,
                "type":"subsegment","name":format!("call {p}{i}"),"start_time":1.0,"end_time":2.0})
        };
        for i in 1..=100 {
            put(link("s", i, format!("s{}", i - 1)));
        }
        put(link("o", 0, "missing".into()));
        for i in 1..70 {
            put(link("o", i, format!("o{}", i - 1)));
        }
        let tl = build(s.get("t").unwrap());
        assert_eq!(
            tl.partial,
            [
                "1 subsegment(s) whose parent has not arrived",
                "41 subsegment(s) nested deeper than 64 levels are shown apart, cut from under \
                 2 subsegment(s); the critical path does not follow them"
            ]
        );
        let names: Vec<(&str, usize, Kind)> = tl
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.rows.len(), g.kind))
            .collect();
        assert_eq!(
            names,
            [
                ("front", 65, Kind::Segment),
                ("Subsegments whose parent has not arrived", 65, Kind::Orphan),
                (
                    "Subsegments nested deeper than 64 levels, shown apart",
                    41,
                    Kind::Deep
                ),
            ]
        );
        let (no, yes) = (Some(false), Some(true));
        assert_eq!(flags(&tl), [[no, no, no], [yes, no, no], [no, no, yes]]);
        // Where each chain was cut, and where it goes on.
        let row = |id: &str| {
            tl.groups
                .iter()
                .flat_map(|g| &g.rows)
                .find(|r| r.id == id)
                .unwrap()
        };
        for (at, next) in [("s64", "s65"), ("o64", "o65")] {
            assert_eq!((row(at).cut, row(at).depth), (1, 64));
            assert_eq!(
                (row(next).cut_from.as_deref(), row(next).depth),
                (Some(at), 0)
            );
        }
        let cut: usize = tl.groups.iter().flat_map(|g| &g.rows).map(|r| r.cut).sum();
        let continued = tl
            .groups
            .iter()
            .flat_map(|g| &g.rows)
            .filter(|r| r.cut_from.is_some());
        assert_eq!((cut, continued.count()), (2, 2));
        assert_eq!(tl.critical_path.last().map(String::as_str), Some("s64"));
        let page = crate::pages::trace_page(&tl, &json!({}));
        assert_eq!(page.matches(">1 deeper, shown apart</span>").count(), 2);
        assert_eq!(page.matches(">continued</span>").count(), 2);
        assert!(page.contains("nested under s64, deeper than 64 levels"));
    }
}
