//! Errors, exceptions and the error/fault/throttle flags, end to end:
//! what X-Ray users filter traces by and read to see what failed. The
//! first tests were findings of a black-box hunt (what the user writes,
//! what is promised, what happened before the fix); the `passing_` ones
//! are its checks of neighbouring cases.

mod common;

use common::{Captured as Run, capture_documents as run_cfg, exceptions, node, quietly};

use serde_json::Value;
use tracing::field::Empty;
use tracing::{error, info_span};

fn run(f: impl FnOnce()) -> Run {
    run_cfg(|b| b, f)
}

fn flags(n: &Value) -> (bool, bool, bool) {
    (
        n["error"].as_bool().unwrap_or(false),
        n["throttle"].as_bool().unwrap_or(false),
        n["fault"].as_bool().unwrap_or(false),
    )
}

#[derive(Debug)]
struct Boom(String, Option<Box<Boom>>);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Boom {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|b| b as _)
    }
}
fn boom(s: &str) -> Boom {
    Boom(s.to_owned(), None)
}

#[tracing::instrument(err)]
fn level3() -> Result<(), Boom> {
    Err(Boom(
        "disk full at https://u:pw@h/x?token=T1".into(),
        Some(Box::new(boom("io"))),
    ))
}
#[tracing::instrument(err)]
fn level2() -> Result<(), Boom> {
    level3()
}
#[tracing::instrument(err)]
fn level1() -> Result<(), Boom> {
    level2()
}

/// A span that a `Drop` enters during an unwinding, made before the
/// panic and never unwound through, is marked a fault "panicked".
///
/// The user writes a pooled connection whose `Drop` logs its return to the
/// pool inside the connection's own span (`self.span.in_scope(..)`); a
/// handler panics while holding it, and the panic is caught above.
///
/// README ("How spans map to X-Ray"): "A span a panic unwinds through (its
/// guard is dropped by the unwinding: the panic was caught above it ...) is
/// a `fault`, with the exception `panicked` ... A span made during the
/// unwinding (by a `Drop`) is not." The connection's span was not unwound
/// through: its guard was dropped by the `Drop`'s own code, which returned
/// normally. Yet it comes out `fault: true` with the exception "panicked":
/// a false fault on a span that did nothing wrong (X-Ray users filtering
/// on `fault` see the pool failing).
///
/// It was: `XrayLayer::on_exit` (src/layer.rs) marks any span exited
/// while `std::thread::panicking()` as unwound, without telling an exit by
/// the unwinding from an ordinary exit inside a `Drop` run by it.
#[test]
fn a_span_entered_by_a_drop_during_unwinding_is_no_fault() {
    struct Conn {
        span: tracing::Span,
    }
    impl Drop for Conn {
        fn drop(&mut self) {
            self.span
                .in_scope(|| tracing::info!("returned to the pool"));
        }
    }
    let r = quietly(|| {
        run(|| {
            info_span!("request").in_scope(|| {
                let _ = std::panic::catch_unwind(|| {
                    let conn = Conn {
                        span: info_span!("pooled_conn"),
                    };
                    info_span!("handler").in_scope(|| {
                        let _held = &conn;
                        panic!("handler bug");
                    });
                });
            });
        })
    });
    // The handler was unwound through: a fault (as promised).
    let handler = node(&r.docs, "handler");
    assert_eq!(flags(handler), (false, false, true), "{handler:#}");
    let conn = node(&r.docs, "pooled_conn");
    assert_eq!(
        flags(conn),
        (false, false, false),
        "a span the panic never went through is flagged: {conn:#}"
    );
    assert!(exceptions(conn).is_empty(), "{conn:#}");
}

