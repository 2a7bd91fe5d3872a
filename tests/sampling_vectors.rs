//! The shared sampling vectors (tests/fixtures/sampling, see its README),
//! each run through the public samplers.

mod sampling_common;

use sampling_common::{ProxyServer, fixture_json, fixture_path};
use serde_json::json;
use tracing_xray::sampling::{
    CentralizedSampler, LocalRules, Sampler, SamplingRequest, SamplingRulesError,
};

/// A local rule set whose only rule samples everything (rate 1) and whose
/// default samples nothing: `sampled` then means "the rule matched".
fn single_rule(url_path: &str) -> LocalRules {
    let doc = json!({
        "version": 2,
        "default": {"fixed_target": 0, "rate": 0.0},
        "rules": [{"host": "*", "http_method": "*", "url_path": url_path,
                   "fixed_target": 0, "rate": 1.0}]
    });
    LocalRules::from_json(&doc.to_string()).expect("valid rules")
}

#[test]
fn wildcard_vectors_through_local_rules() {
    let file = fixture_json("wildcard-vectors.json");
    let vectors = file["vectors"].as_array().expect("vectors");
    let (mut exact, mut case_sensitive) = (0, 0);
    for v in vectors {
        let pattern = v["pattern"].as_str().expect("pattern");
        let text = v["text"].as_str().expect("text");
        let expected = v["expected"].as_bool().expect("expected");
        let request = SamplingRequest::new().with_url_path(text);
        let matched = single_rule(pattern).sample(&request).is_sampled();
        if v["case_insensitive"].as_bool().expect("case_insensitive") {
            assert_eq!(matched, expected, "pattern {pattern:?} text {text:?}");
            exact += 1;
        } else {
            // Sampling is always case-insensitive (SPEC §4.2); a
            // case-sensitive match must still match. The exact
            // case-sensitive results are checked by the unit test
            // `sampling::wildcard::tests::shared_vectors`.
            if expected {
                assert!(matched, "pattern {pattern:?} text {text:?}");
            }
            case_sensitive += 1;
        }
    }
    println!(
        "wildcard vectors: {} loaded, {exact} case-insensitive checked exactly, \
         {case_sensitive} case-sensitive checked as case-insensitive",
        vectors.len()
    );
    assert!(exact > 0, "no vectors loaded");
    assert_eq!(exact + case_sensitive, 137);
}

#[test]
fn manifest_vectors() {
    let file = fixture_json("sampling-rules/manifest-vectors.json");
    let manifests = file["manifests"].as_array().expect("manifests");
    let (mut valid, mut invalid) = (0, 0);
    for m in manifests {
        let name = m["file"].as_str().expect("file");
        let expected = m["expected"].as_str().expect("expected");
        let result = LocalRules::from_file(fixture_path(&format!("sampling-rules/{name}")));
        if expected.starts_with("valid") {
            assert!(result.is_ok(), "{name}: {result:?}");
            valid += 1;
            continue;
        }
        assert!(expected.starts_with("invalid"), "{name}: {expected}");
        let error = result.expect_err(name);
        println!("{name}: {error}");
        invalid += 1;
        // The error names the problem the vector describes.
        let specific = match name {
            "go-testdata-rule-v1-contains-host.json" => matches!(
                &error,
                SamplingRulesError::InvalidRule { index: 0, problem }
                    if problem.contains("`host` is not allowed in a version 1 rule")
            ),
            "go-testdata-rule-v2-contains-service-name.json" => matches!(
                &error,
                SamplingRulesError::InvalidRule { index: 0, problem }
                    if problem.contains("`service_name` is not allowed in a version 2 rule")
            ),
            "go-testdata-rule-v1-invalid.json" => {
                matches!(&error, SamplingRulesError::Json { .. })
            }
            "java-testdata-EmptySamplingRules.json" => {
                matches!(&error, SamplingRulesError::MissingDefault)
            }
            "java-testdata-ExtraAttributesOnDefaultSamplingRules.json" => matches!(
                &error,
                SamplingRulesError::InvalidDefault { problem } if problem.contains("`url_path`")
            ),
            "java-testdata-MissingAttributesSamplingRules.json"
            | "java-testdata-OneRuleMissingAttributesSamplingRules.json" => matches!(
                &error,
                SamplingRulesError::InvalidDefault { problem }
                    if problem == "missing `fixed_target`"
            ),
            other => panic!("no expectation for invalid manifest {other}"),
        };
        assert!(specific, "{name}: unexpected error {error:?}");
    }
    println!("manifests: {valid} valid, {invalid} invalid");
    assert!(valid > 0 && invalid > 0, "no manifests loaded");
    assert_eq!(valid + invalid, manifests.len());
}

