//! The service map: nodes keyed by (name, type), edges carrying the caller's timings.
//!
//! - A segment gives a service node; its type is the segment's `origin`, or `service`
//!   when the segment has none.
//! - An `aws` or `remote` subsegment gives an inferred downstream node: a DynamoDB table
//!   (`aws.table_name`), an S3 bucket (`aws.bucket_name`) or an SQS queue (`aws.queue_url`)
//!   gets its own node, another AWS call an `AWS::<name>` node, a remote call with an `sql`
//!   block a `Database::SQL` node and any other remote call a `remote` node.
//! - When a downstream segment's `parent_id` is the id of such a subsegment, the real
//!   service replaces the inferred node, and the edge carries the subsegment's timings.
//! - Segments without a known caller are called by the `client` node.
//! - Subsegments cut from their parent at the store's depth limit count as if grafted:
//!   the segment they were cut from makes their calls.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{json, Value};

use crate::model::{Entity, Health};
use crate::store::Assembled;

/// The type of the client node.
pub const CLIENT: &str = "client";
/// The type of a service node whose segment has no `origin`.
pub const SERVICE: &str = "service";

/// A node's identity: name and type, as the console keys them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// The node name (service name, table name, ...).
    pub name: String,
    /// The node type (`AWS::EC2::Instance`, `AWS::DynamoDB::Table`, `remote`, `client` ...).
    pub kind: String,
}

impl NodeKey {
    fn new(name: impl Into<String>, kind: impl Into<String>) -> NodeKey {
        NodeKey {
            name: name.into(),
            kind: kind.into(),
        }
    }

    /// The client node.
    pub fn client() -> NodeKey {
        NodeKey::new(CLIENT, CLIENT)
    }
}

/// One observation of a node or an edge in one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Health of the observed segment or subsegment.
    pub health: Health,
    /// Its duration in seconds.
    pub duration: f64,
    /// Its start.
    pub start: f64,
    /// Its end (start while in progress).
    pub end: f64,
    /// Still in progress: seen, but not a finished call (it counts in no
    /// statistic until it ends).
    pub in_progress: bool,
}

impl Hit {
    fn of(e: &Entity) -> Hit {
        Hit {
            health: e.health(),
            duration: e.duration(),
            start: e.start,
            end: e.end.unwrap_or(e.start),
            in_progress: e.in_progress,
        }
    }
}

/// Nodes and edges seen in one trace.
#[derive(Debug, Clone, Default)]
pub struct TraceGraph {
    /// Node observations.
    pub nodes: Vec<(NodeKey, Hit)>,
    /// Edge observations: caller, callee and the caller's timings.
    pub edges: Vec<(NodeKey, NodeKey, Hit)>,
}

fn segment_key(s: &Entity) -> NodeKey {
    NodeKey::new(
        s.name.clone(),
        s.origin.clone().unwrap_or_else(|| SERVICE.to_owned()),
    )
}

/// The inferred node a downstream subsegment calls, if it is a downstream call.
pub fn inferred_key(sub: &Entity) -> Option<NodeKey> {
    match sub.namespace.as_deref() {
        Some("aws") => {
            let aws = sub.aws.clone().unwrap_or_default();
            Some(if let Some(t) = aws.table_name {
                NodeKey::new(t, "AWS::DynamoDB::Table")
            } else if let Some(b) = aws.bucket_name {
                NodeKey::new(b, "AWS::S3::Bucket")
            } else if let Some(q) = aws.queue_url {
                let name = q.trim_end_matches('/').rsplit('/').next().unwrap_or(&q);
                NodeKey::new(name, "AWS::SQS::Queue")
            } else {
                NodeKey::new(sub.name.clone(), format!("AWS::{}", sub.name))
            })
        }
        Some("remote") if sub.sql => Some(NodeKey::new(sub.name.clone(), "Database::SQL")),
        Some("remote") => Some(NodeKey::new(sub.name.clone(), "remote")),
        _ => None,
    }
}

