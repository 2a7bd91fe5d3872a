//! Starts and stops moto (a local fake of the AWS APIs) for the HTTP
//! exporter's tests, with SigV4 signature checking switched on.
//!
//! Which Python runs moto:
//! - `TRACING_XRAY_MOTO_PYTHON`: a python with `moto[server]==5.2.5`
//!   (`scripts/moto-server.sh setup` creates one and prints its path);
//! - else `target/moto-venv/bin/python`, if that script already created it;
//! - else the tests fail, saying how to set it up, unless
//!   `TRACING_XRAY_SKIP_MOTO=1` says to skip them (they then pass, with a
//!   message on standard error).
//!
//! Signature checking: moto checks signatures against its own IAM users once
//! `INITIAL_NO_AUTH_ACTION_COUNT` is finite. Each server starts without it,
//! the helper creates a user with an access key allowed `xray:*`, then
//! switches checking on for every later request (`/moto-api/reset-auth` 0).
//! The random generator is seeded first, so a restarted server hands out the
//! same access key.

#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::Value;

pub const REGION: &str = "us-east-1";
const MOTO_VERSION: &str = "5.2.5";
const SEED: u32 = 20_250_101;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The python to run moto with, or `None` when the tests are to be skipped.
pub fn python() -> Option<PathBuf> {
    if let Some(py) = std::env::var_os("TRACING_XRAY_MOTO_PYTHON").filter(|v| !v.is_empty()) {
        let py = PathBuf::from(py);
        assert!(
            py.exists(),
            "TRACING_XRAY_MOTO_PYTHON={} does not exist; create it with \
             `export TRACING_XRAY_MOTO_PYTHON=\"$(scripts/moto-server.sh setup)\"`",
            py.display()
        );
        return Some(py);
    }
    if std::env::var("TRACING_XRAY_SKIP_MOTO").is_ok_and(|v| v == "1") {
        eprintln!(
            "SKIPPED: TRACING_XRAY_SKIP_MOTO=1, so this test did not run against moto's X-Ray API"
        );
        return None;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    panic!(
        "\n\nThe `http` feature's tests run against moto {MOTO_VERSION} (a local fake of the \
         X-Ray API), which needs Python 3. Set it up once with\n\n    \
         export TRACING_XRAY_MOTO_PYTHON=\"$(scripts/moto-server.sh setup)\"\n\n\
         (it creates target/moto-venv; on Debian/Ubuntu first `apt-get install python3 \
         python3-venv`), or skip these tests explicitly with TRACING_XRAY_SKIP_MOTO=1.\n"
    );
}

/// One moto server process on 127.0.0.1, killed on drop.
pub struct Moto {
    python: PathBuf,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Moto {
    /// Starts a server on a free port, or `None` when moto tests are skipped.
    ///
    /// The port is free when picked, but another test may bind it before
    /// moto does: then moto exits at startup, and a new port is tried.
    pub fn start() -> Option<Moto> {
        let python = python()?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-logs");
        std::fs::create_dir_all(&dir).expect("create target/moto-logs");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let mut moto = Moto {
                python: python.clone(),
                port,
                child: None,
                log: dir.join(format!("moto-{port}.log")),
                access_key_id: String::new(),
                secret_access_key: String::new(),
            };
            match moto.try_launch() {
                Ok(()) => return Some(moto),
                Err(PortTaken) if attempts < 5 => continue,
                Err(PortTaken) => panic!(
                    "moto found its port taken {attempts} times; log:\n{}",
                    moto.log_tail()
                ),
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "moto",
        )
    }

    /// Kills the server (its data goes with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server on the same port, with the same access key.
    pub fn restart(&mut self) {
        self.stop();
        if self.try_launch().is_err() {
            panic!(
                "moto could not bind its port {} again; log:\n{}",
                self.port,
                self.log_tail()
            );
        }
    }

    fn try_launch(&mut self) -> Result<(), PortTaken> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the moto log file");
        let child = Command::new(&self.python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} -m moto.server: {e}; recreate the venv with \
                     scripts/moto-server.sh setup",
                    self.python.display()
                )
            });
        self.child = Some(child);
        self.wait_ready()?;
        self.provision();
        Ok(())
    }

    /// Waits until moto answers on its port. Only moto's own page counts:
    /// another test's server that took the port may answer 200 too.
    fn wait_ready(&mut self) -> Result<(), PortTaken> {
        // A short timeout: a port taken by a listener that never answers
        // must not hold the loop that watches moto exit.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                if self.log_tail().contains("Address already in use") {
                    return Err(PortTaken);
                }
                panic!(
                    "moto exited at startup ({status}); its log ({}):\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            if agent
                .get(format!("{}/moto-api/", self.url()))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|page| page.contains("<title>Moto</title>"))
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within {STARTUP_TIMEOUT:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Seeds moto's ids, creates the IAM user and key (unauthenticated, as
    /// auth is still off), then turns signature checking on.
    fn provision(&mut self) {
        let agent = plain_agent();
        let url = self.url();
        let status = agent
            .post(format!("{url}/moto-api/seed?a={SEED}"))
            .send_empty()
            .expect("seed moto")
            .status();
        assert_eq!(status, 200, "seed moto");
        let setup = Credentials::new("AKIAPROVISIONING000", "unused", None, None, "setup");
        let iam = |params: &str| -> String {
            let body = format!("{params}&Version=2010-05-08");
            let (status, text) = signed_post(
                &agent,
                &format!("{url}/"),
                "iam",
                "application/x-www-form-urlencoded",
                body.into_bytes(),
                &setup,
            );
            assert_eq!(status, 200, "IAM {params}: {text}");
            text
        };
        iam("Action=CreateUser&UserName=xray-tester");
        let key = iam("Action=CreateAccessKey&UserName=xray-tester");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"xray:*","Resource":"*"}]}"#;
        iam(&format!(
            "Action=PutUserPolicy&UserName=xray-tester&PolicyName=xray-all&PolicyDocument={}",
            form_encode(policy)
        ));
        self.access_key_id = xml_tag(&key, "AccessKeyId");
        self.secret_access_key = xml_tag(&key, "SecretAccessKey");
        let answer = agent
            .post(format!("{url}/moto-api/reset-auth"))
            .header("content-type", "text/plain")
            .send("0")
            .expect("switch moto's signature checking on");
        assert_eq!(answer.status(), 200, "reset-auth");
    }

    /// `BatchGetTraces`, signed: trace id → (segment id → document).
    pub fn batch_get_traces(&self, trace_ids: &[String]) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for chunk in trace_ids.chunks(100) {
            let body = serde_json::json!({ "TraceIds": chunk }).to_string();
            let v = self.call("/Traces", body);
            for t in v["Traces"].as_array().expect("Traces") {
                let docs = t["Segments"]
                    .as_array()
                    .expect("Segments")
                    .iter()
                    .map(|s| s["Document"].as_str().expect("Document").to_owned())
                    .collect();
                out.push((t["Id"].as_str().unwrap_or_default().to_owned(), docs));
            }
        }
        out
    }

    /// `GetTraceSummaries` over the last hour, signed: the trace ids.
    pub fn trace_summary_ids(&self) -> Vec<String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body =
            serde_json::json!({ "StartTime": now - 3600, "EndTime": now + 3600 }).to_string();
        let v = self.call("/TraceSummaries", body);
        v["TraceSummaries"]
            .as_array()
            .expect("TraceSummaries")
            .iter()
            .map(|s| s["Id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn call(&self, path: &str, body: String) -> Value {
        let (status, text) = signed_post(
            &plain_agent(),
            &format!("{}{path}", self.url()),
            "xray",
            "application/json",
            body.into_bytes(),
            &self.credentials(),
        );
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).expect("JSON answer")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// moto exited at startup because its port was taken.
struct PortTaken;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A SigV4-signed POST (written against aws-sigv4 directly, independently
/// of the exporter's own signing code).
pub fn signed_post(
    agent: &ureq::Agent,
    url: &str,
    service: &str,
    content_type: &str,
    body: Vec<u8>,
    credentials: &Credentials,
) -> (u16, String) {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let mut request = ureq::http::Request::post(url)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let signable = SignableRequest::new(
        "POST",
        url,
        [("content-type", content_type)].into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut request);
    let mut response = agent.run(request).expect("moto answers");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_tag(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {text}"))
        + open.len();
    let end = text[start..]
        .find(&format!("</{tag}>"))
        .expect("closing tag")
        + start;
    text[start..end].to_owned()
}
