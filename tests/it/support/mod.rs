//! Test support: `TestApp` (the real router in-process, on a temporary database, with a manual
//! clock and seeded entropy), a driver for the real `sesame` binary, and a TCP relay that can cut
//! a database off.

pub mod authenticator;
pub mod binary;
pub mod browser;
#[cfg(sesame_postgres_tests)]
pub mod relay;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use sesame::app::App;
use sesame::clock::ManualClock;
use sesame::config::{CliOverrides, Config};
use sesame::entropy::SeededEntropy;
use tower::ServiceExt as _;

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    #[allow(dead_code)]
    Postgres,
}

/// Environment for a configuration rooted in `dir`, on `backend`.
pub fn test_env(dir: &Path, backend: Backend) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "SESAME_DATA_DIR".into(),
        dir.join("data").display().to_string(),
    );
    env.insert(
        "SESAME_KEYS__DIR".into(),
        dir.join("keys").display().to_string(),
    );
    env.insert("SESAME_LOG__LEVEL".into(), "warn".into());
    if backend == Backend::Postgres {
        env.insert("SESAME_DATABASE__URL".into(), postgres_url());
        env.insert("SESAME_DATABASE__SCHEMA".into(), unique_schema());
        env.insert("SESAME_DATABASE__MAX_CONNECTIONS".into(), "4".into());
    }
    env
}

pub fn postgres_url() -> String {
    std::env::var("SESAME_TEST_POSTGRES_URL")
        .expect("SESAME_TEST_POSTGRES_URL was set when the tests were built; set it to run them")
}

/// A schema name no other test uses.
pub fn unique_schema() -> String {
    use sesame::entropy::{EntropyExt as _, OsEntropy};
    format!("it_{}", OsEntropy.hex(8))
}

/// An HR export with one active staff member, and the same person having left.
pub const STAFF_ACTIVE: &str = "employee_id,last_name,first_name,birth_date,department,role,status\n\
P100002,Girard,Paul,1980-02-03,DSI,technique,active\n";
pub const STAFF_LEFT: &str = "employee_id,last_name,first_name,birth_date,department,role,status\n\
P100002,Girard,Paul,1980-02-03,DSI,technique,left\n";

