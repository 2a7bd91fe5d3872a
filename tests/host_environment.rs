//! What the process environment tells the layer: resource detection read
//! from the real environment and sent over UDP, and Lambda's trace header.
//! Every case runs in a child process of its own (`child`), with the
//! variables a host could set (`AWS_*`, `ECS_*`, `LAMBDA_*`,
//! `_X_AMZN_TRACE_ID`, `KUBERNETES_*`) cleared first, so nothing races the other tests of this binary. Metadata
//! services are tiny HTTP servers on 127.0.0.1; segments go to a real UDP
//! socket on 127.0.0.1 and are checked against the official schema.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing_subscriber::prelude::*;

/// One request a fake metadata service received.
#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake answers: status, body, delay before answering (None = never answer).
struct Answer {
    status: u16,
    body: String,
    delay: Option<Duration>,
}

fn ok(body: &str) -> Answer {
    Answer {
        status: 200,
        body: body.into(),
        delay: Some(Duration::ZERO),
    }
}
fn status(status: u16) -> Answer {
    Answer {
        status,
        body: String::new(),
        delay: Some(Duration::ZERO),
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering with `f`, recording requests.
struct Fake {
    url: String,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(f: impl Fn(&Req) -> Answer + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let f = Arc::new(f);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let reqs = reqs.clone();
                let f = f.clone();
                std::thread::spawn(move || serve(stream, &*f, &reqs));
            }
        });
        Fake { url, requests }
    }
    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, f: &dyn Fn(&Req) -> Answer, reqs: &Mutex<Vec<Req>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let req = Req {
        method,
        path,
        headers,
    };
    reqs.lock().unwrap().push(req.clone());
    let answer = f(&req);
    let Some(delay) = answer.delay else {
        std::thread::sleep(Duration::from_secs(30));
        return;
    };
    std::thread::sleep(delay);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.status,
        answer.body.len(),
        answer.body
    );
}

fn run_child(name: &str, env: &[(&str, &str)]) {
    let (ok, text) = common::run_child(name, env);
    assert!(ok, "{name} failed:\n{text}");
}

/// In a child: a default-detecting layer sending to a UDP daemon; emits one
/// root span every 50 ms until a segment carries `origin` (or 2 s pass), and
/// returns the last segment received.
fn detected_segment() -> Value {
    let daemon = common::Daemon::start();
    let layer = tracing_xray::builder()
        .with_service_name("svc")
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_exporter(tracing_xray::export::UdpExporter::to_address(daemon.addr))
        .build();
    let xray = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let deadline = Instant::now() + Duration::from_secs(2);
    let validator = common::schema();
    let mut n = 0;
    loop {
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("request").in_scope(|| {});
        });
        n += 1;
        xray.flush(Duration::from_secs(2)).unwrap();
        let docs = daemon.documents(n, Duration::from_secs(2));
        let last = docs.last().cloned().unwrap();
        common::assert_schema_valid(&validator, &last);
        if last.get("origin").is_some() || Instant::now() > deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const CONTAINER_V4: &str = r#"{
  "DockerId": "cd189a933e5849daa93386466019ab50-2495160603",
  "Name": "curl",
  "DockerName": "curl",
  "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
  "Labels": {"com.amazonaws.ecs.cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default"},
  "DesiredStatus": "RUNNING",
  "KnownStatus": "RUNNING",
  "Limits": {"CPU": 2},
  "Type": "NORMAL",
  "LogDriver": "awslogs",
  "LogOptions": {"awslogs-create-group": "true", "awslogs-group": "/ecs/containerlogs", "awslogs-region": "us-west-2", "awslogs-stream": "ecs/curl/cd189a933e5849daa93386466019ab50"},
  "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/05966557-f16c-49cb-9352-24b3a0dcd0e1",
  "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.0.108"]}]
}"#;

const IDENTITY: &str = r#"{"accountId":"111122223333","architecture":"x86_64","availabilityZone":"us-west-2c","billingProducts":null,"imageId":"ami-003634241a8fcdec0","instanceId":"i-075ad396f12bc325a","instanceType":"m5.xlarge","pendingTime":"2024-01-15T10:00:00Z","privateIp":"10.0.0.12","region":"us-west-2","version":"2017-09-30"}"#;