/// Finds the nodes and edges of one trace.
///
/// A subtree cut from its parent at the store's depth limit ([`Assembled::deep`]) counts
/// as if grafted where it was cut from: its calls are made by the segment it was cut from
/// (through any number of cuts), unless they lie inside a call there. A subtree cut from a
/// subsegment whose parent has not arrived counts no more than that subsegment.
pub fn trace_graph(a: &Assembled) -> TraceGraph {
    let mut g = TraceGraph::default();
    // The subtrees cut at the depth limit, by the id of the entity each was cut from.
    let mut cut: HashMap<&str, Vec<&Entity>> = HashMap::new();
    for d in &a.deep {
        cut.entry(d.parent_id.as_deref().unwrap_or_default())
            .or_default()
            .push(d);
    }
    // The subsegment trees of each segment: its children, then each subtree cut from under
    // them, in turn (a loop, not a recursion: a chain of cuts is as long as the documents
    // allow). Each as (segment index, tree, inside a call where it was cut from).
    let mut trees: Vec<(usize, &Entity, bool)> = Vec::new();
    for (i, s) in a.segments.iter().enumerate() {
        trees.extend(s.children.iter().map(|c| (i, c, false)));
    }
    // Where every subsegment lives, and which subsegments a downstream segment claims.
    let mut sub_owner: HashMap<&str, (usize, &Entity)> = HashMap::new();
    let mut next = 0;
    while let Some(&(i, tree, in_call)) = trees.get(next) {
        next += 1;
        fn visit<'a>(
            e: &'a Entity,
            i: usize,
            in_call: bool,
            cut: &mut HashMap<&str, Vec<&'a Entity>>,
            sub_owner: &mut HashMap<&'a str, (usize, &'a Entity)>,
            trees: &mut Vec<(usize, &'a Entity, bool)>,
        ) {
            sub_owner.insert(e.id.as_str(), (i, e));
            let in_call = in_call || inferred_key(e).is_some();
            // Taken once: each cut subtree is visited once, whatever the ids.
            if let Some(more) = cut.remove(e.id.as_str()) {
                trees.extend(more.into_iter().map(|d| (i, d, in_call)));
            }
            for c in &e.children {
                visit(c, i, in_call, cut, sub_owner, trees);
            }
        }
        visit(tree, i, in_call, &mut cut, &mut sub_owner, &mut trees);
    }
    let seg_ids: HashMap<&str, usize> = a
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let linked: HashSet<&str> = a
        .segments
        .iter()
        .filter_map(|s| s.parent_id.as_deref())
        .filter(|p| sub_owner.contains_key(p))
        .collect();
    for s in &a.segments {
        let key = segment_key(s);
        g.nodes.push((key.clone(), Hit::of(s)));
        match s.parent_id.as_deref() {
            Some(p) if sub_owner.contains_key(p) => {
                let (j, caller) = sub_owner[p];
                g.edges
                    .push((segment_key(&a.segments[j]), key.clone(), Hit::of(caller)));
            }
            Some(p) if seg_ids.contains_key(p) && seg_ids[p] != seg_ids[s.id.as_str()] => {
                g.edges.push((
                    segment_key(&a.segments[seg_ids[p]]),
                    key.clone(),
                    Hit::of(s),
                ));
            }
            _ => g.edges.push((NodeKey::client(), key.clone(), Hit::of(s))),
        }
    }
    fn downstream(e: &Entity, caller: &NodeKey, linked: &HashSet<&str>, g: &mut TraceGraph) {
        if let Some(k) = inferred_key(e) {
            if !linked.contains(e.id.as_str()) {
                g.nodes.push((k.clone(), Hit::of(e)));
                g.edges.push((caller.clone(), k, Hit::of(e)));
            }
            // The call's own children (marshal, attempt, ...) are part of the call.
            return;
        }
        for c in &e.children {
            downstream(c, caller, linked, g);
        }
    }
    for &(i, tree, in_call) in &trees {
        if !in_call {
            downstream(tree, &segment_key(&a.segments[i]), &linked, &mut g);
        }
    }
    g
}

/// Aggregated statistics of a node or an edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Count of ok calls.
    pub ok: u64,
    /// Count of client errors (4xx other than 429).
    pub error: u64,
    /// Count of throttled calls (429).
    pub throttle: u64,
    /// Count of faults (5xx).
    pub fault: u64,
    /// Sum of durations in seconds.
    pub total_time: f64,
    /// Durations rounded to the millisecond, with counts.
    pub histogram: BTreeMap<u64, u64>,
    /// Earliest start.
    pub start: f64,
    /// Latest end.
    pub end: f64,
    /// Distinct traces.
    pub traces: BTreeSet<String>,
}

