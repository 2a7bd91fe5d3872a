//! Where the exporter's AWS credentials come from, and the cache that
//! refreshes them before they expire.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// Credentials are refreshed this long before they expire.
pub(crate) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How long one call to a credentials provider may take.
pub(crate) const PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an early refresh (the cached credentials still valid) may take:
/// the request they sign must not wait for a provider that hangs.
const EARLY_REFRESH_TIMEOUT: Duration = Duration::from_secs(2);
/// After an early refresh failed, the cached credentials are used without
/// asking again for this long.
const EARLY_REFRESH_RETRY: Duration = Duration::from_secs(30);
/// Cached credentials closer than this to their expiry are not used while
/// the provider fails: a request signed with them could arrive after it.
const MIN_VALIDITY: Duration = Duration::from_secs(10);

/// Where credentials come from. Never prints a secret.
#[derive(Clone)]
pub(crate) enum Source {
    /// Fixed keys (given in code, or read from the environment at build time).
    Static {
        credentials: Credentials,
        from_env: bool,
    },
    /// A provider, asked again before its credentials expire.
    Provider(SharedCredentialsProvider),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Static { from_env: true, .. } => f.write_str("Environment"),
            Source::Static { .. } => f.write_str("Static"),
            Source::Provider(_) => f.write_str("Provider"),
        }
    }
}

impl Source {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
    /// trimmed (a CRLF env file or a secret file leaves line ends; empty
    /// values count as unset), or `None`.
    pub(crate) fn from_env() -> Option<Source> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let id = var("AWS_ACCESS_KEY_ID")?;
        let secret = var("AWS_SECRET_ACCESS_KEY")?;
        let token = var("AWS_SESSION_TOKEN");
        Some(Source::Static {
            credentials: Credentials::new(id, secret, token, None, "Environment"),
            from_env: true,
        })
    }
}

/// Why no credentials could be had.
#[derive(Debug)]
pub(crate) enum CredentialsFailure {
    /// The provider has none, or is misconfigured: sending is pointless
    /// until that changes (treated like an authentication failure).
    Permanent(String),
    /// The provider timed out or failed in a way that may pass (retried with
    /// backoff).
    Transient(String),
}

/// The credentials in use, refreshed from the source when they come within
/// [`REFRESH_BEFORE_EXPIRY`] of their expiry.
pub(crate) struct Cache {
    source: Source,
    current: Option<Credentials>,
    /// Until then, after an early refresh failed, the cached credentials
    /// (still valid) are used without asking the provider.
    early_refresh_after: Option<Instant>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("cached", &self.current.is_some())
            .finish()
    }
}

impl Cache {
    pub(crate) fn new(source: Source) -> Self {
        let current = match &source {
            Source::Static { credentials, .. } => Some(credentials.clone()),
            Source::Provider(_) => None,
        };
        Cache {
            source,
            current,
            early_refresh_after: None,
        }
    }

    /// Whether asking the source again can give different credentials.
    pub(crate) fn is_refreshable(&self) -> bool {
        matches!(self.source, Source::Provider(_))
    }

    /// Credentials valid now (and for a while), asking the provider when the
    /// cached ones are missing or about to expire. If the refresh fails but
    /// the cached ones have not expired yet, they are used. While they are
    /// valid (for [`MIN_VALIDITY`] at least), the refresh is given at most
    /// half of `timeout` (and [`EARLY_REFRESH_TIMEOUT`]), so that the request
    /// they sign still has time, and after it failed the provider is not
    /// asked again for [`EARLY_REFRESH_RETRY`] (but after a refusal, with
    /// the same bound: see [`Cache::force_refresh`]).
    pub(crate) fn get(&mut self, timeout: Duration) -> Result<Credentials, CredentialsFailure> {
        let now = SystemTime::now();
        let mut still_valid = None;
        if let Some(c) = &self.current {
            match c.expiry() {
                None => return Ok(c.clone()),
                Some(exp) if exp > now + REFRESH_BEFORE_EXPIRY => return Ok(c.clone()),
                Some(exp) if exp > now + MIN_VALIDITY => still_valid = Some(c.clone()),
                _ => {}
            }
        }
        let Some(cached) = still_valid else {
            return self.refresh(timeout);
        };
        if self.early_refresh_after.is_some_and(|t| Instant::now() < t) {
            return Ok(cached);
        }
        match self.refresh((timeout / 2).min(EARLY_REFRESH_TIMEOUT)) {
            Ok(c) => {
                self.early_refresh_after = None;
                Ok(c)
            }
            Err(e) => {
                self.early_refresh_after = Some(crate::handle::deadline_after(
                    Instant::now(),
                    EARLY_REFRESH_RETRY,
                ));
                // The clock read again: the refresh took time.
                match cached.expiry() {
                    Some(exp) if exp > SystemTime::now() + MIN_VALIDITY => Ok(cached),
                    _ => Err(e),
                }
            }
        }
    }

