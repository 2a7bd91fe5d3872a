//! Lambda: recognised from the environment the runtime sets. Lambda writes
//! the function's segment itself, so nothing goes into the `aws` object and
//! there is no origin; the function's details are kept for the layer.

use super::Probe;

/// The Lambda function the process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LambdaInfo {
    /// `AWS_LAMBDA_FUNCTION_NAME`.
    pub(crate) function_name: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_VERSION`.
    pub(crate) function_version: Option<String>,
    /// `AWS_REGION`.
    pub(crate) region: Option<String>,
    /// `AWS_LAMBDA_LOG_GROUP_NAME`.
    pub(crate) log_group: Option<String>,
}

/// `LAMBDA_TASK_ROOT` set → a Lambda function: what the layer's Lambda mode
/// reads, and the Go, Node and Python SDKs. `AWS_LAMBDA_FUNCTION_NAME` alone
/// (a function's code run in a container outside Lambda, some emulators) is
/// not Lambda: the layer then sends segments of its own, which need the
/// host's origin and resource blocks.
pub(super) fn detect(probe: &Probe) -> Option<LambdaInfo> {
    probe.var("LAMBDA_TASK_ROOT")?;
    Some(LambdaInfo {
        function_name: probe.var("AWS_LAMBDA_FUNCTION_NAME"),
        function_version: probe.var("AWS_LAMBDA_FUNCTION_VERSION"),
        region: probe.var("AWS_REGION"),
        log_group: probe.var("AWS_LAMBDA_LOG_GROUP_NAME"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Detectors;

    fn probe(env: &[(&str, &str)]) -> Probe {
        let root = std::env::temp_dir().join("tracing-xray-no-such-root");
        Detectors::default()
            .with_root(root)
            .with_env(env.iter().copied())
            .probe
    }

    #[test]
    fn function_from_the_runtime_environment() {
        let info = detect(&probe(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders"),
            ("LAMBDA_TASK_ROOT", "/var/task"),
        ]));
        assert_eq!(
            info,
            Some(LambdaInfo {
                function_name: Some("orders".into()),
                function_version: Some("$LATEST".into()),
                region: Some("eu-west-1".into()),
                log_group: Some("/aws/lambda/orders".into()),
            })
        );
    }

    #[test]
    fn task_root_alone_is_enough() {
        let info = detect(&probe(&[("LAMBDA_TASK_ROOT", "/var/task")]));
        assert_eq!(info, Some(LambdaInfo::default()));
    }

    #[test]
    fn a_function_name_without_task_root_is_not_lambda() {
        let info = detect(&probe(&[("AWS_LAMBDA_FUNCTION_NAME", "orders")]));
        assert_eq!(info, None);
    }

    #[test]
    fn absent_or_blank_is_not_lambda() {
        assert_eq!(detect(&probe(&[])), None);
        assert_eq!(detect(&probe(&[("AWS_REGION", "eu-west-1")])), None);
        assert_eq!(
            detect(&probe(&[
                ("AWS_LAMBDA_FUNCTION_NAME", " "),
                ("LAMBDA_TASK_ROOT", "")
            ])),
            None
        );
    }
}