/// On a long-lived root that streams its finished subsegments
/// (`with_max_held_subsegments`), an error passed up to the root no longer
/// names the exception below as its `cause`.
///
/// The user writes nested `#[instrument(err)]` functions under a root that
/// logs the error it got back (`error!(error = %e)`), as in a long job.
///
/// README (`&dyn Error` row): "an error recorded again by the spans it
/// passes up through, as nested `#[instrument(err)]` functions do, names
/// the one below as its `cause`". SPEC 1.6: `cause` is "id of the parent
/// exception", and may refer "to an exception recorded elsewhere in the
/// trace". Without streaming the root's exception names level1's (checked
/// first, below); once level1's subtree was streamed as an independent
/// subsegment before the root ended, the root's exception has no `cause`:
/// the chain is cut where the document was split.
///
/// It was: `Assembler::link_to_descendants` (src/assemble.rs) looks
/// only in `self.exceptions`, the exceptions of the part being assembled;
/// the ids of exceptions already sent in earlier parts of the same trace
/// are not kept for the parts that follow.
#[test]
fn an_error_passed_up_names_its_cause_across_streamed_parts() {
    let body = || {
        info_span!("job").in_scope(|| {
            for i in 0..3 {
                info_span!("step", i).in_scope(|| {});
            }
            if let Err(e) = level1() {
                error!(error = %e);
            }
            for i in 0..3 {
                info_span!("step", i).in_scope(|| {});
            }
        });
    };
    let root_cause = |r: &Run| {
        let root = r
            .docs
            .iter()
            .find(|d| d.get("type").is_none())
            .expect("the segment");
        let level1 = node(&r.docs, "level1");
        (
            exceptions(root)[0]["cause"].clone(),
            exceptions(level1)[0]["id"].clone(),
        )
    };
    // Control: one document, the link is there.
    let whole = run(body);
    assert_eq!(whole.docs.len(), 1);
    let (cause, below) = root_cause(&whole);
    assert_eq!(cause, below, "{:#?}", whole.docs);
    // Streamed: level1 leaves before the job ends.
    let streamed = run_cfg(|b| b.with_max_held_subsegments(2), body);
    assert!(streamed.docs.len() > 1, "streamed: {:#?}", streamed.docs);
    let (cause, below) = root_cause(&streamed);
    assert_eq!(
        cause, below,
        "the job's error lost its link to level1's exception: {:#?}",
        streamed.docs
    );
}

/// A server behind `XrayServerLayer` whose handler is an `#[instrument(err)]`
/// function (feature `tower`).
#[cfg(feature = "tower")]
mod server {
    use super::*;

    #[derive(Debug)]
    struct UpstreamError(String);
    impl std::fmt::Display for UpstreamError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for UpstreamError {}

    // `skip(text)`: the argument itself would be plain metadata, sent whole.
    #[tracing::instrument(skip(text), err)]
    async fn load_order(text: String) -> Result<http::Response<String>, UpstreamError> {
        Err(UpstreamError(text))
    }

    /// A tower service whose handler is an `#[instrument(err)]` function.
    #[derive(Clone)]
    struct Handler(&'static str);
    impl tower_service::Service<http::Request<String>> for Handler {
        type Response = http::Response<String>;
        type Error = UpstreamError;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, UpstreamError>> + Send>,
        >;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), UpstreamError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<String>) -> Self::Future {
            Box::pin(load_order(self.0.to_owned()))
        }
    }

    fn serve_once(text: &'static str) -> Run {
        use tower_layer::Layer;
        use tower_service::Service;
        run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut service = tracing_xray::tower::XrayServerLayer::new().layer(Handler(text));
                let _ = service.call(http::Request::new(String::new())).await;
            });
        })
    }

    /// A server whose handler's error quotes a URL with a query (or user
    /// info) loses the link from the segment's exception to the handler's.
    ///
    /// The user writes an `#[instrument(err)]` handler behind
    /// `XrayServerLayer` that returns its error to the server (a tower service
    /// whose error type is the handler's). Its text names the upstream URL it
    /// called, query and all, as HTTP clients' errors do.
    ///
    /// README (`&dyn Error` row): "an error recorded again by the spans it
    /// passes up through ... names the one below as its `cause`"; tower
    /// section: a handler that "returns an error, whose text is the
    /// exception". With a plain text the segment's exception names the
    /// handler's as its `cause` (checked first, below). When the text holds a
    /// URL with a query, the segment's exception has no `cause`: the same
    /// error, passed up one level, is shown as two unrelated failures.
    ///
    /// It was: `XrayServerFuture::poll` (src/tower/server.rs) records
    /// `otel.status_message` already scrubbed by `without_url_secrets`, and
    /// `Assembler::entity` (src/assemble.rs) hashes that field's text as
    /// recorded (`error_message_recorded`), while the handler's event was
    /// hashed before scrubbing (see tests/exception_linking.rs's first test,
    /// which fixed the same mismatch for events): the two hashes differ. The
    /// client layer does the same for an error that is neither `BoxError` nor
    /// `io::Error` (src/tower/client.rs).
    #[test]
    fn a_server_error_quoting_a_url_names_the_handlers_exception_as_its_cause() {
        let linked = |r: &Run| {
            let segment = &r.docs[0];
            let handler = node(&r.docs, "load_order");
            (
                exceptions(segment)[0]["cause"].clone(),
                exceptions(handler)[0]["id"].clone(),
                format!("{segment:#}"),
            )
        };
        // Control: linked.
        let plain = serve_once("upstream returned 502");
        let (cause, below, doc) = linked(&plain);
        assert_eq!(cause, below, "{doc}");
        // The same with a URL in the text.
        let with_url =
            serve_once("upstream https://api.example.com/v1/orders?sig=SECRET1 returned 502");
        let (cause, below, doc) = linked(&with_url);
        assert!(!doc.contains("SECRET1"), "{doc}");
        assert_eq!(
            cause, below,
            "the segment's exception lost its link to the handler's: {doc}"
        );
    }
}