    /// Asks the source for fresh credentials (after the server refused the
    /// cached ones). Returns whether they differ from the ones in use. While
    /// a failed early refresh keeps the provider from being asked, it is
    /// asked with the early refresh's bound (it failed or hung moments ago:
    /// waiting on it for long again would hold the worker).
    pub(crate) fn force_refresh(&mut self, timeout: Duration) -> bool {
        if !self.is_refreshable() {
            return false;
        }
        let timeout = if self.early_refresh_after.is_some_and(|t| Instant::now() < t) {
            (timeout / 2).min(EARLY_REFRESH_TIMEOUT)
        } else {
            timeout
        };
        let old = self.current.take();
        match self.refresh(timeout) {
            Ok(new) => old.is_none_or(|old| !same_keys(&old, &new)),
            Err(_) => {
                self.current = old;
                false
            }
        }
    }

    fn refresh(&mut self, timeout: Duration) -> Result<Credentials, CredentialsFailure> {
        let Source::Provider(provider) = &self.source else {
            return self
                .current
                .clone()
                .ok_or_else(|| CredentialsFailure::Permanent("no credentials".into()));
        };
        let timeout = timeout.min(PROVIDER_TIMEOUT);
        match block_on(provider.provide_credentials(), timeout) {
            Some(Ok(c)) => {
                self.current = Some(c.clone());
                Ok(c)
            }
            Some(Err(e)) => Err(classify(&e)),
            None => Err(match provider.fallback_on_interrupt() {
                Some(c) => {
                    self.current = Some(c.clone());
                    return Ok(c);
                }
                None => CredentialsFailure::Transient(format!(
                    "the credentials provider did not answer within {timeout:?}"
                )),
            }),
        }
    }