/// The real application in-process.
pub struct TestApp {
    pub app: App,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts with extra environment overrides (`SESAME_…` = value).
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = test_env(dir.path(), backend);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Self::start_in(dir, env, false).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        env: BTreeMap<String, String>,
        demo: bool,
    ) -> Self {
        let config = Config::load(None, &env, &CliOverrides::default()).unwrap();
        let clock = Arc::new(ManualClock::at_rentree());
        let app = App::start_with(config, clock.clone(), Arc::new(SeededEntropy::new(42)))
            .await
            .unwrap();
        let router = app.router(demo);
        Self {
            app,
            router,
            clock,
            _dir: dir,
            env,
        }
    }

    /// The helpdesk service, as `sesame admin` uses it.
    pub fn helpdesk(&self) -> sesame::accounts::helpdesk::Helpdesk {
        self.app.helpdesk()
    }

    /// Another node on the same database and keys (or this node after a restart), sharing the
    /// clock, with its own random generator.
    pub async fn second_node(&self) -> TestApp {
        self.second_node_with(&[]).await
    }

    /// [`TestApp::second_node`] with extra configuration.
    pub async fn second_node_with(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut env = self.env.clone();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let config = Config::load(None, &env, &CliOverrides::default()).unwrap();
        let app = App::start_with(config, self.clock.clone(), Arc::new(SeededEntropy::new(43)))
            .await
            .unwrap();
        let router = app.router(false);
        TestApp {
            app,
            router,
            clock: self.clock.clone(),
            _dir: tempfile::tempdir().unwrap(),
            env,
        }
    }

    /// The `Host` the public URL expects.
    pub fn host(&self) -> String {
        let url = self.app.config.public_url();
        match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_string(),
        }
    }

    pub fn master_key_file(&self) -> PathBuf {
        self.app.config.master_key_file().to_path_buf()
    }

    /// Sends a request built by `build` (the Host header is filled in unless set), from
    /// 127.0.0.1 unless `peer` says otherwise.
    pub async fn send(&self, request: Request<Body>, peer: Option<SocketAddr>) -> TestResponse {
        let mut request = request;
        if !request.headers().contains_key("host") {
            let host = self.host();
            request.headers_mut().insert("host", host.parse().unwrap());
        }
        let peer = peer.unwrap_or_else(|| "127.0.0.1:40000".parse().unwrap());
        let response = self
            .router
            .clone()
            .layer(MockConnectInfo(peer))
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 10 * 1024 * 1024)
            .await
            .unwrap();
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Imports a registrar export through the real importer.
    pub async fn import_students(
        &self,
        csv: &str,
        dry_run: bool,
    ) -> sesame::accounts::provisioning::ImportSummary {
        use sesame::clock::Clock as _;
        let (rows, rejected) =
            sesame::accounts::provisioning::parse_students(csv.as_bytes(), self.clock.now().date())
                .unwrap();
        self.importer()
            .import_students(&rows, rejected, dry_run)
            .await
            .unwrap()
    }

    /// Imports an HR export through the real importer.
    pub async fn import_staff(&self, csv: &str) -> sesame::accounts::provisioning::ImportSummary {
        use sesame::clock::Clock as _;
        let (rows, rejected) =
            sesame::accounts::provisioning::parse_staff(csv.as_bytes(), self.clock.now().date())
                .unwrap();
        self.importer()
            .import_staff(&rows, rejected, false)
            .await
            .unwrap()
    }

    /// Activates an imported account through the real activation service (`start` is the
    /// dossier pair or the staff code step), with `email` as recovery address and `password`.
    async fn finish_activation(
        &self,
        start: sesame::accounts::activation::Start,
        email: &str,
        password: &str,
    ) {
        use sesame::accounts::activation::{Completion, Start};
        let Start::Started(token) = start else {
            panic!("activation did not start")
        };
        let activation = &self.app.activation;
        activation
            .submit_contact(&token, email, "0612345678")
            .await
            .unwrap()
            .unwrap();
        let mail = self.take_mails().await.pop().expect("a confirmation code");
        let code: String = mail
            .mail
            .text
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .unwrap()
            .to_string();
        activation.confirm_code(&token, &code).await.unwrap();
        assert!(matches!(
            activation
                .complete(&token, password, password)
                .await
                .unwrap(),
            Completion::Activated { .. }
        ));
        // Whatever activation queued is not the caller's concern.
        self.take_mails().await;
    }

    /// Imports `Émilie Dupré` (dossier 22000001, born 2004-05-06) and activates her as
    /// `emilie.dupre` with the recovery address `emilie@example.org` and `password`.
    pub async fn active_student(&self, password: &str) {
        let csv = "dossier_number,last_name,first_name,birth_date,component,enrolment_year\n\
22000001,Dupré,Émilie,2004-05-06,IAE,2026\n";
        self.import_students(csv, false).await;
        let start = self
            .app
            .activation
            .start_with_dossier("22000001", "2004-05-06", sesame::locale::Locale::Fr)
            .await
            .unwrap();
        self.finish_activation(start, "emilie@example.org", password)
            .await;
    }

    /// Imports the staff member `Paul Girard` (employee P100002) and activates him as
    /// `paul.girard` with `password`.
    pub async fn active_staff(&self, password: &str) {
        self.import_staff(STAFF_ACTIVE).await;
        let (_, code) = self
            .app
            .activation
            .issue_staff_code("paul.girard", sesame::audit::Actor::Operator("test".into()))
            .await
            .unwrap()
            .expect("a pending staff account");
        let start = self
            .app
            .activation
            .start_with_staff_code(code.expose(), sesame::locale::Locale::Fr)
            .await
            .unwrap();
        self.finish_activation(start, "paul@example.org", password)
            .await;
    }

    fn importer(&self) -> sesame::accounts::provisioning::Importer {
        sesame::accounts::provisioning::Importer::new(
            self.app.store.clone(),
            self.app.clock.clone(),
            self.app.entropy.clone(),
        )
    }

    /// The captured outbox: takes every mail queued since the last call.
    pub async fn take_mails(&self) -> Vec<sesame::mail::QueuedMail> {
        use sesame::clock::Clock as _;
        let now = self.clock.unix_now();
        let mails = self
            .app
            .store
            .claim_due_mails(now, now + 60, 1000)
            .await
            .unwrap();
        // Taken means delivered: they must not come back when the manual clock moves on.
        for mail in &mails {
            self.app.store.mark_mail_sent(mail.id, now).await.unwrap();
        }
        mails
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(
            Request::builder().uri(path).body(Body::empty()).unwrap(),
            None,
        )
        .await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder = Request::builder().method(Method::GET).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Body::empty()).unwrap(), None).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Generates one test per backend for each named scenario `async fn NAME(backend: Backend)`:
/// SQLite always, PostgreSQL when the suite was built with `SESAME_TEST_POSTGRES_URL`.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::Backend::Sqlite).await;
                }
            )*
        }

        #[cfg(sesame_postgres_tests)]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}