/// A stack frame's `path` is sent absolute (with the user's home
/// directory) when the file is a Windows path, or an absolute path with no
/// `/src/` in it.
///
/// The user runs on Windows (or forwards `log` records of a library whose
/// file is outside a `src/` directory): cargo gives `file!()` absolute
/// paths for registry crates, `C:\Users\alice\.cargo\registry\src\...`;
/// every ERROR event of tower-http's `on_failure` or of a `log`-using
/// library has such a file.
///
/// SPEC 1.6: "stackFrame: `path` (relative file path)". The layer makes
/// `/root/.cargo/registry/src/index.crates.io-.../tower-http-0.6.6/src/...`
/// relative (`tower-http-0.6.6/src/...`), and recognises a Windows drive
/// (`:\`) as absolute, but then sends it whole: `C:\Users\alice\...`.
///
/// It was: `relative_path` (src/assemble.rs) looks for
/// `/registry/src/`, `/git/checkouts/` and `/src/` with forward slashes
/// only, and returns any absolute path it cannot shorten as it is.
#[test]
fn stack_frame_paths_are_relative() {
    let files = [
        r"C:\Users\alice\.cargo\registry\src\index.crates.io-1949cf8c6b5b557f\tower-http-0.6.6\src\trace\on_failure.rs",
        r"C:\Users\alice\app\src\main.rs",
        "/home/alice/shared/tests/support.rs",
    ];
    let r = run(|| {
        info_span!("request").in_scope(|| {
            for file in files {
                let record = tracing_log::log::Record::builder()
                    .level(tracing_log::log::Level::Error)
                    .target("app")
                    .file(Some(file))
                    .line(Some(7))
                    .args(format_args!("failed"))
                    .build();
                tracing_log::format_trace(&record).unwrap();
            }
        });
    });
    let paths: Vec<String> = exceptions(&r.docs[0])
        .iter()
        .map(|e| e["stack"][0]["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths.len(), files.len(), "{:#}", r.docs[0]);
    let absolute: Vec<&String> = paths
        .iter()
        .filter(|p| p.starts_with('/') || p.contains(":\\") || p.contains("alice"))
        .collect();
    assert!(
        absolute.is_empty(),
        "absolute stack paths sent: {absolute:#?}"
    );
}

/// An AWS SDK call that got a 200 but failed on the client's side
/// (the response could not be deserialized) has its exception marked
/// `remote: true`, as if the service had failed.
///
/// The user's code: an AWS SDK call (here its span, with the SDK's field
/// names; `XrayInterceptor` records exactly these for such a call: the
/// last attempt's status, 200, and, no service error being found in a 2xx
/// response, the SDK error as the `error` field).
///
/// SPEC 1.6: `remote` (bool: "caused by a downstream service error").
/// src/aws_sdk.rs's docs: "a service's [error] as one `remote` exception
/// of its code and message, any other with the SDK error's `source()`
/// chain". A 200 is no service error: the failure is local, yet the
/// exception says it is the remote service's.
///
/// It was: `Conventions::apply` (src/fields/conventions.rs) sets
/// `applied.remote = (is_remote || is_aws) && status.is_some()`: any
/// status, a success included, makes every exception remote.
#[test]
fn a_local_failure_after_a_successful_response_is_not_remote() {
    let r = run(|| {
        info_span!("request").in_scope(|| {
            tracing::span!(
                target: "aws_sdk_dynamodb::operation::get_item",
                tracing::Level::DEBUG,
                "DynamoDB.GetItem",
                "rpc.service" = "DynamoDB",
                "rpc.method" = "GetItem",
                "rpc.system" = "aws-api",
                http.response.status_code = 200_u64,
                error = &boom("failed to deserialize response") as &dyn std::error::Error,
            )
            .in_scope(|| {});
        });
    });
    let call = node(&r.docs, "DynamoDB");
    assert_eq!(flags(call), (false, false, true), "{call:#}");
    let ex = exceptions(call);
    assert_eq!(ex.len(), 1, "{call:#}");
    assert_ne!(
        ex[0]["remote"], true,
        "a local failure marked remote: {call:#}"
    );
}

/// An error field recorded again on a span whose exceptions are
/// full is counted as dropped once per recording, though the field holds
/// one exception.
///
/// The user writes a retry loop: each attempt logs an ERROR event (8 of
/// them), then the span's `err` field is recorded with the latest error
/// after each of 5 more attempts.
///
/// README (Limits): "a field recorded again (`span.record` in a loop)
/// replaces its value instead of adding one, and an error field its
/// exception"; (`&dyn Error` row) "8 per span, the rest counted in
/// `stats()` and the span's `metadata.tracing_xray.exceptions_dropped`".
/// The rest is one exception (the field's, which would replace itself had
/// there been room), yet `exceptions_dropped` says 5: users reading the
/// count believe five failures went unreported.
///
/// It was: `SpanData::push_error` (src/span_data.rs) replaces an
/// error of the same field only when that error was kept; a field whose
/// error was dropped is counted again on every recording.
#[test]
fn an_error_field_recorded_again_past_the_bound_is_counted_once() {
    let r = run(|| {
        info_span!("request").in_scope(|| {
            let s = info_span!("retrying", err = Empty);
            s.in_scope(|| {
                for i in 0..8 {
                    error!("attempt {i} failed");
                }
            });
            for i in 0..5 {
                s.record(
                    "err",
                    &boom(&format!("last error {i}")) as &dyn std::error::Error,
                );
            }
        });
    });
    let span = node(&r.docs, "retrying");
    assert_eq!(exceptions(span).len(), 8, "{span:#}");
    assert_eq!(
        span["metadata"]["tracing_xray"]["exceptions_dropped"], 1,
        "one field, one exception left out: {span:#}"
    );
    assert_eq!(r.xray.stats().exceptions_dropped, 1);
}

/// Found by the hunt of the README's claims. A span fills its 8 error
/// fields, a 9th (`e9`) is dropped and counted; then `e1` recovers (a text
/// now, its exception gone) and `e9` fails again, kept this time. Before the
/// fix the document held all 8 errors, `e9`'s among them, yet said one was
/// dropped, as did `stats()`: a dropped field's count was never taken back.
#[test]
fn an_error_field_kept_in_the_end_is_not_counted_dropped() {
    let r = run(|| {
        let s = info_span!(
            "r",
            e1 = Empty,
            e2 = Empty,
            e3 = Empty,
            e4 = Empty,
            e5 = Empty,
            e6 = Empty,
            e7 = Empty,
            e8 = Empty,
            e9 = Empty
        );
        let err = boom("boom");
        for f in ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"] {
            s.record(f, &err as &dyn std::error::Error);
        }
        s.record("e1", "recovered");
        s.record("e9", &boom("boom 9") as &dyn std::error::Error);
        s.in_scope(|| {});
    });
    let seg = &r.docs[0];
    let ex = exceptions(seg);
    assert_eq!(ex.len(), 8, "{seg:#}");
    assert!(ex.iter().any(|e| e["message"] == "boom 9"), "{seg:#}");
    assert_eq!(seg["metadata"]["tracing"]["e1"], "recovered");
    assert_eq!(
        seg["metadata"]["tracing_xray"].get("exceptions_dropped"),
        None,
        "{seg:#}"
    );
    assert_eq!(r.xray.stats().exceptions_dropped, 0);
}

// ===========================================================================
// PASSING: checks of the promises that held (kept as coverage).
// ===========================================================================

/// The flag combinations of the README's table, each on its own span:
/// status 429 + ERROR event, 404 + `&dyn Error`, 200 + `otel.status_code`
/// on an internal span and on a client call, gRPC RESOURCE_EXHAUSTED in a
/// 200, `xray.fault = false` with a 500, a status recorded 500 then 200
/// (the later value wins), and no flag carried up to a parent.
#[test]
fn passing_flag_combinations() {
    let r = run(|| {
        info_span!("root").in_scope(|| {
            info_span!("s429", http.response.status_code = 429).in_scope(|| error!("slow down"));
            info_span!(
                "s404",
                http.response.status_code = 404,
                err = &boom("gone") as &dyn std::error::Error
            )
            .in_scope(|| {});
            info_span!(
                "internal200",
                http.response.status_code = 200,
                otel.status_code = "ERROR"
            )
            .in_scope(|| {});
            info_span!(
                "call200",
                otel.kind = "client",
                url.full = "http://x.internal/y",
                xray.name = "call200",
                http.response.status_code = 200,
                otel.status_code = "ERROR"
            )
            .in_scope(|| {});
            info_span!(
                "grpc",
                rpc.grpc.status_code = 8_i64,
                http.response.status_code = 200
            )
            .in_scope(|| {});
            info_span!(
                "fault_false",
                xray.fault = false,
                http.response.status_code = 500
            )
            .in_scope(|| {});
            let twice = info_span!("twice", http.response.status_code = Empty);
            twice.record("http.response.status_code", 500);
            twice.record("http.response.status_code", 200);
        });
    });
    let d = &r.docs;
    assert_eq!(flags(node(d, "s429")), (true, true, false));
    assert_eq!(exceptions(node(d, "s429")).len(), 1);
    assert_eq!(flags(node(d, "s404")), (true, false, false));
    assert_eq!(exceptions(node(d, "s404"))[0]["message"], "gone");
    assert_eq!(flags(node(d, "internal200")), (false, false, false));
    assert_eq!(flags(node(d, "call200")), (false, false, true));
    assert_eq!(flags(node(d, "grpc")), (true, true, false));
    assert_eq!(
        node(d, "grpc")["metadata"]["tracing"]["rpc.grpc.status_code"],
        8
    );
    assert_eq!(flags(node(d, "fault_false")), (false, false, true));
    assert_eq!(flags(node(d, "twice")), (false, false, false));
    // The segment itself failed nothing: no flag carried up.
    assert_eq!(flags(&d[0]), (false, false, false), "{:#}", d[0]);
}

/// Nested `#[instrument(err)]` three deep: each level's exception names the
/// one below; the message has no URL secrets; sibling spans with the same
/// text stay unlinked.
#[test]
fn passing_nested_instrument_err_links_and_siblings() {
    let r = run(|| {
        info_span!("root").in_scope(|| {
            let _ = level1();
            info_span!("sib1").in_scope(|| error!("same text"));
            info_span!("sib2").in_scope(|| error!("same text"));
        });
    });
    let d = &r.docs;
    let id = |n: &str| exceptions(node(d, n))[0]["id"].clone();
    let cause = |n: &str| exceptions(node(d, n))[0]["cause"].clone();
    assert_eq!(cause("level1"), id("level2"));
    assert_eq!(cause("level2"), id("level3"));
    assert_eq!(cause("level3"), Value::Null);
    assert_eq!(
        exceptions(node(d, "level3"))[0]["message"],
        "disk full at https://h/x"
    );
    assert_eq!(cause("sib2"), Value::Null);
    assert!(!serde_json::to_string(d).unwrap().contains("T1"));
}

/// A 20-deep `source()` chain keeps 8 sources, the last one's `skipped`
/// counting the 12 left out; a chain that loops ends; past 8 errors on a
/// span, the rest are counted in `stats()` and the span's metadata; a span
/// too big for a document keeps its first exception and counts the rest.
#[test]
fn passing_limits_sources_loops_and_counts() {
    #[derive(Debug)]
    struct Loop;
    impl std::fmt::Display for Loop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("loop")
        }
    }
    impl std::error::Error for Loop {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self)
        }
    }
    let r = run(|| {
        info_span!("root").in_scope(|| {
            let deep = (0..20).fold(None, |acc: Option<Box<Boom>>, i| {
                Some(Box::new(Boom(format!("s{i}"), acc)))
            });
            let e = Boom("top".into(), deep);
            info_span!("deep", e = &e as &dyn std::error::Error).in_scope(|| {});
            info_span!("looping", e = &Loop as &dyn std::error::Error).in_scope(|| {});
            info_span!("many").in_scope(|| {
                for i in 0..11 {
                    error!("e{i}");
                }
            });
        });
    });
    let d = &r.docs;
    let deep = exceptions(node(d, "deep"));
    assert_eq!(deep.len(), 9);
    assert_eq!(deep[8]["message"], "s12");
    assert_eq!(deep[8]["skipped"], 12);
    for pair in deep.windows(2) {
        assert_eq!(pair[0]["cause"], pair[1]["id"]);
    }
    assert_eq!(exceptions(node(d, "looping")).len(), 9);
    let many = node(d, "many");
    assert_eq!(exceptions(many).len(), 8);
    assert_eq!(many["metadata"]["tracing_xray"]["exceptions_dropped"], 3);
    assert_eq!(r.xray.stats().exceptions_dropped, 3);

    let big = run(|| {
        info_span!("root").in_scope(|| {
            info_span!("big").in_scope(|| {
                for i in 0..10 {
                    let chain = (0..8).fold(None, |acc: Option<Box<Boom>>, j| {
                        Some(Box::new(Boom(format!("{i}-{j}-{}", "x".repeat(1500)), acc)))
                    });
                    let e = Boom(format!("top{i}"), chain);
                    error!(error = &e as &dyn std::error::Error, "failed {i}");
                }
            });
        });
    });
    let node_big = node(&big.docs, "big");
    let kept = exceptions(node_big).len() as u64;
    let dropped = node_big["metadata"]["tracing_xray"]["exceptions_dropped"]
        .as_u64()
        .unwrap();
    // 8 kept errors of 10 exceptions each, and 2 errors past the bound.
    assert_eq!(kept + dropped, 8 * 10 + 2, "{node_big:#}");
    assert_eq!(big.xray.stats().exceptions_dropped, dropped);
}

