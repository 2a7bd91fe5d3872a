//! Settings shared by the layer and the worker, and the environment
//! variables that feed them (SPEC §5).

use crate::model::Service;

/// Default capacity of the queue between the application and the worker, in traces.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// The largest queue capacity. The queue's slots are allocated when the
/// layer is built (48 bytes each on 64-bit targets: 48 MiB at this
/// maximum), so a capacity meant as "unbounded" must neither reserve
/// gigabytes nor overflow the channel's index arithmetic (a panic).
pub(crate) const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// Default bound of the queue between the application and the worker, in
/// bytes of finished spans (their own and their fields'): 64 MiB.
pub(crate) const DEFAULT_MAX_QUEUED_BYTES: usize = 64 << 20;
/// The smallest bound in bytes a builder accepts: 1 MiB, room for many
/// spans holding a field of the largest size (64 KiB) each.
pub(crate) const MIN_MAX_QUEUED_BYTES: usize = 1 << 20;
/// Bytes of finished spans one open trace holds before it streams them,
/// whatever their number: 1 MiB, or a quarter of the queue's bound in
/// bytes if that is less, so that what an open trace sends at once always
/// fits a queue that is otherwise empty.
pub(crate) fn max_held_bytes(max_queued_bytes: usize) -> usize {
    (1 << 20).min(max_queued_bytes / 4)
}
/// Default subsegment count above which completed subtrees are streamed (Java and Node SDKs: 100).
pub(crate) const DEFAULT_STREAMING_THRESHOLD: usize = 100;
/// Default number of finished spans one open trace holds before it
/// streams them.
pub(crate) const DEFAULT_MAX_HELD_SUBSEGMENTS: usize = 1000;

/// Everything the worker needs to turn spans into documents.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) service_name: String,
    pub(crate) service: Service,
    pub(crate) streaming_threshold: usize,
    pub(crate) fields: crate::fields::FieldOptions,
    /// Filled by the resource detector once it has finished.
    pub(crate) resource: crate::resource::ResourceSlot,
}

/// `AWS_XRAY_SDK_ENABLED=false|0|no|n|f|off` (Python) or
/// `AWS_XRAY_SDK_DISABLED=true` (Go) switch the layer off.
pub(crate) fn disabled_by_env() -> bool {
    disabled_by(
        std::env::var("AWS_XRAY_SDK_ENABLED").ok().as_deref(),
        std::env::var("AWS_XRAY_SDK_DISABLED").ok().as_deref(),
    )
}

fn disabled_by(enabled: Option<&str>, disabled: Option<&str>) -> bool {
    let off = enabled.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "n" | "f" | "off"
        )
    });
    off || disabled.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The segment name (SPEC §1.2), sanitized: `AWS_XRAY_TRACING_NAME`
/// (`env`, surrounding whitespace ignored), else the builder's name
/// (`code`), else the executable's file name, else `service`. A source left
/// empty once the characters X-Ray forbids are removed gives way to the
/// next one; an environment value that does so is reported on standard
/// error, as an invalid `AWS_XRAY_DAEMON_ADDRESS` is.
pub(crate) fn service_name(env: Option<&str>, code: Option<&str>) -> String {
    let valid = |name: &str| {
        let clean = crate::limits::sanitize_name(name, "");
        let clean = clean.trim();
        (!clean.is_empty()).then(|| clean.to_owned())
    };
    if let Some(env) = env.map(str::trim).filter(|s| !s.is_empty()) {
        match valid(env) {
            Some(name) => return name,
            None => crate::stderr_line(format_args!(
                "tracing-xray: AWS_XRAY_TRACING_NAME `{env}` has no character X-Ray allows \
                 in a segment name; it is ignored"
            )),
        }
    }
    code.and_then(valid)
        .or_else(|| {
            std::env::current_exe().ok().and_then(|p| {
                p.file_name()
                    .and_then(|s| valid(executable_name(&s.to_string_lossy())))
            })
        })
        .unwrap_or_else(|| "service".to_owned())
}

/// An executable's file name as a service's name: the whole of it
/// (`billing.worker`, `orders-2.4.1` are names of their own), less the
/// `.exe` that Windows requires.
fn executable_name(file_name: &str) -> &str {
    let n = file_name.len();
    match n.checked_sub(4) {
        Some(i)
            if cfg!(windows)
                && file_name.is_char_boundary(i)
                && file_name[i..].eq_ignore_ascii_case(".exe") =>
        {
            &file_name[..i]
        }
        _ => file_name,
    }
}