impl Stats {
    fn add(&mut self, h: &Hit, trace: &str) {
        if !self.traces.contains(trace) {
            self.traces.insert(trace.to_owned());
        }
        if h.in_progress {
            return;
        }
        if self.total() == 0 {
            self.start = h.start;
            self.end = h.end;
        }
        match h.health {
            Health::Ok => self.ok += 1,
            Health::Error => self.error += 1,
            Health::Throttle => self.throttle += 1,
            Health::Fault => self.fault += 1,
        }
        self.total_time += h.duration;
        *self
            .histogram
            .entry((h.duration * 1000.0).round() as u64)
            .or_default() += 1;
        self.start = self.start.min(h.start);
        self.end = self.end.max(h.end);
    }

    /// Number of calls.
    pub fn total(&self) -> u64 {
        self.ok + self.error + self.throttle + self.fault
    }

    /// Average duration in seconds.
    pub fn average(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.total_time / self.total() as f64
        }
    }

    /// The GetServiceGraph `SummaryStatistics` object.
    pub fn summary_json(&self) -> Value {
        json!({
            "OkCount": self.ok,
            "ErrorStatistics": {
                "ThrottleCount": self.throttle,
                "OtherCount": self.error,
                "TotalCount": self.error + self.throttle,
            },
            "FaultStatistics": {"OtherCount": self.fault, "TotalCount": self.fault},
            "TotalCount": self.total(),
            "TotalResponseTime": self.total_time,
        })
    }

    fn histogram_json(&self) -> Value {
        Value::Array(
            self.histogram
                .iter()
                .map(|(ms, n)| json!({"Value": *ms as f64 / 1000.0, "Count": n}))
                .collect(),
        )
    }
}

/// A node of the map.
#[derive(Debug, Clone)]
pub struct Node {
    /// Name and type.
    pub key: NodeKey,
    /// Its own statistics (service: its segments; inferred: the calls to it).
    pub stats: Stats,
    /// Outgoing edges by target node index.
    pub edges: BTreeMap<usize, Stats>,
    /// Called by the client node.
    pub root: bool,
}

impl Node {
    /// Whether the node is a service that sends segments (rather than inferred).
    pub fn is_inferred(&self) -> bool {
        let k = self.key.kind.as_str();
        k == "remote" || k == "Database::SQL" || (k.starts_with("AWS::") && !is_origin(k))
    }
}

fn is_origin(kind: &str) -> bool {
    matches!(
        kind,
        "AWS::EC2::Instance"
            | "AWS::ECS::Container"
            | "AWS::ECS::EC2"
            | "AWS::ECS::Fargate"
            | "AWS::EKS::Container"
            | "AWS::ElasticBeanstalk::Environment"
            | "AWS::Lambda::Function"
            | "AWS::Lambda"
            | "AWS::AppRunner::Service"
            | "AWS::ApiGateway::Stage"
    )
}

/// The whole map.
#[derive(Debug, Clone, Default)]
pub struct ServiceMap {
    /// Nodes, sorted by (name, type).
    pub nodes: Vec<Node>,
    /// Earliest start seen.
    pub start: f64,
    /// Latest end seen.
    pub end: f64,
}