/// A span a panic unwinds through is a fault "panicked", even with a 200
/// recorded, and its own error, when it has one, says more.
#[test]
fn passing_panics_are_faults() {
    let r = quietly(|| {
        run(|| {
            info_span!("request").in_scope(|| {
                let _ = std::panic::catch_unwind(|| {
                    info_span!("ok_then_panic", http.response.status_code = 200)
                        .in_scope(|| panic!("bug"))
                });
                let _ = std::panic::catch_unwind(|| {
                    info_span!("said").in_scope(|| {
                        error!("invariant broken");
                        panic!("bug")
                    })
                });
            });
        })
    });
    let a = node(&r.docs, "ok_then_panic");
    assert_eq!(flags(a), (false, false, true), "{a:#}");
    assert_eq!(exceptions(a)[0]["message"], "panicked");
    let b = node(&r.docs, "said");
    assert_eq!(flags(b), (false, false, true));
    let messages: Vec<_> = exceptions(b).iter().map(|e| e["message"].clone()).collect();
    assert_eq!(messages, ["invariant broken"]);
}

/// Found by a hunt of the documents against the SDKs. An error whose text
/// is empty (`error!("")`, an error value that displays as nothing) is an
/// exception without a `message`: SPEC §1.2 omits empty optional fields,
/// and the SDKs leave it out (Go's `omitempty`, Python's `to_dict`). Before
/// the fix it was sent as `"message":""`.
#[test]
fn an_empty_error_text_is_an_exception_without_a_message() {
    let c = common::capture_documents(
        |b| b,
        || {
            let _root = info_span!("request").entered();
            info_span!("logged").in_scope(|| error!(""));
            let e = std::io::Error::other("");
            info_span!("valued", error = &e as &dyn std::error::Error).in_scope(|| {});
        },
    );
    for name in ["logged", "valued"] {
        let n = node(&c.docs, name);
        let ex = exceptions(n);
        assert_eq!(ex.len(), 1, "{n}");
        assert_eq!(n["fault"], true, "{n}");
        assert!(ex[0].get("message").is_none(), "{n}");
        assert!(ex[0].get("id").is_some(), "{n}");
    }
}
