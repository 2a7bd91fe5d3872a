//! Error types (Rust API Guidelines C-GOOD-ERR): an error whose `Display`
//! already carries an inner error's message must not also return that error
//! as its `source()`, or every reporter that walks the chain (anyhow's
//! `{:#}`, eyre, `tracing`'s error recording, this crate's own
//! `cause.exceptions`) prints it twice. Messages have no trailing
//! punctuation.

use std::error::Error;

use tracing_xray::export::ExportError;
use tracing_xray::sampling::LocalRules;

/// Every level of `err`'s chain, as `Display`ed.
fn chain(err: &(dyn Error + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

fn assert_well_formed(err: &(dyn Error + 'static)) {
    let levels = chain(err);
    for pair in levels.windows(2) {
        assert!(
            !pair[0].contains(pair[1].as_str()),
            "the message {:?} repeats its source's {:?}: a chain printed by anyhow/eyre \
             shows it twice (`{}`)",
            pair[0],
            pair[1],
            levels.join(": "),
        );
    }
    let top = &levels[0];
    assert!(!top.ends_with('.'), "trailing punctuation: {top:?}");
}

#[test]
fn export_error_io_does_not_repeat_its_source() {
    let err = ExportError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "connection refused by 127.0.0.1:2000",
    ));
    assert!(
        err.to_string()
            .contains("connection refused by 127.0.0.1:2000")
    );
    assert_well_formed(&err);
}

/// An error with a cause of its own, for chains deeper than one level.
#[derive(Debug)]
struct Refused(std::io::Error);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the collector said no")
    }
}

impl Error for Refused {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn export_error_other_does_not_repeat_its_source() {
    let inner: Box<dyn Error + Send + Sync> = "the collector said no".into();
    let err = ExportError::Other(inner);
    assert_eq!(err.to_string(), "the collector said no");
    assert_well_formed(&err);

    // The chain goes on below the wrapped error, each message once.
    let cause = std::io::Error::other("bad gateway");
    let err = ExportError::Other(Box::new(Refused(cause)));
    assert_eq!(chain(&err), ["the collector said no", "bad gateway"]);
    let cause = std::io::Error::other(Refused(std::io::Error::other("bad gateway")));
    let err = ExportError::from(cause);
    assert_eq!(
        chain(&err),
        ["I/O error: the collector said no", "bad gateway"]
    );
}

#[test]
fn sampling_rules_io_error_does_not_repeat_its_source() {
    let err = LocalRules::from_file("/nonexistent/tracing-xray/sampling-rules.json").unwrap_err();
    assert!(err.to_string().contains("sampling-rules.json"), "{err}");
    assert_well_formed(&err);
}
