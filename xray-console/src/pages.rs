//! Server-rendered HTML pages and the SVG service map. No CDN, almost no JavaScript: the
//! map is SVG with links, timeline rows are `<details>` elements, and only the import form
//! uses a few lines of script.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use serde_json::Value;

use crate::filter::TraceSummary;
use crate::map::{NodeKey, ServiceMap, Stats};
use crate::server::url_encode;
use crate::store::MAX_DEPTH;
use crate::timeline::{Row, Timeline, MAX_PATH_DEPTH};

/// Escapes text for HTML and SVG (XML 1.0: a control character other than tab and
/// line ends, which no reference can carry there, becomes U+FFFD).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Characters XML 1.0 has no place for, not even as references: raw, a
            // peer's control character made the standalone `/map.svg` unreadable.
            '\t' | '\n' | '\r' => o.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// Formats seconds as `12.3 ms` or `1.23 s`.
pub fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

fn fmt_time(epoch: f64) -> String {
    let secs = epoch.floor() as i64;
    let ms = ((epoch - epoch.floor()) * 1000.0) as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{ms:03} UTC")
}

const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2733;background:#f4f6f8}
header{background:#232f3e;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}header a.brand{color:#ff9900;font-size:16px}
header .stats{margin-left:auto;font-size:12px;color:#c8d1da}header .stats b{color:#fff}
main{padding:16px}a{color:#0b66c3}.card{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:12px 16px;margin-bottom:14px}
form.filter{display:flex;gap:8px}form.filter input[type=text]{flex:1;font:13px monospace;padding:6px 8px;border:1px solid #aab7c4;border-radius:4px}
button{background:#0b66c3;color:#fff;border:0;border-radius:4px;padding:6px 14px;cursor:pointer}
.err{color:#b3261e}.muted{color:#6b7785}.hint{font-size:12px;color:#6b7785;margin-top:4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6eaee;font-size:13px;vertical-align:top}th{background:#f0f3f6}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;color:#fff}.ok{background:#2e9d5b}.error{background:#e8a33d}.throttle{background:#8e5ccc}.fault{background:#d9463e}.partial{background:#6b7785}
.mapwrap{display:flex;gap:14px;align-items:flex-start}.mapwrap svg{background:#fff;border:1px solid #d5dbe1;border-radius:6px;flex:1;min-width:0}
.panel{width:330px;flex:none}.legend span{margin-right:10px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
.tl{background:#fff;border:1px solid #d5dbe1;border-radius:6px}.tl .axis,.tl summary{display:grid;grid-template-columns:320px 1fr 90px;align-items:center}
.tl .axis{border-bottom:1px solid #d5dbe1;font-size:11px;color:#6b7785;height:24px}.tl .ticks{position:relative;height:100%}.tl .ticks span{position:absolute;top:4px;white-space:nowrap;transform:translateX(-50%)}.tl .ticks span:first-child{transform:none}.tl .ticks span:last-child{transform:translateX(-100%)}
.tl .group{background:#eef2f6;padding:4px 10px;font-weight:600;border-top:1px solid #d5dbe1}.tl .group small{font-weight:400;color:#6b7785;margin-left:8px}
.tl details{border-bottom:1px solid #f0f2f4}.tl summary{list-style:none;cursor:pointer;min-height:24px;font-size:13px}.tl summary::-webkit-details-marker{display:none}
.tl summary:hover{background:#f6f9fc}.tl .name{padding:2px 8px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}.tl .track{position:relative;height:24px;border-left:1px solid #eef0f2}
.tl .bar{position:absolute;top:6px;height:12px;border-radius:2px;min-width:2px;background:#8fb8e8}.tl .bar.ok{background:#8fb8e8}.tl .bar.error{background:#e8a33d}.tl .bar.throttle{background:#8e5ccc}.tl .bar.fault{background:#d9463e}
.tl .crit .bar{box-shadow:0 0 0 2px #ff9900}.tl .bott{background:#fff4e0}.tl .bott .name{font-weight:700}.tl .dur{font-size:12px;color:#4b5663;text-align:right;padding-right:8px}
.tl .inprog .bar{background:repeating-linear-gradient(45deg,#8fb8e8,#8fb8e8 4px,#cfe0f5 4px,#cfe0f5 8px)}
.tl .mark{font-size:11px;margin-left:4px}.tl .detail{padding:8px 16px 12px 24px;background:#fbfcfd;font-size:13px}.tl .detail h4{margin:10px 0 4px}
pre{background:#f3f5f7;padding:8px;border-radius:4px;overflow:auto;max-height:360px;font-size:12px}
.bn{border-left:4px solid #ff9900}.warn{border-left:4px solid #6b7785}
"#;

fn layout(title: &str, active: &str, stats: &Value, body: &str) -> String {
    let n = |p: &str| stats.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let nav = |href: &str, label: &str| {
        let style = if label == active {
            " style=\"text-decoration:underline\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{style}>{label}</a>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · X-Ray console</title>\
<meta name=\"viewport\" content=\"width=device-width\"><style>{CSS}</style></head><body>\
<header><a class=\"brand\" href=\"/\">X-Ray console</a>{}{}{}\
<span class=\"stats\" id=\"stats\">datagrams <b>{}</b> · accepted <b>{}</b> · rejected <b{}>{}</b> · traces <b>{}</b>/{} · {:.1}/{:.0} MiB · evicted <b>{}</b></span></header>\
<main>{body}</main></body></html>",
        esc(title),
        nav("/", "Service map"),
        nav("/traces", "Traces"),
        nav("/import", "Import"),
        n("/intake/datagrams"),
        n("/intake/accepted") + n("/intake/imported"),
        if n("/intake/rejected") > 0 {
            " style=\"color:#ffb4a8\""
        } else {
            ""
        },
        n("/intake/rejected"),
        n("/traces"),
        n("/max_traces"),
        n("/bytes") as f64 / 1048576.0,
        n("/max_bytes") as f64 / 1048576.0,
        n("/store/traces_evicted"),
    )
}

fn filter_form(action: &str, filter: &str, error: Option<&str>) -> String {
    let mut s = format!(
        "<div class=\"card\"><form class=\"filter\" method=\"get\" action=\"{action}\">\
<input type=\"text\" name=\"filter\" id=\"filter\" value=\"{}\" placeholder='service(\"orders-api\") AND responsetime &gt; 0.5'>\
<button type=\"submit\">Filter</button></form>\
<div class=\"hint\">service(\"name\") · edge(\"a\",\"b\") · annotation.key = value · responsetime &gt; n · duration &gt;= n · http.status = n · http.url CONTAINS \"x\" · fault · error · throttle · partial · AND · OR · ! · ( )</div>",
        esc(filter)
    );
    if let Some(e) = error {
        let _ = write!(s, "<p class=\"err\">Filter error: {}</p>", esc(e));
    }
    s.push_str("</div>");
    s
}

const COLORS: [(&str, &str); 4] = [
    ("ok", "#2e9d5b"),
    ("error", "#e8a33d"),
    ("throttle", "#8e5ccc"),
    ("fault", "#d9463e"),
];

fn counts(s: &Stats) -> [u64; 4] {
    [s.ok, s.error, s.throttle, s.fault]
}

fn node_href(k: &NodeKey, filter: &str) -> String {
    let mut h = format!(
        "/?node={}&type={}",
        url_encode(&k.name),
        url_encode(&k.kind)
    );
    if !filter.is_empty() {
        let _ = write!(h, "&filter={}", url_encode(filter));
    }
    h
}

/// Columns (layers) of the map: distance from the client node, left to right.
fn layers(m: &ServiceMap) -> Vec<usize> {
    let n = m.nodes.len();
    let mut depth = vec![usize::MAX; n];
    let mut unplaced = 0;
    let mut q = VecDeque::new();
    for (i, node) in m.nodes.iter().enumerate() {
        if node.key == NodeKey::client() {
            depth[i] = 0;
            q.push_back(i);
        }
    }
    for (i, node) in m.nodes.iter().enumerate() {
        if node.root && depth[i] == usize::MAX {
            depth[i] = 1;
            q.push_back(i);
        }
    }
    loop {
        while let Some(i) = q.pop_front() {
            for &j in m.nodes[i].edges.keys() {
                if depth[j] == usize::MAX {
                    depth[j] = depth[i] + 1;
                    q.push_back(j);
                }
            }
        }
        // Nodes not reachable from the client: start a new walk from the first one
        // (searched from where the last search stopped: a depth, once set, stays).
        match depth[unplaced..].iter().position(|&d| {
            #[cfg(test)]
            tests::looked_at(1);
            d == usize::MAX
        }) {
            Some(k) => {
                let i = unplaced + k;
                unplaced = i + 1;
                depth[i] = 1;
                q.push_back(i);
            }
            None => break,
        }
    }
    depth
}

/// The service map as an SVG image; nodes link to `/?node=..`.
pub fn map_svg(m: &ServiceMap, filter: &str, selected: Option<usize>) -> String {
    let depth = layers(m);
    let mut cols: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, d) in depth.iter().enumerate() {
        cols.entry(*d).or_default().push(i);
    }
    // Order each column by the mean row of its callers (barycenter), to keep edges short
    // and uncrossed.
    let mut row_of = vec![0.0f64; m.nodes.len()];
    // Each node's callers in earlier columns, listed once (in node order) from the
    // edges: found by a scan of every node for each node, a map of 20,000 services
    // took seconds.
    let mut callers = vec![Vec::new(); m.nodes.len()];
    for (j, n) in m.nodes.iter().enumerate() {
        #[cfg(test)]
        tests::looked_at(n.edges.len());
        for &i in n.edges.keys() {
            if depth.get(i).is_some_and(|&d| depth[j] < d) {
                callers[i].push(j);
            }
        }
    }
    for list in cols.values_mut() {
        let key = |i: usize| {
            let callers = &callers[i];
            #[cfg(test)]
            tests::looked_at(callers.len());
            if callers.is_empty() {
                f64::MAX
            } else {
                callers.iter().map(|&j| row_of[j]).sum::<f64>() / callers.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = list.iter().map(|&i| (key(i), i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *list = keyed.into_iter().map(|(_, i)| i).collect();
        let n = list.len() as f64;
        for (ri, &i) in list.iter().enumerate() {
            row_of[i] = ri as f64 - (n - 1.0) / 2.0;
        }
    }
    let (dx, dy, r) = (230.0, 150.0, 34.0);
    let mut pos = vec![(0.0f64, 0.0f64); m.nodes.len()];
    let rows = cols.values().map(Vec::len).max().unwrap_or(1);
    for (ci, (_, list)) in cols.iter().enumerate() {
        let off = (rows - list.len()) as f64 * dy / 2.0;
        for (ri, &i) in list.iter().enumerate() {
            pos[i] = (90.0 + ci as f64 * dx, 70.0 + off + ri as f64 * dy);
        }
    }
    let w = 180.0 + (cols.len().max(1) - 1) as f64 * dx;
    let h = 60.0 + rows as f64 * dy;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"map\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"system-ui,sans-serif\">\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#8a96a3\"/></marker></defs>"
    );
    if m.nodes.is_empty() {
        s.push_str("<text x=\"20\" y=\"40\" fill=\"#6b7785\">No traces yet. Point an X-Ray SDK at UDP 127.0.0.1:2000.</text>");
    }
    // Edges first, under the nodes.
    for (i, n) in m.nodes.iter().enumerate() {
        for (&j, st) in &n.edges {
            let ((x1, y1), (x2, y2)) = (pos[i], pos[j]);
            let (vx, vy) = (x2 - x1, y2 - y1);
            let len = (vx * vx + vy * vy).sqrt().max(1.0);
            let ri = if n.key == NodeKey::client() {
                22.0
            } else {
                r + 6.0
            };
            let (ax, ay) = (x1 + vx / len * ri, y1 + vy / len * ri);
            let (bx, by) = (x2 - vx / len * (r + 8.0), y2 - vy / len * (r + 8.0));
            let color = if st.fault > 0 {
                "#d9463e"
            } else if st.error + st.throttle > 0 {
                "#e8a33d"
            } else {
                "#8a96a3"
            };
            let _ = write!(
                s,
                "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\"><line x1=\"{ax:.1}\" y1=\"{ay:.1}\" x2=\"{bx:.1}\" y2=\"{by:.1}\" stroke=\"{color}\" stroke-width=\"1.6\" marker-end=\"url(#arrow)\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#4b5663\" text-anchor=\"middle\">{} · {}</text><title>{} → {}: {} calls, avg {}</title></g>",
                esc(&n.key.name),
                esc(&m.nodes[j].key.name),
                (ax + bx) / 2.0,
                (ay + by) / 2.0 - 5.0,
                fmt_secs(st.average()),
                st.total(),
                esc(&n.key.name),
                esc(&m.nodes[j].key.name),
                st.total(),
                fmt_secs(st.average()),
            );
        }
    }
    for (i, n) in m.nodes.iter().enumerate() {
        let (x, y) = pos[i];
        let sel = selected == Some(i);
        let _ = write!(
            s,
            "<a href=\"{}\" class=\"node\" data-name=\"{}\" data-type=\"{}\"><g>",
            esc(&node_href(&n.key, filter)),
            esc(&n.key.name),
            esc(&n.key.kind)
        );
        if n.key == NodeKey::client() {
            let _ = write!(
                s,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"20\" fill=\"#fff\" stroke=\"{}\" stroke-width=\"{}\"/>\
<path d=\"M{} {}a7 7 0 1 1 0.1 0M{} {}q9 -12 18 0\" fill=\"none\" stroke=\"#4b5663\" stroke-width=\"2\"/>\
<text x=\"{x}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#1d2733\">Client</text>",
                if sel { "#0b66c3" } else { "#8a96a3" },
                if sel { 3 } else { 1 },
                x - 0.05,
                y - 12.0,
                x - 9.0,
                y + 10.0,
                y + 36.0
            );
        } else {
            let c = counts(&n.stats);
            let total: u64 = c.iter().sum();
            let circ = 2.0 * std::f64::consts::PI * r;
            let _ = write!(
                s,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"{}\" fill=\"#fff\" stroke=\"{}\" stroke-width=\"{}\"/>\
<circle cx=\"{x}\" cy=\"{y}\" r=\"{r}\" fill=\"none\" stroke=\"#dfe4e9\" stroke-width=\"7\"/>",
                r + 6.0,
                if sel { "#0b66c3" } else { "#cfd6dd" },
                if sel { 3 } else { 1 }
            );
            let mut off = 0.0;
            for (k, (name, color)) in COLORS.iter().enumerate() {
                if total == 0 || c[k] == 0 {
                    continue;
                }
                let len = circ * c[k] as f64 / total as f64;
                let _ = write!(
                    s,
                    "<circle class=\"ring-{name}\" cx=\"{x}\" cy=\"{y}\" r=\"{r}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"7\" \
stroke-dasharray=\"{len:.2} {:.2}\" stroke-dashoffset=\"{:.2}\" transform=\"rotate(-90 {x} {y})\"/>",
                    circ - len,
                    -off
                );
                off += len;
            }
            let _ = write!(
                s,
                "<text x=\"{x}\" y=\"{}\" font-size=\"12\" font-weight=\"600\" text-anchor=\"middle\" fill=\"#1d2733\">{}</text>\
<text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#4b5663\">{:.1} t/min</text>\
<text x=\"{x}\" y=\"{}\" font-size=\"12\" font-weight=\"600\" text-anchor=\"middle\" fill=\"#1d2733\">{}</text>\
<text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#6b7785\">{}</text>",
                y - 1.0,
                fmt_secs(n.stats.average()),
                y + 12.0,
                m.traces_per_minute(i),
                y + r + 22.0,
                esc(&n.key.name),
                y + r + 35.0,
                esc(&n.key.kind),
            );
        }
        let _ = write!(
            s,
            "<title>{} ({})</title></g></a>",
            esc(&n.key.name),
            esc(&n.key.kind)
        );
    }
    s.push_str("</svg>");
    s
}

/// A string literal for a filter expression: in quotes, with `\` and `"` escaped.
fn quoted(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

fn and_filter(a: &str, b: &str) -> String {
    if b.trim().is_empty() {
        a.to_owned()
    } else {
        format!("{a} AND ({b})")
    }
}

fn health_table(st: &Stats) -> String {
    let c = counts(st);
    let total: u64 = c.iter().sum::<u64>().max(1);
    let mut s = String::from("<table class=\"health\">");
    for (k, (name, _)) in COLORS.iter().enumerate() {
        let _ = write!(
            s,
            "<tr><td><span class=\"badge {name}\">{name}</span></td><td class=\"count-{name}\">{}</td><td>{:.0}%</td></tr>",
            c[k],
            c[k] as f64 * 100.0 / total as f64
        );
    }
    s.push_str("</table>");
    s
}

/// The service map page.
pub fn map_page(
    m: &ServiceMap,
    filter: &str,
    filter_error: Option<&str>,
    node: Option<(&str, &str)>,
    stats: &Value,
) -> String {
    let selected = node.and_then(|(n, t)| m.find(n, t));
    // The map ignores a filter that does not parse, and so do the links to traces: spliced
    // into `... AND (<filter>)`, its text could parse and mean something else.
    let link_filter = if filter_error.is_some() { "" } else { filter };
    let mut body = filter_form("/", filter, filter_error);
    body.push_str("<div class=\"mapwrap\">");
    body.push_str(&map_svg(m, filter, selected));
    body.push_str("<div class=\"panel\">");
    match selected {
        Some(i) => {
            let n = &m.nodes[i];
            let client = n.key == NodeKey::client();
            let _ = write!(
                body,
                "<div class=\"card\" id=\"node-panel\"><h3 style=\"margin:0\">{}</h3><div class=\"muted\">{}</div>",
                esc(&n.key.name),
                esc(&n.key.kind)
            );
            if !client {
                let _ = write!(
                    body,
                    "<p>Average response time <b>{}</b><br>{:.1} traces/min · {} calls</p>{}",
                    fmt_secs(n.stats.average()),
                    m.traces_per_minute(i),
                    n.stats.total(),
                    health_table(&n.stats)
                );
                let q = and_filter(
                    &format!(
                        "service(id(name: {}, type: {}))",
                        quoted(&n.key.name),
                        quoted(&n.key.kind)
                    ),
                    link_filter,
                );
                let _ = write!(
                    body,
                    "<p><a id=\"view-traces\" href=\"/traces?filter={}\">View traces →</a> · <a href=\"/traces?filter={}\">faults</a> · <a href=\"/traces?filter={}\">errors</a></p>",
                    url_encode(&q),
                    url_encode(&and_filter(&q, "fault")),
                    url_encode(&and_filter(&q, "error")),
                );
            }
            if !n.edges.is_empty() {
                body.push_str("<h4>Calls</h4><table><tr><th>to</th><th>avg</th><th>calls</th><th>faults</th></tr>");
                for (&j, st) in &n.edges {
                    let to = &m.nodes[j].key;
                    let q = and_filter(
                        &format!("edge({}, {})", quoted(&n.key.name), quoted(&to.name)),
                        link_filter,
                    );
                    let _ = write!(
                        body,
                        "<tr><td><a href=\"/traces?filter={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        url_encode(&q),
                        esc(&to.name),
                        fmt_secs(st.average()),
                        st.total(),
                        st.fault
                    );
                }
                body.push_str("</table>");
            }
            body.push_str("</div>");
        }
        None => body.push_str(
            "<div class=\"card\"><b>Service map</b><p class=\"muted\">Click a node for its response time, health and traces.</p></div>",
        ),
    }
    body.push_str("<div class=\"card legend\">");
    for (name, color) in COLORS {
        let _ = write!(
            body,
            "<span><i style=\"background:{color}\"></i>{name}</span>"
        );
    }
    let _ = write!(
        body,
        "<p class=\"muted\">Window {} – {}. <a href=\"/api/servicegraph{}\">GetServiceGraph JSON</a></p></div>",
        if m.end > 0.0 { fmt_time(m.start) } else { "–".into() },
        if m.end > 0.0 { fmt_time(m.end) } else { "–".into() },
        if filter.is_empty() {
            String::new()
        } else {
            format!("?filter={}", url_encode(filter))
        }
    );
    if let Some(recent) = stats.pointer("/intake/recent").and_then(Value::as_array) {
        if !recent.is_empty() {
            body.push_str("<div class=\"card\"><b>Rejected datagrams</b> (latest)<table>");
            for r in recent.iter().rev().take(5) {
                let _ = write!(
                    body,
                    "<tr><td>{}<br><code>{}</code></td></tr>",
                    esc(r["detail"].as_str().unwrap_or("")),
                    esc(&r["preview"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(80)
                        .collect::<String>())
                );
            }
            body.push_str("</table></div>");
        }
    }
    body.push_str("</div></div>");
    layout("Service map", "Service map", stats, &body)
}

fn status_badge(status: &str) -> String {
    format!("<span class=\"badge {status}\">{status}</span>")
}

/// The trace list page.
pub fn traces_page(
    list: &[&TraceSummary],
    filter: &str,
    filter_error: Option<&str>,
    stats: &Value,
) -> String {
    let mut body = filter_form("/traces", filter, filter_error);
    let _ = write!(
        body,
        "<div class=\"card\"><b>{} trace(s)</b> <span class=\"muted\">newest first · this page's URL is shareable</span>\
<table id=\"traces\"><tr><th>Start</th><th>Trace</th><th>Duration</th><th>Response</th><th>Status</th><th>Method</th><th>URL</th><th>HTTP</th><th>Annotations</th></tr>",
        list.len()
    );
    for t in list.iter().take(1000) {
        let anns: Vec<String> = t
            .annotations
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        let _ = write!(
            body,
            "<tr class=\"trace-row\"><td>{}</td><td><a class=\"trace-link\" href=\"/trace/{}\">{}</a><br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt_time(t.start),
            url_encode(&t.id),
            esc(&t.id),
            esc(&t.name),
            fmt_secs(t.duration),
            fmt_secs(t.response_time),
            status_badge(t.status),
            if t.partial.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"badge partial\" title=\"{}\">partial</span>", esc(&t.partial.join("; ")))
            },
            esc(t.method.as_deref().unwrap_or("")),
            esc(t.url.as_deref().unwrap_or("")),
            t.http_status.map(|s| s.to_string()).unwrap_or_default(),
            anns.join(" "),
        );
    }
    body.push_str("</table></div>");
    layout("Traces", "Traces", stats, &body)
}

fn kv_table(obj: &serde_json::Map<String, Value>) -> String {
    let mut s = String::from("<table>");
    for (k, v) in obj {
        let v = match v {
            Value::String(s) => esc(s),
            other => esc(&other.to_string()),
        };
        let _ = write!(s, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    s.push_str("</table>");
    s
}

fn row_detail(r: &Row) -> String {
    let d = &r.detail;
    let mut s = String::from("<div class=\"detail\">");
    let _ = write!(
        s,
        "<div class=\"muted\">id {} · start {} · {}</div>",
        esc(&r.id),
        fmt_time(r.start),
        match r.end {
            Some(e) => format!("duration {}", fmt_secs(e - r.start)),
            None => "in progress".into(),
        }
    );
    if r.critical {
        let _ = write!(
            s,
            "<div>On the critical path: {} of its own time.</div>",
            fmt_secs(r.self_time)
        );
    }
    if r.skewed {
        s.push_str("<div class=\"err\">Outside its parent's time range (clock skew or a late part); shown as received.</div>");
    }
    if let Some(a) = d.get("annotations").and_then(Value::as_object) {
        s.push_str("<h4>Annotations</h4>");
        s.push_str(&kv_table(a));
    }
    for block in ["http", "sql", "aws"] {
        if let Some(v) = d.get(block) {
            let _ = write!(
                s,
                "<h4>{block}</h4><pre>{}</pre>",
                esc(&serde_json::to_string_pretty(v).unwrap_or_default())
            );
        }
    }
    if let Some(m) = d.get("metadata") {
        let _ = write!(
            s,
            "<h4>Metadata</h4><pre>{}</pre>",
            esc(&serde_json::to_string_pretty(m).unwrap_or_default())
        );
    }
    if let Some(c) = d.get("cause") {
        s.push_str("<h4>Exceptions</h4>");
        match c {
            Value::String(id) => {
                let _ = write!(
                    s,
                    "<p>See exception {} recorded elsewhere in the trace.</p>",
                    esc(id)
                );
            }
            _ => {
                if let Some(wd) = c.get("working_directory").and_then(Value::as_str) {
                    let _ = write!(
                        s,
                        "<div class=\"muted\">working directory {}</div>",
                        esc(wd)
                    );
                }
                for e in c
                    .get("exceptions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let _ = write!(
                        s,
                        "<div class=\"exception\"><b>{}</b>: {}{}",
                        esc(e.get("type").and_then(Value::as_str).unwrap_or("Exception")),
                        esc(e.get("message").and_then(Value::as_str).unwrap_or("")),
                        if e.get("remote").and_then(Value::as_bool) == Some(true) {
                            " <span class=\"muted\">(remote)</span>"
                        } else {
                            ""
                        }
                    );
                    let frames: Vec<String> = e
                        .get("stack")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|f| {
                            format!(
                                "  at {} ({}:{})",
                                f.get("label").and_then(Value::as_str).unwrap_or("?"),
                                f.get("path").and_then(Value::as_str).unwrap_or("?"),
                                f.get("line")
                                    .and_then(Value::as_i64)
                                    .map(|l| l.to_string())
                                    .unwrap_or_else(|| "-".into())
                            )
                        })
                        .collect();
                    if !frames.is_empty() {
                        let _ = write!(s, "<pre>{}</pre>", esc(&frames.join("\n")));
                    }
                    s.push_str("</div>");
                }
            }
        }
    }
    let _ = write!(
        s,
        "<details><summary style=\"display:block\"><u>Raw JSON</u></summary><pre class=\"raw\">{}</pre></details></div>",
        esc(&serde_json::to_string_pretty(d).unwrap_or_default())
    );
    s
}

/// The timeline page of one trace.
pub fn trace_page(tl: &Timeline, stats: &Value) -> String {
    let span = (tl.end - tl.start).max(1e-9);
    let mut body = String::new();
    let _ = write!(
        body,
        "<div class=\"card\"><h2 style=\"margin:0 0 4px\">Trace {}</h2><span class=\"muted\">started {} · duration {}</span> · \
<a id=\"export\" href=\"/api/traces/{}?download=1\" download=\"trace-{}.json\">Export JSON</a> · <a href=\"/traces\">all traces</a></div>",
        esc(&tl.trace_id),
        fmt_time(tl.start),
        fmt_secs(tl.end - tl.start),
        url_encode(&tl.trace_id),
        esc(&tl.trace_id),
    );
    if let Some(b) = &tl.bottleneck {
        let _ = write!(
            body,
            "<div class=\"card bn\" id=\"bottleneck\">Bottleneck: <b>{}</b> in <b>{}</b>, {} on the critical path, <b>{:.0}%</b> of the trace. \
<span class=\"muted\">Critical path: orange outline.</span></div>",
            esc(&b.name),
            esc(&b.group),
            fmt_secs(b.self_time),
            b.share * 100.0
        );
    }
    if let Some((id, name)) = &tl.path_cut {
        let _ = write!(
            body,
            "<div class=\"card warn\" id=\"path-cut\">The critical path is followed {MAX_PATH_DEPTH} levels deep: \
it stops at <b>{}</b> <code>{}</code> and counts all of its time as its own, so the bottleneck may lie deeper.</div>",
            esc(name),
            esc(id)
        );
    }
    if !tl.partial.is_empty() {
        let _ = write!(
            body,
            "<div class=\"card warn\" id=\"partial\"><span class=\"badge partial\">partial</span> {}</div>",
            esc(&tl.partial.join("; "))
        );
    }
    body.push_str(
        "<div class=\"tl\"><div class=\"axis\"><div class=\"name\">Name</div><div class=\"ticks\">",
    );
    for k in 0..=4 {
        let _ = write!(
            body,
            "<span style=\"left:{}%\">{}</span>",
            k * 25,
            fmt_secs(span * k as f64 / 4.0)
        );
    }
    body.push_str("</div><div class=\"dur\">Duration</div></div>");
    for g in &tl.groups {
        let _ = write!(
            body,
            "<div class=\"group\">{}<small>{}</small></div>",
            esc(&g.name),
            esc(g.origin.as_deref().unwrap_or(""))
        );
        for r in &g.rows {
            // Times far apart make these NaN (infinity over infinity), and `clamp`
            // panics on a NaN bound: a NaN counts as 0.
            let pct = |x: f64| if x.is_nan() { 0.0 } else { x };
            let left = pct((r.start - tl.start) / span * 100.0).clamp(0.0, 100.0);
            let end = r.end.unwrap_or(tl.end);
            let width = pct((end - r.start) / span * 100.0).clamp(0.0, 100.0 - left);
            let mut classes = vec!["row"];
            if r.critical {
                classes.push("crit");
            }
            if r.bottleneck {
                classes.push("bott");
            }
            if r.in_progress {
                classes.push("inprog");
            }
            let mut marks = String::new();
            if r.health != "ok" {
                let _ = write!(marks, "<span class=\"mark badge {0}\">{0}</span>", r.health);
            }
            if r.bottleneck {
                marks.push_str(
                    "<span class=\"mark badge\" style=\"background:#ff9900\">bottleneck</span>",
                );
            }
            if r.skewed {
                marks.push_str("<span class=\"mark badge partial\">skew</span>");
            }
            if r.in_progress {
                marks.push_str("<span class=\"mark badge partial\">in progress</span>");
            }
            if r.cut > 0 {
                let _ = write!(
                    marks,
                    "<span class=\"mark badge partial\" title=\"nested deeper than {MAX_DEPTH} levels: \
                     shown apart, at the end\">{} deeper, shown apart</span>",
                    r.cut
                );
            }
            if let Some(from) = &r.cut_from {
                let _ = write!(
                    marks,
                    "<span class=\"mark badge partial\" title=\"nested under {}, deeper than \
                     {MAX_DEPTH} levels\">continued</span>",
                    esc(from)
                );
            }
            if r.cycle {
                marks.push_str(
                    "<span class=\"mark badge partial\" title=\"its chain of parent_ids leads back \
                     to it: shown from the earliest subsegment of the loop\">parent cycle</span>",
                );
            }
            let http = r
                .http
                .as_ref()
                .and_then(|h| h.status)
                .map(|s| format!(" <span class=\"muted\">{s}</span>"))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<details class=\"{}\" data-id=\"{}\"><summary><div class=\"name\" style=\"padding-left:{}px\">{}{}{}</div>\
<div class=\"track\"><div class=\"bar {}\" style=\"left:{left:.3}%;width:{width:.3}%\"></div></div><div class=\"dur\">{}</div></summary>{}</details>",
                classes.join(" "),
                esc(&r.id),
                8 + r.depth * 16,
                esc(&r.name),
                http,
                marks,
                r.health,
                match r.end {
                    Some(e) => fmt_secs(e - r.start),
                    None => "…".into(),
                },
                row_detail(r)
            );
        }
    }
    body.push_str("</div>");
    layout(&format!("Trace {}", tl.trace_id), "", stats, &body)
}

/// The import page.
pub fn import_page(stats: &Value) -> String {
    let body = r#"<div class="card"><h3 style="margin-top:0">Import a trace</h3>
<p class="muted">A file exported from this console, a BatchGetTraces response, one segment document, an array of documents, or daemon datagrams.</p>
<input type="file" id="file" accept=".json,.txt,application/json"> <button id="go">Import</button>
<p><textarea id="text" rows="8" style="width:100%;font:12px monospace" placeholder="…or paste JSON here"></textarea></p>
<div id="result"></div></div>
<script>
document.getElementById('go').onclick = async () => {
  const f = document.getElementById('file').files[0];
  const body = f ? await f.text() : document.getElementById('text').value;
  const r = await fetch('/api/import', {method: 'POST', body});
  const j = await r.json();
  const out = document.getElementById('result');
  out.textContent = `Imported ${j.imported} document(s), rejected ${j.rejected}. `;
  for (const t of j.traces || []) {
    const a = document.createElement('a'); a.href = '/trace/' + encodeURIComponent(t); a.textContent = t;
    out.appendChild(a); out.appendChild(document.createTextNode(' '));
  }
};
</script>"#;
    layout("Import", "Import", stats, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map of `n` services: the client calls every one, or (`reachable` false) none
    /// is called by anyone.
    fn map_of(n: usize, reachable: bool) -> ServiceMap {
        let node = |name: String, kind: &str, edges: BTreeMap<usize, Stats>| crate::map::Node {
            key: NodeKey {
                name,
                kind: kind.into(),
            },
            stats: Stats::default(),
            edges,
            root: false,
        };
        let mut nodes = vec![node(
            "client".into(),
            "client",
            if reachable {
                (1..=n).map(|i| (i, Stats::default())).collect()
            } else {
                BTreeMap::new()
            },
        )];
        nodes.extend((1..=n).map(|i| node(format!("svc-{i:06}"), "service", BTreeMap::new())));
        ServiceMap {
            nodes,
            start: 0.0,
            end: 1.0,
        }
    }

    thread_local! {
        /// Nodes and edges the map's layout looked at, on this thread.
        static LOOKED_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    pub(super) fn looked_at(n: usize) {
        LOOKED_AT.with(|c| c.set(c.get() + n));
    }

    /// A map of many services (a peer can send them) is laid out in linear work: each
    /// node's callers were found by a scan of every node (64 million looks for 8,000
    /// services, seconds in a debug build), and each node no one calls by a scan from
    /// the first node (32 million).
    #[test]
    fn a_map_of_many_services_is_laid_out_in_linear_work() {
        for reachable in [true, false] {
            let m = map_of(8_000, reachable);
            let size = m.nodes.len() + m.nodes.iter().map(|n| n.edges.len()).sum::<usize>();
            LOOKED_AT.with(|c| c.set(0));
            assert!(map_svg(&m, "", None).contains("svc-008000"));
            let looked = LOOKED_AT.with(std::cell::Cell::get);
            assert!(
                looked <= 4 * size,
                "reachable {reachable}: {looked} looks for {size} nodes and edges"
            );
        }
    }

    #[test]
    fn escapes_for_html_and_xml() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(
            esc("a\u{1}b\u{1f}c\td\ne\u{FFFF}"),
            "a\u{FFFD}b\u{FFFD}c\td\ne\u{FFFD}"
        );
        // A service named with a control character leaves the map readable.
        let mut m = map_of(1, true);
        m.nodes[1].key.name = "svc\u{1}x".into();
        let svg = map_svg(&m, "", None);
        assert!(svg.contains("svc\u{FFFD}x"));
        assert!(!svg
            .chars()
            .any(|c| c < ' ' && !matches!(c, '\t' | '\n' | '\r')));
    }

    #[test]
    fn formats() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(fmt_secs(1.5), "1.50 s");
        assert_eq!(fmt_secs(0.25), "250 ms");
        assert_eq!(fmt_secs(0.0012), "1.2 ms");
        assert_eq!(fmt_time(3661.5), "01:01:01.500 UTC");
    }

    #[test]
    fn node_links_find_names_with_quotes_and_backslashes() {
        // X-Ray allows `\` in names; nothing stops a sender from using `"`.
        let name = r#"C:\svc "blue""#;
        let docs = [
            serde_json::json!({"trace_id":"t","id":"a","name":name,"start_time":1.0,"end_time":2.0,
                "subsegments":[{"id":"b","name":"db\\x","namespace":"remote","start_time":1.1,"end_time":1.2}]}),
        ];
        let mut store = crate::store::Store::new(crate::store::Limits::default());
        for d in &docs {
            store.insert(
                d.to_string(),
                crate::model::Entity::from_document(d).unwrap(),
            );
        }
        let a = store.get("t").unwrap().assemble();
        let g = crate::map::trace_graph(&a);
        let summary = TraceSummary::with_graph(&a, &g);
        let m = ServiceMap::build([("t", g)]);
        let page = map_page(&m, "", None, Some((name, "service")), &Value::Null);
        let links: Vec<&str> = page
            .split("href=\"/traces?filter=")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        // View traces, faults, errors, and the edge to the remote node.
        assert_eq!(links.len(), 4, "{page}");
        let expr = |l: &str| crate::filter::parse(&crate::server::url_decode(l));
        assert!(expr(links[0]).unwrap().matches(&summary), "{}", links[0]);
        assert!(expr(links[3]).unwrap().matches(&summary), "{}", links[3]);
    }

    #[test]
    fn node_links_leave_out_a_filter_that_does_not_parse() {
        // The map ignores a filter it cannot parse, so its links must too: spliced into
        // `... AND (<filter>)`, this one would parse, as `(... AND fault) OR ok`.
        let docs = [
            serde_json::json!({"trace_id":"t1","id":"a","name":"front","start_time":1.0,"end_time":2.0,
                "subsegments":[{"id":"b","name":"db","namespace":"remote","start_time":1.1,"end_time":1.2}]}),
            serde_json::json!({"trace_id":"t2","id":"c","name":"other","start_time":1.0,"end_time":2.0}),
        ];
        let mut store = crate::store::Store::new(crate::store::Limits::default());
        for d in &docs {
            store.insert(
                d.to_string(),
                crate::model::Entity::from_document(d).unwrap(),
            );
        }
        let graphs: Vec<_> = store
            .traces()
            .map(|t| {
                let a = t.assemble();
                let g = crate::map::trace_graph(&a);
                (t.id.clone(), TraceSummary::with_graph(&a, &g), g)
            })
            .collect();
        let m = ServiceMap::build(graphs.iter().map(|(id, _, g)| (id.as_str(), g.clone())));
        let bad = "fault) OR (ok";
        let err = crate::filter::parse(bad).unwrap_err();
        let page = map_page(
            &m,
            bad,
            Some(&err),
            Some(("front", "service")),
            &Value::Null,
        );
        let links: Vec<String> = page
            .split("href=\"/traces?filter=")
            .skip(1)
            .map(|s| crate::server::url_decode(&s[..s.find('"').unwrap()]))
            .collect();
        assert_eq!(links.len(), 4, "{page}");
        assert_eq!(links[0], r#"service(id(name: "front", type: "service"))"#);
        assert_eq!(links[3], r#"edge("front", "db")"#);
        let other = &graphs[1].1;
        assert_eq!(other.name, "other");
        for l in &links {
            let e = crate::filter::parse(l).unwrap();
            assert!(
                !e.matches(other),
                "{l} finds a trace that never calls front"
            );
        }
        // A filter that parses is kept.
        let page = map_page(&m, "ok", None, Some(("front", "service")), &Value::Null);
        assert!(page.contains(&url_encode(
            r#"service(id(name: "front", type: "service")) AND (ok)"#
        )));
    }

    #[test]
    fn the_trace_id_is_escaped_in_the_page_title() {
        let v = serde_json::json!({"trace_id":"</title><script>alert(1)</script>","id":"a",
            "name":"n","start_time":1.0,"end_time":2.0});
        let mut store = crate::store::Store::new(crate::store::Limits::default());
        store.insert(
            v.to_string(),
            crate::model::Entity::from_document(&v).unwrap(),
        );
        let t = store.traces().next().unwrap();
        let page = trace_page(&crate::timeline::build(t), &Value::Null);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("<title>Trace &lt;/title&gt;&lt;script&gt;"));
    }

    #[test]
    fn a_timeline_with_extreme_times_renders() {
        // Finite times whose differences overflow to infinity: the bar positions are NaN.
        let v = serde_json::json!({"trace_id":"t","id":"a","name":"n","start_time":-1e308,"end_time":1e308,
            "subsegments":[{"id":"b","name":"late","start_time":1e308,"end_time":1e308}]});
        let mut store = crate::store::Store::new(crate::store::Limits::default());
        store.insert(
            v.to_string(),
            crate::model::Entity::from_document(&v).unwrap(),
        );
        let tl = crate::timeline::build(store.get("t").unwrap());
        let page = trace_page(&tl, &Value::Null);
        assert!(page.contains("data-id=\"b\""));
        assert!(!page.contains("left:NaN") && !page.contains("width:NaN"));
    }
}