    /// The secret parts of the credentials in use, to scrub them from any
    /// text that came back from the server.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.current {
            out.push(c.secret_access_key().to_owned());
            if let Some(t) = c.session_token() {
                out.push(t.to_owned());
            }
        }
        if let Source::Static { credentials, .. } = &self.source {
            out.push(credentials.secret_access_key().to_owned());
            if let Some(t) = credentials.session_token() {
                out.push(t.to_owned());
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

fn same_keys(a: &Credentials, b: &Credentials) -> bool {
    a.access_key_id() == b.access_key_id()
        && a.secret_access_key() == b.secret_access_key()
        && a.session_token() == b.session_token()
}

fn classify(e: &CredentialsError) -> CredentialsFailure {
    // The error's Display never includes the credentials themselves.
    let text = format!("credentials provider: {e}");
    match e {
        CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_) => {
            CredentialsFailure::Permanent(text)
        }
        _ => CredentialsFailure::Transient(text),
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives a future to completion on the current thread, parking between
/// polls; `None` when `timeout` passes first. Enough for credentials
/// providers, which do not need a runtime of their own, and for providers
/// that hand their work to one (see the `HttpExporterBuilder` docs).
pub(crate) fn block_on<F: Future>(future: F, timeout: Duration) -> Option<F::Output> {
    let deadline = crate::handle::deadline_after(Instant::now(), timeout);
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    fn counting(lifetime: Duration) -> (Cache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            calls: calls.clone(),
            lifetime,
        };
        (
            Cache::new(Source::Provider(SharedCredentialsProvider::new(provider))),
            calls,
        )
    }

    #[test]
    fn long_lived_credentials_are_cached() {
        let (mut cache, calls) = counting(Duration::from_secs(3600));
        let a = cache.get(Duration::from_secs(1)).unwrap();
        let b = cache.get(Duration::from_secs(1)).unwrap();
        assert_eq!(a.access_key_id(), b.access_key_id());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn credentials_close_to_expiry_are_refreshed() {
        let (mut cache, calls) = counting(Duration::from_secs(60));
        assert_eq!(
            cache.get(Duration::from_secs(1)).unwrap().access_key_id(),
            "AKID0"
        );
        assert_eq!(
            cache.get(Duration::from_secs(1)).unwrap().access_key_id(),
            "AKID1"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn force_refresh_reports_new_keys() {
        let (mut cache, _) = counting(Duration::from_secs(3600));
        cache.get(Duration::from_secs(1)).unwrap();
        assert!(cache.force_refresh(Duration::from_secs(1)));
        let static_cache = &mut Cache::new(Source::Static {
            credentials: Credentials::new("A", "B", None, None, "test"),
            from_env: false,
        });
        assert!(!static_cache.force_refresh(Duration::from_secs(1)));
    }

    #[derive(Debug)]
    struct Never;

    impl ProvideCredentials for Never {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(std::future::pending())
        }
    }

    #[test]
    fn a_provider_that_never_answers_times_out() {
        let mut cache = Cache::new(Source::Provider(SharedCredentialsProvider::new(Never)));
        let started = Instant::now();
        let err = cache.get(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, CredentialsFailure::Transient(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Gives credentials valid for `lifetime` at its first call, then hangs.
    #[derive(Debug)]
    struct HangsAfterFirst {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for HangsAfterFirst {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return future::ProvideCredentials::new(std::future::pending());
            }
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKID",
                "secret",
                None,
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    #[test]
    fn an_early_refresh_that_hangs_costs_a_bounded_wait_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = HangsAfterFirst {
            calls: calls.clone(),
            lifetime: Duration::from_secs(60),
        };
        let mut cache = Cache::new(Source::Provider(SharedCredentialsProvider::new(provider)));
        cache.get(Duration::from_secs(10)).unwrap();
        // Still valid for a minute: the refresh gets half of 2 s, and the
        // cached credentials are used.
        let started = Instant::now();
        assert_eq!(
            cache.get(Duration::from_secs(2)).unwrap().access_key_id(),
            "AKID"
        );
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert!(waited < Duration::from_millis(1900), "{waited:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Not asked again for a while: no wait at all.
        let started = Instant::now();
        cache.get(Duration::from_secs(10)).unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_provider_without_credentials_is_a_permanent_failure() {
        #[derive(Debug)]
        struct Empty;
        impl ProvideCredentials for Empty {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(CredentialsError::not_loaded_no_source()))
            }
        }
        let mut cache = Cache::new(Source::Provider(SharedCredentialsProvider::new(Empty)));
        let err = cache.get(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, CredentialsFailure::Permanent(_)), "{err:?}");
    }

    #[test]
    fn block_on_wakes_from_another_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        struct Later(
            std::sync::mpsc::Receiver<()>,
            Option<std::sync::mpsc::Sender<Waker>>,
        );
        let (wtx, wrx) = std::sync::mpsc::channel::<Waker>();
        std::thread::spawn(move || {
            let w = wrx.recv().unwrap();
            tx.send(()).unwrap();
            w.wake();
        });
        impl Future for Later {
            type Output = u8;
            fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
                if self.0.try_recv().is_ok() {
                    return Poll::Ready(7);
                }
                if let Some(s) = self.1.take() {
                    s.send(cx.waker().clone()).unwrap();
                }
                Poll::Pending
            }
        }
        assert_eq!(
            block_on(Later(rx, Some(wtx)), Duration::from_secs(5)),
            Some(7)
        );
    }
}