/// `AWS_XRAY_TRACING_NAME`, when set. A value that is not valid Unicode
/// is read without its invalid bytes (which no segment name may hold), and
/// reported on standard error.
pub(crate) fn env_tracing_name() -> Option<String> {
    let value = std::env::var_os("AWS_XRAY_TRACING_NAME")?;
    match value.into_string() {
        Ok(name) => Some(name),
        Err(raw) => {
            let name: String = raw
                .to_string_lossy()
                .chars()
                .filter(|&c| c != char::REPLACEMENT_CHARACTER)
                .collect();
            crate::stderr_line(format_args!(
                "tracing-xray: AWS_XRAY_TRACING_NAME is not valid Unicode; \
                 read as `{name}` without its invalid bytes"
            ));
            Some(name)
        }
    }
}

/// Lambda mode when the builder does not say: `LAMBDA_TASK_ROOT` set (by
/// Lambda) to a value that is not blank, as the resource detector, and the
/// Go, Node and Python SDKs, read it.
pub(crate) fn lambda_by_env() -> bool {
    lambda_by(std::env::var_os("LAMBDA_TASK_ROOT").as_deref())
}

fn lambda_by(task_root: Option<&std::ffi::OsStr>) -> bool {
    task_root.is_some_and(|v| !v.to_string_lossy().trim().is_empty())
}

/// Where the official SDKs (Go, Python) touch a file named `initialized`
/// when they start in a Lambda function: it tells the Lambda service that
/// an X-Ray SDK runs in the function (SPEC §3.3).
const LAMBDA_MARKER_DIR: &str = "/tmp/.aws-xray";

/// In a Lambda function (by the environment), touches
/// `/tmp/.aws-xray/initialized` as the official SDKs do. A failure (a
/// read-only `/tmp`) costs a message on standard error, nothing more.
pub(crate) fn mark_lambda_function() {
    if !lambda_by_env() {
        return;
    }
    if let Err(err) = touch_marker(std::path::Path::new(LAMBDA_MARKER_DIR)) {
        crate::stderr_line(format_args!(
            "tracing-xray: cannot touch {LAMBDA_MARKER_DIR}/initialized: {err}"
        ));
    }
}

/// Creates `dir/initialized` (and `dir`) when missing, and sets its time of
/// modification to now, as `touch` does.
fn touch_marker(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("initialized"))?
        .set_modified(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lambda_marker_is_created_then_touched() {
        use std::time::{Duration, SystemTime};
        let dir = std::env::temp_dir().join(format!(
            "tracing-xray-marker-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        touch_marker(&dir).unwrap();
        let file = dir.join("initialized");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
        // An old marker (a previous start in a warm sandbox) is touched again.
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        touch_marker(&dir).unwrap();
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        assert!(modified > old + Duration::from_secs(86_400), "{modified:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lambda_mode_needs_a_task_root_that_is_not_blank() {
        use std::ffi::OsStr;
        assert!(lambda_by(Some(OsStr::new("/var/task"))));
        assert!(!lambda_by(None));
        assert!(!lambda_by(Some(OsStr::new(""))));
        assert!(!lambda_by(Some(OsStr::new("  "))));
    }

    #[test]
    fn sdk_switches() {
        assert!(!disabled_by(None, None));
        for off in ["false", "FALSE", "0", "no", "n", "f", "off", " Off "] {
            assert!(disabled_by(Some(off), None), "{off}");
        }
        for on in ["true", "1", "yes", "garbage", ""] {
            assert!(!disabled_by(Some(on), None), "{on}");
        }
        assert!(disabled_by(None, Some("true")));
        assert!(disabled_by(None, Some("TRUE")));
        assert!(!disabled_by(None, Some("false")));
        assert!(!disabled_by(None, Some("1")));
    }

    #[test]
    fn service_name_sources_in_order_each_sanitized() {
        assert_eq!(service_name(Some("from-env"), Some("code")), "from-env");
        // Whitespace around an environment value (an env file, a ConfigMap
        // with a trailing newline) is not part of the name.
        assert_eq!(
            service_name(Some("  orders-api \n"), Some("code")),
            "orders-api"
        );
        assert_eq!(service_name(Some("orders (eu)"), None), "orders eu");
        // Blank, or nothing X-Ray allows: the builder's name, not `service`.
        for env in [
            None,
            Some(""),
            Some(" \t"),
            Some("???"),
            Some("<>*!"),
            Some("( )"),
        ] {
            assert_eq!(service_name(env, Some("from-code")), "from-code", "{env:?}");
        }
        // The same for the builder's name: the executable's.
        let exe = service_name(None, None);
        assert!(!exe.is_empty() && exe != "service", "{exe}");
        assert_eq!(service_name(Some("???"), Some("!!!")), exe);
        assert_eq!(
            service_name(None, Some("a".repeat(300).as_str())).len(),
            200
        );
    }

    #[test]
    fn defaults_are_pinned() {
        assert_eq!(DEFAULT_QUEUE_CAPACITY, 4096);
        assert_eq!(DEFAULT_STREAMING_THRESHOLD, 100);
        assert_eq!(DEFAULT_MAX_HELD_SUBSEGMENTS, 1000);
    }
}