impl ServiceMap {
    /// Aggregates the graphs of many traces.
    pub fn build<'a>(traces: impl IntoIterator<Item = (&'a str, TraceGraph)>) -> ServiceMap {
        let mut nodes: BTreeMap<NodeKey, (Stats, BTreeMap<NodeKey, Stats>, bool)> = BTreeMap::new();
        for (trace, g) in traces {
            for (k, h) in &g.nodes {
                nodes.entry(k.clone()).or_default().0.add(h, trace);
            }
            for (from, to, h) in &g.edges {
                nodes.entry(to.clone()).or_default();
                if from == &NodeKey::client() {
                    nodes.get_mut(to).expect("inserted above").2 = true;
                }
                nodes
                    .entry(from.clone())
                    .or_default()
                    .1
                    .entry(to.clone())
                    .or_default()
                    .add(h, trace);
            }
        }
        let index: HashMap<NodeKey, usize> = nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut start = f64::INFINITY;
        let mut end = f64::NEG_INFINITY;
        let nodes: Vec<Node> = nodes
            .into_iter()
            .map(|(key, (stats, edges, root))| {
                for s in std::iter::once(&stats).chain(edges.values()) {
                    if s.total() > 0 {
                        start = start.min(s.start);
                        end = end.max(s.end);
                    }
                }
                Node {
                    key,
                    stats,
                    edges: edges.into_iter().map(|(k, s)| (index[&k], s)).collect(),
                    root,
                }
            })
            .collect();
        if !start.is_finite() {
            start = 0.0;
            end = 0.0;
        }
        ServiceMap { nodes, start, end }
    }

    /// Index of a node.
    pub fn find(&self, name: &str, kind: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.key.name == name && n.key.kind == kind)
    }

    /// Minutes covered by the map (at least one).
    pub fn minutes(&self) -> f64 {
        ((self.end - self.start) / 60.0).max(1.0)
    }

    /// Traces per minute through a node.
    pub fn traces_per_minute(&self, i: usize) -> f64 {
        let n = &self.nodes[i];
        let traces = if n.key == NodeKey::client() {
            n.edges
                .values()
                .flat_map(|s| s.traces.iter())
                .collect::<BTreeSet<_>>()
                .len()
        } else {
            n.stats.traces.len()
        };
        traces as f64 / self.minutes()
    }

    /// The map in the shape of X-Ray's `GetServiceGraph` response.
    pub fn to_service_graph(&self) -> Value {
        let services: Vec<Value> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let edges: Vec<Value> = n
                    .edges
                    .iter()
                    .map(|(to, s)| {
                        json!({
                            "ReferenceId": to,
                            "StartTime": s.start,
                            "EndTime": s.end,
                            "SummaryStatistics": s.summary_json(),
                            "ResponseTimeHistogram": s.histogram_json(),
                            "Aliases": [],
                        })
                    })
                    .collect();
                let mut v = json!({
                    "ReferenceId": i,
                    "Name": n.key.name,
                    "Names": [n.key.name],
                    "Type": n.key.kind,
                    "Root": n.root,
                    "State": if n.is_inferred() || n.key == NodeKey::client() { "unknown" } else { "active" },
                    "Edges": edges,
                });
                if n.stats.total() > 0 {
                    v["StartTime"] = json!(n.stats.start);
                    v["EndTime"] = json!(n.stats.end);
                    v["SummaryStatistics"] = n.stats.summary_json();
                    v["DurationHistogram"] = n.stats.histogram_json();
                    v["ResponseTimeHistogram"] = n.stats.histogram_json();
                }
                v
            })
            .collect();
        json!({
            "StartTime": self.start,
            "EndTime": self.end,
            "Services": services,
            "ContainsOldGroupVersions": false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, Store};
    use serde_json::json;

    fn assembled(docs: &[Value]) -> Assembled {
        let mut s = Store::new(Limits::default());
        for d in docs {
            s.insert(d.to_string(), Entity::from_document(d).unwrap());
        }
        let t = s.traces().next().unwrap();
        t.assemble()
    }

    #[test]
    fn inferred_nodes_and_real_downstream() {
        let a = assembled(&[
            json!({"trace_id":"t","id":"s1","name":"front","origin":"AWS::EC2::Instance","start_time":1.0,"end_time":2.0,
            "subsegments":[
              {"id":"d1","name":"DynamoDB","namespace":"aws","aws":{"table_name":"orders"},"start_time":1.1,"end_time":1.2,"throttle":true,"error":true},
              {"id":"q1","name":"SQS","namespace":"aws","aws":{"queue_url":"https://sqs/1/jobs"},"start_time":1.1,"end_time":1.2},
              {"id":"b1","name":"S3","namespace":"aws","aws":{"bucket_name":"bkt"},"start_time":1.1,"end_time":1.2},
              {"id":"n1","name":"SNS","namespace":"aws","start_time":1.1,"end_time":1.2},
              {"id":"r1","name":"backend","namespace":"remote","http":{"request":{"traced":true}},"start_time":1.2,"end_time":1.9},
              {"id":"r2","name":"api.example.com","namespace":"remote","start_time":1.2,"end_time":1.3,"http":{"response":{"status":503}}}
            ]}),
            json!({"trace_id":"t","id":"s2","parent_id":"r1","name":"backend","start_time":1.25,"end_time":1.85}),
        ]);
        let g = trace_graph(&a);
        let m = ServiceMap::build([("t", g)]);
        let keys: Vec<(String, String)> = m
            .nodes
            .iter()
            .map(|n| (n.key.name.clone(), n.key.kind.clone()))
            .collect();
        let want = [
            ("api.example.com", "remote"),
            ("backend", "service"),
            ("bkt", "AWS::S3::Bucket"),
            ("client", "client"),
            ("front", "AWS::EC2::Instance"),
            ("jobs", "AWS::SQS::Queue"),
            ("orders", "AWS::DynamoDB::Table"),
            ("SNS", "AWS::SNS"),
        ];
        let mut want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        want.sort();
        assert_eq!(keys, want);
        let front = m.find("front", "AWS::EC2::Instance").unwrap();
        let backend = m.find("backend", "service").unwrap();
        assert!(m.nodes[front].root);
        assert!(!m.nodes[backend].root);
        // The edge carries the caller's subsegment timing (0.7 s), not the callee's 0.6 s.
        assert!((m.nodes[front].edges[&backend].average() - 0.7).abs() < 1e-9);
        let orders = m.find("orders", "AWS::DynamoDB::Table").unwrap();
        assert_eq!(m.nodes[orders].stats.throttle, 1);
        let api = m.find("api.example.com", "remote").unwrap();
        assert_eq!(m.nodes[api].stats.fault, 1);
        let sg = m.to_service_graph();
        assert_eq!(sg["Services"].as_array().unwrap().len(), 8);
        assert_eq!(
            sg["Services"][orders]["SummaryStatistics"]["ErrorStatistics"]["ThrottleCount"],
            1
        );
    }

    #[test]
    fn calls_cut_at_the_depth_limit_count() {
        // A segment with a chain of 140 streamed subsegments, each the parent of the next:
        // s65.. and s129.. are cut at the depth limit and shown apart. A DynamoDB call under
        // s66 and a call under s140 that a downstream segment claims count as if grafted.
        // Under an S3 call, a chain whose cut part holds a call: part of the S3 call, as
        // when grafted. Under a chain whose first parent never arrived, a call: not
        // counted, as for any subsegment whose parent has not arrived.
        let sub = |id: String, parent: String| {
            json!({"trace_id":"t","id":id,"parent_id":parent,"type":"subsegment",
                "name":"step","start_time":1.0,"end_time":2.0})
        };
        let mut docs = vec![
            json!({"trace_id":"t","id":"s0","name":"front","start_time":1.0,"end_time":2.0,
                "subsegments":[{"id":"a","name":"S3","namespace":"aws","aws":{"bucket_name":"bkt"},
                "start_time":1.0,"end_time":2.0}]}),
            json!({"trace_id":"t","id":"down","parent_id":"r","name":"backend","start_time":1.2,"end_time":1.4}),
        ];
        for i in 1..=140 {
            docs.push(sub(format!("s{i}"), format!("s{}", i - 1)));
        }
        for i in 1..=70 {
            let parent = if i == 1 {
                "a".into()
            } else {
                format!("k{}", i - 1)
            };
            docs.push(sub(format!("k{i}"), parent));
        }
        for i in 0..=70 {
            let parent = if i == 0 {
                "missing".into()
            } else {
                format!("o{}", i - 1)
            };
            docs.push(sub(format!("o{i}"), parent));
        }
        let call = |id: &str, parent: &str, name: &str, namespace: &str| {
            let mut d = sub(id.into(), parent.into());
            d["name"] = json!(name);
            d["namespace"] = json!(namespace);
            d["start_time"] = json!(1.1);
            d["end_time"] = json!(1.5);
            d
        };
        let mut dynamo = call("d", "s66", "DynamoDB", "aws");
        dynamo["aws"] = json!({"table_name":"orders"});
        docs.extend([
            dynamo,
            call("r", "s140", "backend", "remote"),
            call("inner", "k68", "inner", "remote"),
            call("lost", "o68", "lost", "remote"),
        ]);
        let a = assembled(&docs);
        assert_eq!(a.deep.len(), 4, "s65, s129, k64 and o65 are cut");
        let m = ServiceMap::build([("t", trace_graph(&a))]);
        let keys: Vec<(&str, &str)> = m
            .nodes
            .iter()
            .map(|n| (n.key.name.as_str(), n.key.kind.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("backend", "service"),
                ("bkt", "AWS::S3::Bucket"),
                ("client", "client"),
                ("front", "service"),
                ("orders", "AWS::DynamoDB::Table"),
            ]
        );
        let front = m.find("front", "service").unwrap();
        let orders = m.find("orders", "AWS::DynamoDB::Table").unwrap();
        let backend = m.find("backend", "service").unwrap();
        assert_eq!(m.nodes[orders].stats.total(), 1);
        assert_eq!(m.nodes[front].edges[&orders].total(), 1);
        assert!(!m.nodes[backend].root);
        // The edge to the downstream segment carries its calling subsegment's 0.4 s.
        assert!((m.nodes[front].edges[&backend].average() - 0.4).abs() < 1e-9);
    }
}