/// Answers as the ECS task metadata endpoint (`/v4/task`) and as IMDSv2.
fn metadata_services() -> Fake {
    Fake::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/v4/task") => ok(CONTAINER_V4),
        ("PUT", "/latest/api/token")
            if r.header("X-aws-ec2-metadata-token-ttl-seconds").is_some() =>
        {
            ok("AQAEAtoken")
        }
        ("GET", "/latest/dynamic/instance-identity/document")
            if r.header("X-aws-ec2-metadata-token") == Some("AQAEAtoken") =>
        {
            ok(IDENTITY)
        }
        _ => status(401),
    })
}

/// One notion of "in Lambda": `LAMBDA_TASK_ROOT`, as the layer's Lambda mode
/// (SPEC §3.3, §6; the Go, Python and Node SDKs). With
/// `AWS_LAMBDA_FUNCTION_NAME` alone (a function's code run in a container
/// outside Lambda, emulators) the layer sends segments of its own, and they
/// carry the host's origin and resource block: the Lambda detector used to
/// fire on the name alone and skip every other detector.
#[test]
#[ignore]
fn function_name_child() {
    let services = metadata_services();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe {
        std::env::set_var(
            "ECS_CONTAINER_METADATA_URI_V4",
            format!("{}/v4/task", services.url),
        )
    };
    let segment = detected_segment();
    assert!(
        segment.get("type").is_none(),
        "a segment was sent: not Lambda mode"
    );
    assert_eq!(
        segment["origin"], "AWS::ECS::Container",
        "a segment sent outside Lambda mode should carry the detected origin: {segment}"
    );
}

#[test]
fn a_function_name_without_task_root_still_detects_the_host() {
    run_child(
        "function_name_child",
        &[("AWS_LAMBDA_FUNCTION_NAME", "orders")],
    );
}

/// Detection driven by the real process environment (the unit tests inject
/// a map), its result read off real UDP datagrams: an ECS task on the EC2 launch type, with awslogs,
/// reachable IMDSv2. Both blocks, the ECS origin (more specific), the
/// account from the container ARN, the log group's ARN, schema-valid.
#[test]
#[ignore]
fn ecs_on_ec2_child() {
    let services = metadata_services();
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe {
        std::env::set_var(
            "ECS_CONTAINER_METADATA_URI_V4",
            format!("{}/v4/task", services.url),
        )
    };
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("AWS_EC2_METADATA_SERVICE_ENDPOINT", &services.url) };
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("HOSTNAME", "ip-10-0-0-108.us-west-2.compute.internal") };
    let segment = detected_segment();
    assert_eq!(segment["origin"], "AWS::ECS::Container", "{segment}");
    let aws = &segment["aws"];
    assert_eq!(aws["account_id"], "111122223333");
    assert_eq!(
        aws["ecs"]["container"],
        "ip-10-0-0-108.us-west-2.compute.internal"
    );
    assert_eq!(
        aws["ecs"]["container_arn"],
        "arn:aws:ecs:us-west-2:111122223333:container/05966557-f16c-49cb-9352-24b3a0dcd0e1"
    );
    assert_eq!(
        aws["cloudwatch_logs"],
        serde_json::json!([{
            "log_group": "/ecs/containerlogs",
            "arn": "arn:aws:logs:us-west-2:111122223333:log-group:/ecs/containerlogs"
        }])
    );
    assert_eq!(aws["ec2"]["instance_id"], "i-075ad396f12bc325a");
    assert_eq!(aws["ec2"]["availability_zone"], "us-west-2c");
    assert_eq!(aws["ec2"]["instance_size"], "m5.xlarge");
    assert_eq!(aws["ec2"]["ami_id"], "ami-003634241a8fcdec0");
    assert_eq!(aws["xray"]["sdk"], "tracing-xray");
    // One call to ECS, two to IMDS (token, then the document).
    let calls: Vec<String> = services
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
}

#[test]
fn ecs_on_ec2_from_the_process_environment_reaches_the_daemon() {
    run_child("ecs_on_ec2_child", &[]);
}

