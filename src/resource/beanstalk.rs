//! Elastic Beanstalk: the X-Ray environment file the platform writes on
//! every instance. Files only, no network.

use serde_json::{Map, Value};

use super::{Detected, ORIGIN_BEANSTALK, Probe};

pub(super) const CONF_PATH: &str = "/var/elasticbeanstalk/xray/environment.conf";

/// `environment.conf` → `aws.elastic_beanstalk` with `environment_name`,
/// `version_label` (strings) and `deployment_id` (a number, as the schema
/// wants; a numeric string is converted). Other keys are left out. A file
/// that is not a JSON object with one of these keys counts as absent.
pub(super) fn detect(probe: &Probe) -> Option<Detected> {
    let text = probe.read(CONF_PATH)?;
    let Ok(Value::Object(conf)) = serde_json::from_str::<Value>(&text) else {
        return None;
    };
    let mut block = Map::new();
    for key in ["environment_name", "version_label"] {
        let value = match conf.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
            Some(Value::Number(n)) => Value::String(n.to_string()),
            _ => continue,
        };
        block.insert(key.to_owned(), value);
    }
    let deployment_id = match conf.get("deployment_id") {
        Some(Value::Number(n)) => Some(n.clone()),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok().map(Into::into),
        _ => None,
    };
    if let Some(id) = deployment_id {
        block.insert("deployment_id".to_owned(), Value::Number(id));
    }
    if block.is_empty() {
        return None;
    }
    Some(Detected {
        origin: Some(ORIGIN_BEANSTALK),
        key: "elastic_beanstalk",
        block,
        ..Detected::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::testutil::{TempRoot, detectors};
    use crate::resource::{ORIGIN_BEANSTALK, detect as detect_all};

    fn run(conf: Option<&str>) -> (Option<&'static str>, Value) {
        let root = TempRoot::new();
        if let Some(conf) = conf {
            root.write(CONF_PATH, conf);
        }
        let r = detect_all(&detectors(&root, &[]));
        (r.origin(), Value::Object(r.aws_fields().clone()))
    }

    #[test]
    fn environment_conf() {
        let (origin, aws) = run(Some(
            r#"{"deployment_id":32,"version_label":"app-5a56-170119_190650-stage-170119_190650","environment_name":"scorekeep"}"#,
        ));
        assert_eq!(origin, Some(ORIGIN_BEANSTALK));
        assert_eq!(
            aws,
            json!({"elastic_beanstalk": {
                "environment_name": "scorekeep",
                "deployment_id": 32,
                "version_label": "app-5a56-170119_190650-stage-170119_190650"
            }})
        );
    }

    #[test]
    fn types_are_made_schema_valid_and_unknown_keys_dropped() {
        let (origin, aws) = run(Some(
            r#"{"deployment_id":"7","version_label":12,"environment_name":"env","extra":{"x":1}}"#,
        ));
        assert_eq!(origin, Some(ORIGIN_BEANSTALK));
        assert_eq!(
            aws,
            json!({"elastic_beanstalk": {"environment_name": "env", "version_label": "12", "deployment_id": 7}})
        );
        let (_, aws) = run(Some(
            r#"{"deployment_id":"seven","environment_name":"env"}"#,
        ));
        assert_eq!(
            aws,
            json!({"elastic_beanstalk": {"environment_name": "env"}})
        );
    }

    #[test]
    fn missing_malformed_or_empty_file_is_not_beanstalk() {
        for conf in [
            None,
            Some(""),
            Some("{not json"),
            Some("[1,2]"),
            Some("{}"),
            Some(r#"{"other":"x"}"#),
        ] {
            assert_eq!(run(conf), (None, json!({})), "{conf:?}");
        }
    }
}