#[test]
fn manifest_decision_vectors() {
    let file = fixture_json("sampling-rules/manifest-vectors.json");
    let vectors = file["decision_vectors"]
        .as_array()
        .expect("decision_vectors");
    for v in vectors {
        let name = v["file"].as_str().expect("file");
        // A fresh strategy per vector: reservoirs are full.
        let rules = LocalRules::from_file(fixture_path(&format!("sampling-rules/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &v["request"];
        let request = SamplingRequest::new()
            .with_host(r["host"].as_str().expect("host"))
            .with_url_path(r["url_path"].as_str().expect("url_path"))
            .with_http_method(r["http_method"].as_str().expect("http_method"));
        let expected = v["sampled"].as_bool().expect("sampled");
        assert_eq!(
            rules.sample(&request).is_sampled(),
            expected,
            "{name} {r}: {}",
            v["why"]
        );
    }
    println!("manifest decision vectors: {}", vectors.len());
    assert!(!vectors.is_empty(), "no decision vectors loaded");
}

/// Each vector's rule is served by a local proxy as the highest-priority
/// rule next to a catch-all `Default`; the decision's rule name tells which
/// one matched.
#[test]
fn rule_match_vectors_through_centralized_sampler() {
    let file = fixture_json("sampling-rule-match-vectors.json");
    let vectors = file["vectors"].as_array().expect("vectors");
    let proxy = ProxyServer::start();
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let mut rule = v["rule"].clone();
        let fields = json!({"RuleName": "vector-rule", "Priority": 1, "ReservoirSize": 1,
                            "FixedRate": 0.0, "Version": 1});
        for (key, value) in fields.as_object().expect("object") {
            rule[key] = value.clone();
        }
        let default = json!({"RuleName": "Default", "Priority": 10000, "ReservoirSize": 1,
            "FixedRate": 0.05, "Host": "*", "HTTPMethod": "*", "URLPath": "*",
            "ServiceName": "*", "ServiceType": "*", "ResourceARN": "*", "Version": 1,
            "Attributes": {}});
        proxy.reply_json(
            "/GetSamplingRules",
            &json!({"SamplingRuleRecords": [{"SamplingRule": default}, {"SamplingRule": rule}]}),
        );
        let sampler = CentralizedSampler::builder()
            .with_proxy_address(proxy.addr)
            .build_manual();
        sampler.poll_once();

        let r = &v["request"];
        let text = |key: &str| r[key].as_str();
        let attributes: Vec<(&str, &str)> = r["attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().expect("string attribute")))
                    .collect()
            })
            .unwrap_or_default();
        let mut request = SamplingRequest::new().with_attributes(&attributes);
        request.host = text("host");
        request.http_method = text("http_method");
        request.url_path = text("url_path");
        request.service_name = text("service_name");
        request.service_type = text("service_type");
        request.resource_arn = text("resource_arn");

        let decided_by = sampler.sample(&request).rule_name().map(str::to_owned);
        let expected = v["expected_match"].as_bool().expect("expected_match");
        let expected_rule = if expected { "vector-rule" } else { "Default" };
        assert_eq!(decided_by.as_deref(), Some(expected_rule), "vector {name}");
    }
    println!("rule match vectors: {}", vectors.len());
    assert!(!vectors.is_empty(), "no rule match vectors loaded");
    let requests = proxy.drain();
    assert_eq!(requests.len(), vectors.len(), "one rules fetch per vector");
}