/// Every string of `v` longer than 250 characters, with where it is.
fn strings_over_250(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.chars().count() > 250 => {
            out.push(format!("{at}: {} characters", s.chars().count()))
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings_over_250(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                strings_over_250(x, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// SPEC §1.3: strings hold at most 250 characters. The resource blocks were
/// sent as the host gave them: an ECS task whose awslogs group has a long
/// name (CloudWatch allows 512 characters) put it whole into every
/// segment's `aws.cloudwatch_logs`, its `arn` longer still; so was a long
/// host name. Cut at 250 (as a first fix did), the ARN of a 230-character
/// group named another group: what the host names is an identifier, left
/// out when too long, never cut.
#[test]
#[ignore]
fn long_host_strings_child() {
    let group = format!("/ecs/{}", "orders-service-".repeat(15));
    assert_eq!(group.len(), 230);
    let container = CONTAINER_V4.replace("/ecs/containerlogs", &group);
    let services = Fake::start(move |r| match r.path.as_str() {
        "/v4/task" => ok(&container),
        _ => status(404),
    });
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe {
        std::env::set_var(
            "ECS_CONTAINER_METADATA_URI_V4",
            format!("{}/v4/task", services.url),
        )
    };
    // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
    unsafe { std::env::set_var("HOSTNAME", "h".repeat(300)) };
    let segment = detected_segment();
    assert_eq!(segment["origin"], "AWS::ECS::Container", "{segment}");
    let aws = &segment["aws"];
    assert_eq!(
        aws["cloudwatch_logs"],
        serde_json::json!([{ "log_group": group }]),
        "the name whole, its 276-character ARN left out: {segment:#}"
    );
    assert!(aws["ecs"].get("container").is_none(), "{segment:#}");
    assert_eq!(
        aws["ecs"]["container_arn"],
        "arn:aws:ecs:us-west-2:111122223333:container/05966557-f16c-49cb-9352-24b3a0dcd0e1"
    );
    let mut long = Vec::new();
    strings_over_250(aws, "/aws".into(), &mut long);
    assert!(long.is_empty(), "{long:#?}\n{segment:#}");
}

#[test]
fn a_hosts_strings_over_250_characters_are_left_out() {
    run_child("long_host_strings_child", &[]);
}

/// In a Lambda function, a call's outgoing header keeps the invocation's
/// Root, its Sampled decision and Lambda's `Lineage`
/// (SPEC §3.1: "keep and forward"), with Parent = the calling subsegment,
/// both from `_X_AMZN_TRACE_ID` and from `lambda_runtime`'s invocation span.
#[test]
#[ignore]
fn lambda_lineage_child() {
    use tracing_xray::XraySpanExt;
    const ENV: &str = "Root=1-6566f1a3-dddddddddddddddddddddddd;Parent=4444444444444444;Sampled=1;Lineage=a87bd80c:1|68fd508a:5";
    for from_span in [false, true] {
        let exporter = tracing_xray::export::InMemoryExporter::new();
        let layer = tracing_xray::builder()
            .with_detectors(tracing_xray::Detectors::none())
            .with_exporter(exporter.clone())
            .build();
        let xray = layer.handle();
        if from_span {
            // SAFETY: this process reads its environment only through std (which locks) and calls no C code that reads it (addresses are IP literals: no resolver).
            unsafe { std::env::remove_var("_X_AMZN_TRACE_ID") };
        }
        let mut sent = None;
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let invoke = from_span.then(|| {
                tracing::info_span!("Lambda runtime invoke", requestId = "r", xrayTraceId = ENV)
                    .entered()
            });
            tracing::info_span!("handler").in_scope(|| {
                let call = tracing::info_span!("call");
                sent = call.xray_header().map(|h| (h.to_string(), h.parent()));
                drop(call);
            });
            drop(invoke);
        });
        xray.flush(Duration::from_secs(5)).unwrap();
        let (header, parent) = sent.expect("a header");
        let docs = exporter.json_documents();
        assert_eq!(docs.len(), 1, "{docs:?}");
        let call_id = docs[0]["subsegments"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(parent.unwrap().to_string(), call_id);
        assert_eq!(
            header,
            format!(
                "Root=1-6566f1a3-dddddddddddddddddddddddd;Parent={call_id};Sampled=1;Lineage=a87bd80c:1|68fd508a:5"
            )
        );
        assert_eq!(docs[0]["parent_id"], "4444444444444444");
        common::assert_schema_valid(&common::schema(), &docs[0]);
    }
}

#[test]
fn lambda_calls_forward_root_decision_and_lineage() {
    run_child(
        "lambda_lineage_child",
        &[
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            (
                "_X_AMZN_TRACE_ID",
                "Root=1-6566f1a3-dddddddddddddddddddddddd;Parent=4444444444444444;Sampled=1;Lineage=a87bd80c:1|68fd508a:5",
            ),
        ],
    );
}

/// In a child run from an executable named `EXPECTED_NAME`: the segment of
/// a layer given no service name is named after it.
#[test]
#[ignore = "run by its parent from an executable of another name"]
fn executable_name_child() {
    let expected = std::env::var("EXPECTED_NAME").unwrap();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(exe.file_name().unwrap().to_str(), Some(expected.as_str()));
    let segment = one_segment(tracing_xray::builder());
    assert_eq!(segment["name"], expected.as_str());
}

/// One root span under a layer with no resource detection, sampled, kept
/// in memory: the segment.
fn one_segment(builder: tracing_xray::Builder) -> Value {
    let exporter = tracing_xray::export::InMemoryExporter::new();
    let layer = builder
        .with_sampler(tracing_xray::sampling::AlwaysSample)
        .with_detectors(tracing_xray::Detectors::none())
        .with_exporter(exporter.clone())
        .build();
    let xray = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("request").in_scope(|| {});
    });
    xray.flush(Duration::from_secs(5)).unwrap();
    exporter.traces().remove(0)
}

/// Found by a hunt of configuration. README (Configuration): the service's
/// name is `AWS_XRAY_TRACING_NAME`, "else the executable's name";
/// `with_service_name`'s rustdoc: "the executable's file name". Before the
/// fix it was the file's stem: `billing.worker` sent segments named
/// `billing` (one node on the service map with `billing.api`), and a
/// versioned `orders-2.4.1` was renamed `orders-2.4`.
#[test]
fn the_default_service_name_is_the_whole_executable_file_name() {
    let exe = std::env::current_exe().unwrap();
    for name in ["billing.worker", "orders-2.4.1"] {
        // A link beside the test binary (a copy where links fail): Linux
        // names a process's executable by the path it was started from.
        let alias = exe.with_file_name(name);
        let _ = std::fs::remove_file(&alias);
        if std::fs::hard_link(&exe, &alias).is_err() {
            std::fs::copy(&exe, &alias).unwrap();
        }
        let from_child = common::child_command("executable_name_child");
        let mut cmd = std::process::Command::new(&alias);
        cmd.args(from_child.get_args());
        for (k, v) in from_child.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env_remove("AWS_XRAY_TRACING_NAME")
            .env("EXPECTED_NAME", name)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let (ok, text) = common::child_outcome(cmd.spawn().unwrap());
        let _ = std::fs::remove_file(&alias);
        assert!(ok, "{name}:\n{text}");
    }
}

/// In a child: the service's name, printed for the parent.
#[test]
#[ignore = "run by its parent with an environment of its own"]
fn non_unicode_tracing_name_child() {
    let segment = one_segment(tracing_xray::builder().with_service_name("from-code"));
    println!("SEGMENT-NAME={}", segment["name"]);
}

/// Found by a hunt of configuration. README: the environment wins over
/// code; `with_service_name`: characters X-Ray does not allow in a name are
/// removed. Before the fix an `AWS_XRAY_TRACING_NAME` that is not valid
/// UTF-8 (one stray Latin-1 byte from a mis-encoded env file) was taken as
/// unset, without a word: the code's name was used. Now its invalid bytes
/// are left out, and standard error says so.
#[cfg(unix)]
#[test]
fn a_tracing_name_that_is_not_unicode_loses_its_invalid_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = common::child_command("non_unicode_tracing_name_child");
    cmd.env(
        "AWS_XRAY_TRACING_NAME",
        std::ffi::OsStr::from_bytes(b"orders-api\xff"),
    );
    let (ok, text) = common::child_outcome(cmd.spawn().unwrap());
    assert!(ok, "{text}");
    assert!(text.contains("SEGMENT-NAME=\"orders-api\""), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("tracing-xray: AWS_XRAY_TRACING_NAME is not valid Unicode")),
        "{text}"
    );
}
