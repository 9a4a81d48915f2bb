//! `sesame-bench`: measures Sésame against this machine's own ceilings, measured in the same run
//! (issue 8; DESIGN.md §11). It builds nothing: it starts the given `sesame` binary (`sesame
//! demo`, a fresh data directory, SQLite) and a floor server (this binary, `floor` subcommand: a
//! minimal axum + sqlx endpoint on the same SQLite settings), and drives stateful flows with its
//! own load driver (keep-alive, cookies, CSRF, many virtual users, hdrhistogram percentiles).
//! Baselines and Sésame alternate three times; medians are reported, as ratios.
//!
//! Today: password logins vs raw Argon2id; `/healthz` during a login storm; RSS idle and in the
//! storm; CAS `serviceValidate` alone (a pool of tickets) and the SSO-hit CAS flow vs the
//! SELECT+INSERT floor; OIDC authorize with SSO (filling the pools of codes) and code→token
//! (RS256 and ES256, over those pools) vs the floor and vs raw RSA-2048 / P-256 signatures/s;
//! refresh (ES256 and RS256) vs the floor, RS256 also vs raw RSA signatures; userinfo and introspection vs the SELECT floor; discovery and JWKS vs
//! the static floor; 100,000 live SSO sessions (database bytes per session, RSS; seeded in bulk,
//! on SQLite or PostgreSQL); start-up time.
//!
//! Usage: cargo run --release --bin sesame-bench -- [--quick] [--sesame target/release/sesame]
//!        [--json bench-results.json] [--sessions N] [--postgres URL]
//!        [--only login,activation,cas,oidc,documents,sessions] [--login-only SECONDS]

mod activation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use sesame::clock::Stopwatch;
use sesame::entropy::{EntropyExt as _, OsEntropy};
use tokio::sync::Mutex;

const USER: &str = "ana.menard";
const PASSWORD: &str = activation::PASSWORD;
const RS_CLIENT: &str = "bench-rs256";
const ES_CLIENT: &str = "bench-es256";
const OIDC_CALLBACK: &str = "http://127.0.0.1:9/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    /// Live SSO sessions to seed at the end (default: 100,000; 10,000 with --quick).
    sessions: Option<u64>,
    /// Run Sésame and the floor on this PostgreSQL (each in a fresh schema) instead of SQLite.
    postgres: Option<String>,
    sesame: PathBuf,
    json: PathBuf,
    /// `shared/tools/gen_people.py`, which makes the students to import and activate.
    people: PathBuf,
    /// Only the login storm, this many seconds between two Argon2 baselines (for profiling the
    /// server with `perf` meanwhile: the server's PID is printed first).
    login_only: Option<u64>,
    /// Only these groups of flows (`--only login,activation,cas,oidc,documents,sessions`; the
    /// floors always run): for profiling one flow without the full run. Empty: every flow.
    only: Vec<String>,
}

impl Options {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

fn options() -> Options {
    let mut o = Options {
        quick: false,
        sessions: None,
        postgres: None,
        sesame: PathBuf::from("target/release/sesame"),
        json: PathBuf::from("bench-results.json"),
        people: PathBuf::from("../shared/tools/gen_people.py"),
        login_only: None,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--postgres" => o.postgres = Some(args.next().expect("--postgres URL")),
            "--sessions" => {
                o.sessions = Some(
                    args.next()
                        .expect("--sessions N")
                        .parse()
                        .expect("a number"),
                )
            }
            "--sesame" => o.sesame = args.next().expect("--sesame PATH").into(),
            "--json" => o.json = args.next().expect("--json PATH").into(),
            "--people" => o.people = args.next().expect("--people PATH").into(),
            "--login-only" => {
                o.login_only = Some(
                    args.next()
                        .expect("--login-only SECONDS")
                        .parse()
                        .expect("a number"),
                )
            }
            "--only" => {
                o.only = args
                    .next()
                    .expect("--only login,activation,cas,oidc,documents,sessions")
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Whether the database runs in processes of its own (PostgreSQL), whose CPU each flow then
/// also reports.
static DATABASE_PROCESSES: AtomicBool = AtomicBool::new(false);

/// utime + stime of every `postgres` process (the server's backends), in clock ticks: the
/// database's share of a flow. Other PostgreSQL clients of the machine count too; on a quiet
/// machine there are none.
fn database_ticks() -> u64 {
    if !DATABASE_PROCESSES.load(Ordering::Relaxed) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .map(cpu_ticks)
        .sum()
}

/// Per kind of thread of process `pid` (its name as the kernel keeps it, 15 bytes, without the
/// trailing index and dashes: `argon`, `tokio-rt-worker`, `sqlx-sqlite-wor`…): nanoseconds run,
/// nanoseconds waited on a run queue and time slices, from `/proc/PID/task/*/schedstat`. `--login-only` reports where a
/// login's time goes with it.
fn thread_kinds(pid: u32) -> std::collections::BTreeMap<String, [u64; 3]> {
    let mut kinds = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return kinds;
    };
    for task in tasks.filter_map(Result::ok) {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let kind = comm
            .trim_end()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let values: Vec<u64> = stat
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let entry = kinds.entry(kind).or_insert([0u64; 3]);
        for (sum, value) in entry.iter_mut().zip(values) {
            *sum += value;
        }
    }
    kinds
}

/// The machine's CPU ticks since boot from `/proc/stat`: (user + nice, system, idle + iowait,
/// irq + softirq, steal).
fn machine_ticks() -> [u64; 5] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    [at(0) + at(1), at(2), at(3) + at(4), at(5) + at(6), at(7)]
}

/// Resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What a measured flow gives.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Measure {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    cpu_us_per_request: f64,
    /// PostgreSQL's processes, per request (0 on SQLite, which runs inside the server).
    database_cpu_us_per_request: f64,
}

fn measure(
    hist: &Histogram<u64>,
    count: u64,
    errors: u64,
    seconds: f64,
    cpu_ticks: u64,
    database_ticks: u64,
) -> Measure {
    let ticks_per_second = 100.0;
    let per_request = |ticks: u64| {
        if count == 0 {
            0.0
        } else {
            ticks as f64 / ticks_per_second * 1e6 / count as f64
        }
    };
    Measure {
        per_second: count as f64 / seconds,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: hist.max() as f64 / 1000.0,
        errors,
        cpu_us_per_request: per_request(cpu_ticks),
        database_cpu_us_per_request: per_request(database_ticks),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(sesame::mail::sms::tls_config().expect("a TLS configuration"))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap()
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
                .filter(|(n, _)| *n == name)
                .map(|(_, value)| value.to_string())
        })
}

/// A browser of the load driver: its CSRF and session cookies, and the students it signs in as,
/// in turn.
struct VirtualUser {
    http: reqwest::Client,
    base: String,
    csrf: String,
    session: Option<String>,
    accounts: Vec<String>,
    turn: usize,
}

impl VirtualUser {
    fn cookies(&self) -> String {
        let mut c = format!("sesame-csrf={}", self.csrf);
        if let Some(s) = &self.session {
            c.push_str(&format!("; sesame={s}"));
        }
        c
    }

    async fn new(http: reqwest::Client, base: &str, accounts: Vec<String>) -> Self {
        assert!(!accounts.is_empty(), "a virtual user needs an account");
        let page = http.get(format!("{base}/login")).send().await.unwrap();
        let csrf = cookie_of(&page, "sesame-csrf").unwrap_or_default();
        VirtualUser {
            http,
            base: base.to_string(),
            csrf,
            session: None,
            accounts,
            turn: 0,
        }
    }

    /// GET the form as a browser without a session does (a session would make `/login` show
    /// "signed in" instead), then POST it as the next of this user's students; the POST's
    /// latency and whether it signed in. A GET that does not show the form is a failure.
    async fn login(&mut self) -> (Duration, bool) {
        let login = self.accounts[self.turn % self.accounts.len()].clone();
        self.turn += 1;
        let watch = Stopwatch::start();
        let form = self
            .http
            .get(format!("{}/login", self.base))
            .header("cookie", format!("sesame-csrf={}", self.csrf))
            .send()
            .await;
        let shown = match form {
            Ok(r) if r.status() == reqwest::StatusCode::OK => r
                .text()
                .await
                .is_ok_and(|page| page.contains("name=\"password\"")),
            _ => false,
        };
        if !shown {
            return (watch.elapsed(), false);
        }
        let watch = Stopwatch::start();
        let response = self
            .http
            .post(format!("{}/login", self.base))
            .header("cookie", format!("sesame-csrf={}", self.csrf))
            .form(&[
                ("username", login.as_str()),
                ("password", activation::PASSWORD),
                ("csrf", self.csrf.as_str()),
            ])
            .send()
            .await;
        let elapsed = watch.elapsed();
        match response {
            Ok(r) if r.status() == reqwest::StatusCode::SEE_OTHER => {
                self.session = cookie_of(&r, "sesame");
                (elapsed, true)
            }
            _ => (elapsed, false),
        }
    }

    /// `/cas/login` with the session: the ticket.
    async fn cas_ticket(&self, service: &str) -> Option<String> {
        let r = self
            .http
            .get(format!("{}/cas/login", self.base))
            .query(&[("service", service)])
            .header("cookie", self.cookies())
            .send()
            .await
            .ok()?;
        let location = r.headers().get("location")?.to_str().ok()?.to_string();
        location.split("ticket=").nth(1).map(str::to_string)
    }
}

impl VirtualUser {
    /// `/oidc/authorize` with the session (SSO): the code.
    async fn oidc_code(&self, client: &str) -> Option<String> {
        let r = self
            .http
            .get(format!("{}/oidc/authorize", self.base))
            .query(&[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", OIDC_CALLBACK),
                ("scope", "openid profile email"),
                ("state", "bench"),
                ("nonce", "bench"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ])
            .header("cookie", self.cookies())
            .send()
            .await
            .ok()?;
        let location = r.headers().get("location")?.to_str().ok()?.to_string();
        location
            .split("code=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .map(str::to_string)
    }
}

/// A token-endpoint request with client_secret_basic: how long it took, and the JSON answer if
/// it was a success.
async fn token_request(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (Duration, Option<serde_json::Value>) {
    let watch = Stopwatch::start();
    let answer = async {
        let r = http
            .post(format!("{base}/oidc/token"))
            .basic_auth(client, Some(secret))
            .form(form)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        serde_json::from_slice(&r.bytes().await.ok()?).ok()
    }
    .await;
    (watch.elapsed(), answer)
}

/// One timed GET; success when the status is 2xx.
async fn timed_get(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> (Duration, bool) {
    let watch = Stopwatch::start();
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let ok = match request.send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    };
    (watch.elapsed(), ok)
}

/// Validates a ticket; `true` only for an `authenticationSuccess`.
async fn validate(http: &reqwest::Client, base: &str, service: &str, ticket: &str) -> bool {
    match http
        .get(format!("{base}/cas/p3/serviceValidate"))
        .query(&[("service", service), ("ticket", ticket)])
        .send()
        .await
    {
        Ok(r) => r
            .text()
            .await
            .is_ok_and(|body| body.contains("<cas:authenticationSuccess>")),
        Err(_) => false,
    }
}

/// The rate of a request that does the work of two ceilings one after the other on the same
/// cores (`a` and `b` per second each): 1 ÷ (1/a + 1/b).
fn in_series(a: f64, b: f64) -> f64 {
    if a <= 0.0 || b <= 0.0 {
        return 0.0;
    }
    1.0 / (1.0 / a + 1.0 / b)
}

/// Runs `workers` copies of `step` for `duration`; each step returns (latency, ok).
async fn drive<F, Fut>(workers: usize, duration: Duration, pid: Option<u32>, step: F) -> Measure
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Option<(Duration, bool)>> + Send,
{
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = pid.map(cpu_ticks).unwrap_or(0);
    let database_before = database_ticks();
    let watch = Stopwatch::start();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (hist, count, errors, stop, step) = (
            hist.clone(),
            count.clone(),
            errors.clone(),
            stop.clone(),
            step.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match step(w).await {
                    Some((latency, true)) => {
                        let _ = local.record(latency.as_micros() as u64);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Some((_, false)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    None => break,
                }
            }
            hist.lock().await.add(&local).unwrap();
        }));
    }
    // Stops after `duration`, or earlier when every worker ran out of work (a ticket pool
    // emptied): the rate is over the time actually spent.
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    let seconds = watch.elapsed().as_secs_f64();
    timer.abort();
    let cpu = pid.map(cpu_ticks).unwrap_or(0).saturating_sub(cpu_before);
    let database = database_ticks().saturating_sub(database_before);
    let hist = hist.lock().await;
    measure(
        &hist,
        count.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        seconds,
        cpu,
        database,
    )
}

/// Raw Argon2id hashes per second at Sésame's default parameters, on every core, memory reused.
fn argon2_baseline(duration: Duration) -> f64 {
    use argon2::{Algorithm, Argon2, Block, Params, Version};
    let params = Params::new(19 * 1024, 2, 1, Some(32)).unwrap();
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..cores())
        .map(|_| {
            let (params, total, stop) = (params.clone(), total.clone(), stop.clone());
            std::thread::spawn(move || {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let mut memory = vec![Block::default(); argon2.params().block_count()];
                let mut out = [0u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    argon2
                        .hash_password_into_with_memory(
                            PASSWORD.as_bytes(),
                            b"bench-salt-16byt",
                            &mut out,
                            &mut memory,
                        )
                        .unwrap();
                    total.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let watch = Stopwatch::start();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / watch.elapsed().as_secs_f64()
}

/// Raw signatures per second on every core with aws-lc-rs (the crypto backend of Sésame), over a
/// message the size of an ID token's signing input: RSA-2048 PKCS#1 v1.5 SHA-256, or P-256.
fn signature_baseline(rsa: bool, duration: Duration) -> f64 {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
    let rng = SystemRandom::new();
    let pkcs8: Vec<u8> = if rsa {
        use aws_lc_rs::encoding::AsDer as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().unwrap();
        der.as_ref().to_vec()
    } else {
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..cores())
        .map(|_| {
            let (pkcs8, total, stop) = (pkcs8.clone(), total.clone(), stop.clone());
            std::thread::spawn(move || {
                let rng = SystemRandom::new();
                let message = [7u8; 400];
                if rsa {
                    let key = RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
                    let mut out = vec![0u8; key.public_modulus_len()];
                    while !stop.load(Ordering::Relaxed) {
                        key.sign(&signature::RSA_PKCS1_SHA256, &rng, &message, &mut out)
                            .unwrap();
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    let key = EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &pkcs8,
                    )
                    .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let _ = key.sign(&rng, &message).unwrap();
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let watch = Stopwatch::start();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / watch.elapsed().as_secs_f64()
}

/// What 100,000 live SSO sessions cost: bytes in the database and the server's RSS.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct SessionLoad {
    sessions: u64,
    database_bytes_per_session: f64,
    rss_idle_kib: u64,
    /// A fresh `sesame serve` on the same database, once up and idle.
    fresh_serve_rss_kib: u64,
    sso_hits_ok: u64,
    sso_hits_tried: u64,
}

/// Seeds `n` live sessions of the demo student straight into Sésame's database (the documented
/// bulk path: 100,000 logins would take half an hour of Argon2 here), each with one application
/// served, exactly as the login and CAS paths write them (the cookie's SHA-256, never the cookie).
/// Then measures the database growth per session, the idle RSS, and that sessions picked at
/// random give SSO tickets.
async fn session_load(servers: &Servers, pid: u32, n: u64) -> SessionLoad {
    let now = {
        use sesame::clock::Clock as _;
        sesame::clock::SystemClock.unix_now()
    };
    let (before, after, cookies) = match &servers.postgres {
        None => seed_sessions_sqlite(&servers.dir.join("data/sesame.db"), n, now).await,
        Some((url, schema)) => seed_sessions_postgres(url, schema, n, now).await,
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(pid);
    let http = client();
    let service = format!("{}/demo/cas", servers.base);
    let mut ok = 0;
    for cookie in &cookies {
        let hit = http
            .get(format!("{}/cas/login", servers.base))
            .query(&[("service", service.as_str())])
            .header("cookie", format!("sesame={cookie}"))
            .send()
            .await
            .ok()
            .and_then(|r| r.headers().get("location").cloned())
            .is_some_and(|l| l.to_str().unwrap_or("").contains("ticket=ST-"));
        if hit {
            ok += 1;
        }
    }
    // A fresh `sesame serve` on this database (the demo process has hashed and served every
    // flow): its idle RSS with the sessions stored.
    let port = free_port();
    let mut serve = Command::new(&servers.sesame_path);
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SESAME_DATA_DIR", servers.dir.join("data"))
        .env("SESAME_KEYS__DIR", servers.dir.join("keys"))
        .env(
            "SESAME_SERVER__PUBLIC_URL",
            format!("http://127.0.0.1:{port}/"),
        )
        .env("SESAME_LOG__LEVEL", "error")
        .current_dir(&servers.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((url, schema)) = &servers.postgres {
        serve
            .env("SESAME_DATABASE__URL", url)
            .env("SESAME_DATABASE__SCHEMA", schema);
    }
    let mut serve = serve.spawn().unwrap();
    wait_until_up(&format!("http://127.0.0.1:{port}/healthz")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fresh_serve_rss_kib = rss_kib(serve.id());
    let _ = Command::new("kill").arg(serve.id().to_string()).status();
    let _ = serve.wait();
    SessionLoad {
        sessions: n,
        database_bytes_per_session: (after - before) / n as f64,
        rss_idle_kib: rss,
        fresh_serve_rss_kib,
        sso_hits_ok: ok,
        sso_hits_tried: cookies.len() as u64,
    }
}

/// A browser's `User-Agent`, as seeded sessions carry one.
const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                     Chrome/156.0 Safari/537.36";

fn seeded_cookie() -> String {
    format!("TGT-{}", OsEntropy.hex(20))
}

fn cookie_digest(cookie: &str) -> Vec<u8> {
    use aws_lc_rs::digest::{SHA256, digest};
    digest(&SHA256, cookie.as_bytes()).as_ref().to_vec()
}

fn seeded_ip(batch: u64, i: u64) -> String {
    format!("10.{}.{}.{}", batch % 250, i % 250, (i / 250) % 250)
}

/// The SQLite bulk path: batches of 1,000 sessions per transaction; the file's size (after a
/// checkpoint) before and after, and 100 of the cookies.
async fn seed_sessions_sqlite(db: &Path, n: u64, now: i64) -> (f64, f64, Vec<String>) {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(db)
                .busy_timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let size = |pool: sqlx::SqlitePool| async move {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await;
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&pool)
            .await
            .unwrap();
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&pool)
            .await
            .unwrap();
        (pages * page) as f64
    };
    let account: String = sqlx::query_scalar("SELECT id FROM accounts WHERE login = ?")
        .bind(USER)
        .fetch_one(&pool)
        .await
        .unwrap();
    let before = size(pool.clone()).await;
    let mut cookies = Vec::new();
    for batch in 0..n.div_ceil(1000) {
        let mut tx = pool.begin().await.unwrap();
        for i in 0..1000.min(n - batch * 1000) {
            let cookie = seeded_cookie();
            let id = OsEntropy.token(12);
            sqlx::query(
                "INSERT INTO sessions (id, digest, account_id, kind, auth_time, factors, \
                 last_seen_at, idle_expires_at, expires_at, client_ip, user_agent) \
                 VALUES (?, ?, ?, 'standard', ?, 'pwd', ?, ?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(cookie_digest(&cookie))
            .bind(&account)
            .bind(now)
            .bind(now)
            .bind(now + 2 * 3600)
            .bind(now + 8 * 3600)
            .bind(seeded_ip(batch, i))
            .bind(AGENT)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO session_services (session_id, protocol, service, first_at, last_at) \
                 VALUES (?, 'cas', 'demo', ?, ?)",
            )
            .bind(&id)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
            if cookies.len() < 100 && i % 97 == 0 {
                cookies.push(cookie);
            }
        }
        tx.commit().await.unwrap();
    }
    let after = size(pool.clone()).await;
    pool.close().await;
    (before, after, cookies)
}

/// The PostgreSQL bulk path: batches of 1,000 sessions per statement (`UNNEST`); the tables' size
/// with their indexes (`pg_total_relation_size`, after `VACUUM`) before and after, and 100 of
/// the cookies.
async fn seed_sessions_postgres(
    url: &str,
    schema: &str,
    n: u64,
    now: i64,
) -> (f64, f64, Vec<String>) {
    use sqlx::Executor as _;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
        .await
        .unwrap();
    let account: String = sqlx::query_scalar("SELECT id FROM accounts WHERE login = $1")
        .bind(USER)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    async fn size(conn: &mut sqlx::PgConnection) -> f64 {
        conn.execute("VACUUM sessions, session_services")
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>(
            "SELECT pg_total_relation_size('sessions') \
             + pg_total_relation_size('session_services')",
        )
        .fetch_one(conn)
        .await
        .unwrap() as f64
    }
    let before = size(&mut conn).await;
    let mut cookies = Vec::new();
    for batch in 0..n.div_ceil(1000) {
        let (mut ids, mut digests, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..1000.min(n - batch * 1000) {
            let cookie = seeded_cookie();
            ids.push(OsEntropy.token(12));
            digests.push(cookie_digest(&cookie));
            ips.push(seeded_ip(batch, i));
            if cookies.len() < 100 && i % 97 == 0 {
                cookies.push(cookie);
            }
        }
        sqlx::query(
            "WITH s AS (INSERT INTO sessions (id, digest, account_id, kind, auth_time, factors, \
             last_seen_at, idle_expires_at, expires_at, client_ip, user_agent) \
             SELECT u.id, u.digest, $4, 'standard', $5, 'pwd', $5, $6, $7, u.ip, $8 \
             FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS u(id, digest, ip) RETURNING id) \
             INSERT INTO session_services (session_id, protocol, service, first_at, last_at) \
             SELECT id, 'cas', 'demo', $5, $5 FROM s",
        )
        .bind(ids)
        .bind(digests)
        .bind(ips)
        .bind(&account)
        .bind(now)
        .bind(now + 2 * 3600)
        .bind(now + 8 * 3600)
        .bind(AGENT)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let after = size(&mut conn).await;
    (before, after, cookies)
}

/// The floor server (`sesame-bench floor PORT DB`): axum + sqlx on SQLite with Sésame's settings
/// (WAL, synchronous=FULL, foreign keys, busy timeout): `/write` = one indexed SELECT and one
/// INSERT, `/read` = the SELECT, `/static` = a constant.
async fn floor_server(port: u16, db: &Path) {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    serve_floor(port, FloorDb::Sqlite(pool)).await;
}

/// The floor server on PostgreSQL (`sesame-bench floor PORT URL#SCHEMA`): the same endpoints,
/// in a schema of its own, with the pool size Sésame uses by default.
async fn floor_server_postgres(port: u16, url: &str, schema: &str) {
    use sqlx::Executor as _;
    use sqlx::postgres::PgPoolOptions;
    let search_path = format!("SET search_path TO {schema}");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .await
        .unwrap();
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .after_connect(move |conn, _| {
            let search_path = search_path.clone();
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(search_path))
                    .await
                    .map(|_| ())
            })
        })
        .connect(url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    serve_floor(port, FloorDb::Postgres(pool)).await;
}

/// The floor's database, on either backend.
#[derive(Clone)]
enum FloorDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl FloorDb {
    /// One indexed SELECT.
    async fn select(&self, id: &str) {
        let _: Option<(String,)> = match self {
            FloorDb::Sqlite(pool) => sqlx::query_as("SELECT v FROM t WHERE id = ?")
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap(),
            FloorDb::Postgres(pool) => sqlx::query_as("SELECT v FROM t WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap(),
        };
    }

    /// One INSERT (autocommit).
    async fn insert(&self, id: &str) {
        match self {
            FloorDb::Sqlite(pool) => sqlx::query("INSERT INTO t (id, v) VALUES (?, 'x')")
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
                .unwrap(),
            FloorDb::Postgres(pool) => sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')")
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
                .unwrap(),
        }
    }
}

/// The floor's endpoints: `/write` = one indexed SELECT and one INSERT, `/read` = the SELECT,
/// `/static` = a constant.
async fn serve_floor(port: u16, db: FloorDb) {
    use axum::extract::State;
    use axum::routing::get;
    async fn write(State(db): State<FloorDb>) -> &'static str {
        let id = OsEntropy.hex(16);
        db.select(&id).await;
        db.insert(&id).await;
        "ok"
    }
    async fn read(State(db): State<FloorDb>) -> &'static str {
        db.select(&OsEntropy.hex(16)).await;
        "ok"
    }
    let app = axum::Router::new()
        .route("/write", get(write))
        .route("/read", get(read))
        .route("/static", get(|| async { "static" }))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

async fn wait_until_up(url: &str) {
    let http = client();
    for _ in 0..600 {
        if http.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn median_measure(list: &[Measure]) -> Measure {
    Measure {
        per_second: median(list.iter().map(|m| m.per_second).collect()),
        p50_ms: median(list.iter().map(|m| m.p50_ms).collect()),
        p99_ms: median(list.iter().map(|m| m.p99_ms).collect()),
        max_ms: median(list.iter().map(|m| m.max_ms).collect()),
        errors: list.iter().map(|m| m.errors).sum(),
        cpu_us_per_request: median(list.iter().map(|m| m.cpu_us_per_request).collect()),
        database_cpu_us_per_request: median(
            list.iter().map(|m| m.database_cpu_us_per_request).collect(),
        ),
    }
}

struct Servers {
    /// PostgreSQL: the URL and the schema of this run (dropped at the end).
    postgres: Option<(String, String)>,
    /// client id → secret of the benchmark's OIDC clients.
    secrets: BTreeMap<String, String>,
    sesame: Child,
    floor: Child,
    base: String,
    floor_base: String,
    dir: PathBuf,
    startup_ms: f64,
    sesame_path: PathBuf,
    /// The generated students imported into Sésame, still to activate.
    students: Vec<activation::Student>,
    /// Seconds `sesame import students` took for them.
    import_seconds: f64,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in [&mut self.sesame, &mut self.floor] {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((url, schema)) = &self.postgres {
            let _ = Command::new("psql")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .arg(url)
                .arg("-qc")
                .arg(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_floor CASCADE"
                ))
                .status();
        }
    }
}

async fn start(options: &Options) -> Servers {
    let dir = std::env::temp_dir().join(format!("sesame-bench-{}", OsEntropy.hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let postgres = options
        .postgres
        .clone()
        .map(|url| (url, format!("sesame_bench_{}", OsEntropy.hex(6))));
    let env = |command: &mut Command| {
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SESAME_DATA_DIR", dir.join("data"))
            .env("SESAME_KEYS__DIR", dir.join("keys"))
            .env(
                "SESAME_SERVER__PUBLIC_URL",
                format!("http://127.0.0.1:{port}/"),
            )
            .env("SESAME_OIDC__ALLOW_HTTP_REDIRECTS", "true")
            .current_dir(&dir);
        if let Some((url, schema)) = &postgres {
            command
                .env("SESAME_DATABASE__URL", url)
                .env("SESAME_DATABASE__SCHEMA", schema);
        }
    };
    // The OIDC clients, registered from the outside as an operator would.
    let mut secrets = BTreeMap::new();
    for (id, alg) in [(RS_CLIENT, "RS256"), (ES_CLIENT, "ES256")] {
        let mut add = Command::new(&options.sesame);
        env(&mut add);
        let out = add
            .args([
                "client",
                "add",
                id,
                "--name",
                id,
                "--redirect-uri",
                OIDC_CALLBACK,
                "--first-party",
                "--signing-alg",
                alg,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        secrets.insert(
            id.to_string(),
            answer["client_secret"].as_str().unwrap().to_string(),
        );
    }
    let watch = Stopwatch::start();
    let mut command = Command::new(&options.sesame);
    env(&mut command);
    let sesame = command
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("SESAME_DATA_DIR", dir.join("data"))
        .env("SESAME_KEYS__DIR", dir.join("keys"))
        .env("SESAME_LOG__LEVEL", "error")
        .env("SESAME_LIMITS__PER_ADDRESS_PER_MINUTE", "100000000")
        .env("SESAME_LIMITS__GLOBAL_PER_SECOND", "100000000")
        .env("SESAME_CAS__TICKET_LIFETIME", "5m")
        // Pools of codes are filled before they are redeemed.
        .env("SESAME_OIDC__CODE_LIFETIME", "10m")
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", options.sesame.display()));
    wait_until_up(&format!("{base}/healthz")).await;
    let startup_ms = watch.elapsed().as_secs_f64() * 1000.0;
    // The registrar's export of the year, through the real import (the server is idle).
    let count = if options.quick { 5_000 } else { 50_000 };
    eprintln!("importing {count} generated students");
    let csv = dir.join("students.csv");
    let students = activation::generate(&options.people, count, &csv);
    let watch = Stopwatch::start();
    let mut import = Command::new(&options.sesame);
    env(&mut import);
    let out = import
        .args(["import", "students"])
        .arg(&csv)
        .output()
        .unwrap();
    let import_seconds = watch.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "the import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("imported {count} students in {import_seconds:.1} s");
    let floor_port = free_port();
    let floor = Command::new(std::env::current_exe().unwrap())
        .args([
            "floor",
            &floor_port.to_string(),
            &match &postgres {
                Some((url, schema)) => format!("{url}#{schema}_floor"),
                None => dir.join("floor.db").display().to_string(),
            },
        ])
        .spawn()
        .unwrap();
    let floor_base = format!("http://127.0.0.1:{floor_port}");
    wait_until_up(&format!("{floor_base}/static")).await;
    Servers {
        postgres,
        secrets,
        sesame,
        floor,
        base,
        floor_base,
        dir,
        startup_ms,
        sesame_path: options.sesame.clone(),
        students,
        import_seconds,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("floor") {
        let port: u16 = args.next().unwrap().parse().unwrap();
        let db = args.next().unwrap();
        match db.split_once('#') {
            Some((url, schema)) if url.starts_with("postgres") => {
                floor_server_postgres(port, url, schema).await
            }
            _ => floor_server(port, &PathBuf::from(db)).await,
        }
        return;
    }
    let mut options = options();
    options.sesame = std::fs::canonicalize(&options.sesame).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build it with cargo build --release)",
            options.sesame.display()
        )
    });
    let (round, rounds) = if options.quick {
        (Duration::from_secs(3), 1)
    } else {
        (Duration::from_secs(15), 3)
    };
    DATABASE_PROCESSES.store(options.postgres.is_some(), Ordering::Relaxed);
    let servers = start(&options).await;
    let pid = servers.sesame.id();
    let floor_pid = servers.floor.id();
    let base = servers.base.clone();
    let service = format!("{base}/demo/cas");
    let workers = cores() * 8;
    let rss_idle = rss_kib(pid);
    let http = client();
    let outbox = activation::Outbox::watch(servers.dir.join("data/outbox"));
    let students = Arc::new(servers.students.clone());
    let next_student = Arc::new(AtomicU64::new(0));
    // The students the virtual users sign in as: four each, activated end to end first, so that
    // a storm is many students signing in (as at the start of the year), not one account
    // updated a hundred times a second, and no two virtual users share an account at a time.
    let accounts =
        seed_accounts(&http, &base, &outbox, &students, &next_student, workers * 4).await;
    let accounts_of = move |w: usize| -> Vec<String> {
        accounts.iter().skip(w).step_by(workers).cloned().collect()
    };
    if let Some(seconds) = options.login_only {
        login_only(
            &http,
            &base,
            pid,
            workers,
            &accounts_of,
            Duration::from_secs(seconds),
        )
        .await;
        return;
    }

    let mut argon = Vec::new();
    // Each login storm over the mean of the two baselines around it: the login's ratio is the
    // median of these (the machine's drift cancels within a pair, not across rounds).
    let mut login_ratios = Vec::new();
    let mut logins = Vec::new();
    let mut health = Vec::new();
    let mut rss_storm = 0;
    let mut floor_write = Vec::new();
    let mut floor_read = Vec::new();
    let mut floor_static = Vec::new();
    let mut validate_alone = Vec::new();
    let mut sso_flow = Vec::new();
    let mut healthz_plain = Vec::new();
    let mut rsa_sigs = Vec::new();
    let mut ec_sigs = Vec::new();
    let mut authorizations = Vec::new();
    let mut token_rs = Vec::new();
    let mut token_es = Vec::new();
    let mut refreshes_es = Vec::new();
    let mut refreshes_rs = Vec::new();
    let mut userinfos = Vec::new();
    let mut introspections = Vec::new();
    let mut discoveries = Vec::new();
    let mut jwks_reads = Vec::new();
    let secrets = Arc::new(servers.secrets.clone());
    let mut activations = Vec::new();

    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        let users: Vec<Arc<Mutex<VirtualUser>>> = {
            let mut v = Vec::new();
            for w in 0..workers {
                v.push(Arc::new(Mutex::new(
                    VirtualUser::new(http.clone(), &base, accounts_of(w)).await,
                )));
            }
            v
        };
        if !options.wants("login") {
            // No storm: each virtual user signs in once, for the flows that need a session.
            for user in &users {
                let _ = user.lock().await.login().await;
            }
        }
        if options.wants("login") {
            // Argon2 ceiling and login storms alternate in short slices (baseline, storm,
            // baseline, storm, baseline, storm, baseline: 5 s each in a full run), /healthz
            // probed during each storm: each storm is compared with the mean of the two
            // baselines around it, as this kind of machine drifts by a fifth within a minute
            // (baselines of 119 and 146 hashes/s 45 s apart).
            let (slice, storms) = if options.quick {
                (round, 1)
            } else {
                (round / 3, 3)
            };
            let mut before = tokio::task::spawn_blocking(move || argon2_baseline(slice))
                .await
                .unwrap();
            for _ in 0..storms {
                let probe_stop = Arc::new(AtomicBool::new(false));
                let probe = {
                    let (http, base, stop) = (http.clone(), base.clone(), probe_stop.clone());
                    tokio::spawn(async move {
                        let mut hist = Histogram::<u64>::new(3).unwrap();
                        let mut max_rss = 0;
                        while !stop.load(Ordering::Relaxed) {
                            let watch = Stopwatch::start();
                            let ok = http
                                .get(format!("{base}/healthz"))
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success());
                            if ok {
                                let _ = hist.record(watch.elapsed().as_micros() as u64);
                            }
                            max_rss = max_rss.max(rss_kib(pid));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        (hist, max_rss)
                    })
                };
                let storm_users = users.clone();
                let (machine_before, driver_before) =
                    (machine_ticks(), cpu_ticks(std::process::id()));
                let storm = drive(workers, slice, Some(pid), move |w| {
                    let user = storm_users[w].clone();
                    async move { Some(user.lock().await.login().await) }
                })
                .await;
                let (machine_after, driver_after) =
                    (machine_ticks(), cpu_ticks(std::process::id()));
                probe_stop.store(true, Ordering::Relaxed);
                let (hist, max_rss) = probe.await.unwrap();
                rss_storm = rss_storm.max(max_rss);
                health.push(measure(&hist, hist.len(), 0, slice.as_secs_f64(), 0, 0));
                let after = tokio::task::spawn_blocking(move || argon2_baseline(slice))
                    .await
                    .unwrap();
                argon.push((before + after) / 2.0);
                login_ratios.push(storm.per_second * 2.0 / (before + after));
                // Each storm's figures, for a reader wondering how far they spread.
                let all: u64 = machine_after
                    .iter()
                    .zip(machine_before)
                    .map(|(a, b)| a.saturating_sub(b))
                    .sum();
                eprintln!(
                    "  argon2 {before:.1}/s and {after:.1}/s, logins {:.1}/s ({:.3}), server CPU \
                     {:.0} µs/login, load driver {:.1} % of the machine",
                    storm.per_second,
                    storm.per_second * 2.0 / (before + after),
                    storm.cpu_us_per_request,
                    100.0 * driver_after.saturating_sub(driver_before) as f64 / all.max(1) as f64
                );
                logins.push(storm);
                before = after;
            }
        }

        // Activation end to end: dossier pair, contact, the code from the outbox, password.
        if options.wants("activation") {
            let (http_a, base_a, outbox_a, students_a, next_a) = (
                http.clone(),
                base.clone(),
                outbox.clone(),
                students.clone(),
                next_student.clone(),
            );
            // A student waits for the mailed code (the outbox leaves every `mail.send_interval`), so
            // more virtual users keep the server busy meanwhile: as many as the hashing queue holds
            // (`password.queue`, 64), since the codes of a batch arrive, and the passwords follow,
            // together; beyond it the page answers "busy, retry" by design.
            activations.push(
                drive(64, round, Some(pid), move |_| {
                    let (http, base, outbox, students, next) = (
                        http_a.clone(),
                        base_a.clone(),
                        outbox_a.clone(),
                        students_a.clone(),
                        next_a.clone(),
                    );
                    async move {
                        let student = students.get(next.fetch_add(1, Ordering::Relaxed) as usize)?;
                        let (elapsed, login) =
                            activation::activate(http, &base, student, &outbox).await;
                        Some((elapsed, login.is_some()))
                    }
                })
                .await,
            );
        }

        // Floors.
        for (path, into) in [
            ("/write", &mut floor_write),
            ("/read", &mut floor_read),
            ("/static", &mut floor_static),
        ] {
            let (http, url) = (http.clone(), format!("{}{path}", servers.floor_base));
            into.push(
                drive(workers, round, Some(floor_pid), move |_| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let watch = Stopwatch::start();
                        let ok = http
                            .get(&url)
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        Some((watch.elapsed(), ok))
                    }
                })
                .await,
            );
        }
        let (http2, url) = (http.clone(), format!("{base}/healthz"));
        healthz_plain.push(
            drive(workers, round, Some(pid), move |_| {
                let (http, url) = (http2.clone(), url.clone());
                async move {
                    let watch = Stopwatch::start();
                    let ok = http
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    Some((watch.elapsed(), ok))
                }
            })
            .await,
        );

        // serviceValidate alone, over a pool of tickets issued beforehand.
        let signed_in: Vec<Arc<Mutex<VirtualUser>>> = users.iter().take(workers).cloned().collect();
        if options.wants("cas") {
            let pool_size = if options.quick { 6_000 } else { 40_000 };
            let tickets = Arc::new(Mutex::new(Vec::with_capacity(pool_size)));
            {
                let mut fill = Vec::new();
                for user in &signed_in {
                    let (user, tickets, service) = (user.clone(), tickets.clone(), service.clone());
                    fill.push(tokio::spawn(async move {
                        let user = user.lock().await;
                        for _ in 0..pool_size / workers {
                            if let Some(t) = user.cas_ticket(&service).await {
                                tickets.lock().await.push(t);
                            }
                        }
                    }));
                }
                for f in fill {
                    f.await.unwrap();
                }
            }
            let (http3, base3, service3, pool) =
                (http.clone(), base.clone(), service.clone(), tickets.clone());
            validate_alone.push(
                drive(workers, round, Some(pid), move |_| {
                    let (http, base, service, pool) =
                        (http3.clone(), base3.clone(), service3.clone(), pool.clone());
                    async move {
                        let ticket = pool.lock().await.pop()?;
                        let watch = Stopwatch::start();
                        let ok = validate(&http, &base, &service, &ticket).await;
                        Some((watch.elapsed(), ok))
                    }
                })
                .await,
            );
            // The SSO-hit flow: /cas/login with a session, then validation.
            let (http4, base4, service4, users4) = (
                http.clone(),
                base.clone(),
                service.clone(),
                signed_in.clone(),
            );
            sso_flow.push(
                drive(workers, round, Some(pid), move |w| {
                    let (http, base, service, user) = (
                        http4.clone(),
                        base4.clone(),
                        service4.clone(),
                        users4[w].clone(),
                    );
                    async move {
                        let watch = Stopwatch::start();
                        let ticket = user.lock().await.cas_ticket(&service).await;
                        let ok = match ticket {
                            Some(t) => validate(&http, &base, &service, &t).await,
                            None => false,
                        };
                        Some((watch.elapsed(), ok))
                    }
                })
                .await,
            );
        }

        // Raw signature ceilings (the crypto backend of Sésame, every core).
        if options.wants("oidc") {
            let short = round / 3;
            rsa_sigs.push(
                tokio::task::spawn_blocking(move || signature_baseline(true, short))
                    .await
                    .unwrap(),
            );
            ec_sigs.push(
                tokio::task::spawn_blocking(move || signature_baseline(false, short))
                    .await
                    .unwrap(),
            );
            // OIDC code→token, over pools of codes issued by SSO beforehand; the answers feed the
            // refresh, userinfo and introspection flows.
            // One pool of refresh tokens per client: refresh is timed with each signing algorithm,
            // like code→token.
            let refresh_pools: BTreeMap<&str, Arc<Mutex<Vec<String>>>> = [RS_CLIENT, ES_CLIENT]
                .into_iter()
                .map(|c| (c, Arc::new(Mutex::new(Vec::new()))))
                .collect();
            let access_pool = Arc::new(Mutex::new(Vec::new()));
            // Enough codes for a round at about 1,000 token requests/s (a pool of 40,000 made each
            // round last 11 minutes).
            let code_pool = if options.quick { 3_000 } else { 16_000 };
            for (client, into) in [(RS_CLIENT, &mut token_rs), (ES_CLIENT, &mut token_es)] {
                // The pool is filled by SSO authorizations, timed as the authorize flow: each
                // virtual user asks for its share of the codes (the round's length only bounds it).
                let codes = Arc::new(Mutex::new(Vec::with_capacity(code_pool)));
                let (users5, codes5) = (signed_in.clone(), codes.clone());
                let asked = Arc::new(AtomicU64::new(0));
                authorizations.push(
                    drive(workers, round * 10, Some(pid), move |w| {
                        let (user, codes, asked) =
                            (users5[w].clone(), codes5.clone(), asked.clone());
                        async move {
                            if asked.fetch_add(1, Ordering::Relaxed) >= code_pool as u64 {
                                return None;
                            }
                            let watch = Stopwatch::start();
                            let code = user.lock().await.oidc_code(client).await;
                            let elapsed = watch.elapsed();
                            let ok = code.is_some();
                            if let Some(c) = code {
                                codes.lock().await.push(c);
                            }
                            Some((elapsed, ok))
                        }
                    })
                    .await,
                );
                let (http5, base5, secrets5) = (http.clone(), base.clone(), secrets.clone());
                let (refresh5, access5) = (refresh_pools[client].clone(), access_pool.clone());
                into.push(
                    drive(workers, round, Some(pid), move |_| {
                        let (http, base, secrets, codes) = (
                            http5.clone(),
                            base5.clone(),
                            secrets5.clone(),
                            codes.clone(),
                        );
                        let (refresh_pool, access_pool) = (refresh5.clone(), access5.clone());
                        async move {
                            let code = codes.lock().await.pop()?;
                            let (elapsed, answer) = token_request(
                                &http,
                                &base,
                                client,
                                &secrets[client],
                                &[
                                    ("grant_type", "authorization_code"),
                                    ("code", &code),
                                    ("redirect_uri", OIDC_CALLBACK),
                                    ("code_verifier", VERIFIER),
                                ],
                            )
                            .await;
                            let ok = answer.as_ref().is_some_and(|a| a["id_token"].is_string());
                            if let Some(a) = answer {
                                if let Some(r) = a["refresh_token"].as_str() {
                                    refresh_pool.lock().await.push(r.to_string());
                                }
                                if let Some(t) = a["access_token"].as_str()
                                    && client == RS_CLIENT
                                {
                                    access_pool.lock().await.push(t.to_string());
                                }
                            }
                            Some((elapsed, ok))
                        }
                    })
                    .await,
                );
            }
            // Refresh (rotation: each token once), with each client: the ES256 one against the
            // floor (as code→token), the RS256 one against the floor and raw RSA signatures.
            for (client, into) in [
                (ES_CLIENT, &mut refreshes_es),
                (RS_CLIENT, &mut refreshes_rs),
            ] {
                let (http6, base6, secrets6, pool6) = (
                    http.clone(),
                    base.clone(),
                    secrets.clone(),
                    refresh_pools[client].clone(),
                );
                into.push(
                    drive(workers, round, Some(pid), move |_| {
                        let (http, base, secrets, pool) = (
                            http6.clone(),
                            base6.clone(),
                            secrets6.clone(),
                            pool6.clone(),
                        );
                        async move {
                            let token = pool.lock().await.pop()?;
                            let (elapsed, answer) = token_request(
                                &http,
                                &base,
                                client,
                                &secrets[client],
                                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                            )
                            .await;
                            Some((elapsed, answer.is_some()))
                        }
                    })
                    .await,
                );
            }
            // Userinfo and introspection over the access tokens (not consumed).
            let tokens: Arc<Vec<String>> = Arc::new(access_pool.lock().await.clone());
            if !tokens.is_empty() {
                let (http7, url7, tokens7) = (
                    http.clone(),
                    format!("{base}/oidc/userinfo"),
                    tokens.clone(),
                );
                // Markers on stderr, for a profiler attached to one flow.
                eprintln!("flow: userinfo");
                userinfos.push(
                    drive(workers, round, Some(pid), move |w| {
                        let (http, url, tokens) = (http7.clone(), url7.clone(), tokens7.clone());
                        async move {
                            let token = &tokens
                                [(w * 7919 + OsEntropy.bytes::<2>()[0] as usize) % tokens.len()];
                            Some(timed_get(&http, &url, Some(token)).await)
                        }
                    })
                    .await,
                );
                let (http8, base8, secrets8, tokens8) =
                    (http.clone(), base.clone(), secrets.clone(), tokens.clone());
                eprintln!("flow: introspection");
                introspections.push(
                    drive(workers, round, Some(pid), move |w| {
                        let (http, base, secrets, tokens) = (
                            http8.clone(),
                            base8.clone(),
                            secrets8.clone(),
                            tokens8.clone(),
                        );
                        async move {
                            let token = &tokens
                                [(w * 7919 + OsEntropy.bytes::<2>()[0] as usize) % tokens.len()];
                            let watch = Stopwatch::start();
                            let ok = match http
                                .post(format!("{base}/oidc/introspect"))
                                .basic_auth(RS_CLIENT, Some(&secrets[RS_CLIENT]))
                                .form(&[("token", token.as_str())])
                                .send()
                                .await
                            {
                                Ok(r) => r.bytes().await.is_ok_and(|b| {
                                    serde_json::from_slice::<serde_json::Value>(&b)
                                        .is_ok_and(|v| v["active"] == true)
                                }),
                                Err(_) => false,
                            };
                            Some((watch.elapsed(), ok))
                        }
                    })
                    .await,
                );
            }
        }
        // Discovery and JWKS.
        if !options.wants("documents") {
            continue;
        }
        for (path, into) in [
            ("/.well-known/openid-configuration", &mut discoveries),
            ("/oidc/jwks", &mut jwks_reads),
        ] {
            let (http9, url9) = (http.clone(), format!("{base}{path}"));
            into.push(
                drive(workers, round, Some(pid), move |_| {
                    let (http, url) = (http9.clone(), url9.clone());
                    async move { Some(timed_get(&http, &url, None).await) }
                })
                .await,
            );
        }
    }

    eprintln!("seeding live sessions");
    let seeded = options
        .sessions
        .unwrap_or(if options.quick { 10_000 } else { 100_000 });
    // The bulk path writes Sésame's database directly (SQLite file or PostgreSQL schema).
    let load = if options.wants("sessions") {
        session_load(&servers, pid, seeded).await
    } else {
        SessionLoad::default()
    };

    let argon = median(argon);
    let login_ratio = median(login_ratios.clone());
    let login = median_measure(&logins);
    let activation = median_measure(&activations);
    let health = median_measure(&health);
    let write = median_measure(&floor_write);
    let read = median_measure(&floor_read);
    let stat = median_measure(&floor_static);
    let alone = median_measure(&validate_alone);
    let sso = median_measure(&sso_flow);
    let plain = median_measure(&healthz_plain);
    let rsa = median(rsa_sigs);
    let ec = median(ec_sigs);
    let authorize = median_measure(&authorizations);
    let token_rs = median_measure(&token_rs);
    let token_es = median_measure(&token_es);
    let refresh_es = median_measure(&refreshes_es);
    let refresh_rs = median_measure(&refreshes_rs);
    let userinfo = median_measure(&userinfos);
    let introspection = median_measure(&introspections);
    let discovery = median_measure(&discoveries);
    let jwks = median_measure(&jwks_reads);

    // Each row: flow, its rate, its baseline and the baseline's rate, its measure, its ratio when
    // not the rate over the baseline's (the login's, paired storm by storm), its target.
    type Row<'a> = (&'a str, f64, String, f64, &'a Measure, Option<f64>, &'a str);
    let rows: Vec<Row> = vec![
        (
            "password login (GET form + POST)",
            login.per_second,
            "Argon2id hashes/s (the two around each storm; ratio: the storms' median)".into(),
            argon,
            &login,
            Some(login_ratio),
            "≥ 0.9",
        ),
        (
            "activation end to end (4 forms, code from the outbox)",
            activation.per_second,
            "Argon2id hashes/s".into(),
            argon,
            &activation,
            None,
            "—",
        ),
        (
            "CAS serviceValidate (ticket pool)",
            alone.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &alone,
            None,
            "≥ 0.7",
        ),
        (
            "CAS SSO hit: /cas/login + validate",
            sso.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &sso,
            None,
            "≥ 0.5",
        ),
        (
            "OIDC authorize with SSO (302 with a code)",
            authorize.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &authorize,
            None,
            "—",
        ),
        (
            "OIDC code→token, ES256 (code pool)",
            token_es.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &token_es,
            None,
            "≥ 0.6",
        ),
        (
            "OIDC code→token, RS256 (code pool)",
            token_rs.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &token_rs,
            None,
            "—",
        ),
        (
            "OIDC code→token, RS256 (code pool)",
            token_rs.per_second,
            "raw RSA-2048 signatures/s".into(),
            rsa,
            &token_rs,
            None,
            "≥ 0.6",
        ),
        // A token request writes like the floor and signs once: on the same cores, its ceiling
        // is the two in series. Information only; the target above is against RSA alone.
        (
            "OIDC code→token, RS256 (code pool)",
            token_rs.per_second,
            "floor and RSA-2048 in series, 1 ÷ (1/floor + 1/RSA)".into(),
            in_series(write.per_second, rsa),
            &token_rs,
            None,
            "—",
        ),
        (
            "OIDC refresh (rotation), ES256",
            refresh_es.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &refresh_es,
            None,
            "≥ 0.5",
        ),
        (
            "OIDC refresh (rotation), RS256",
            refresh_rs.per_second,
            "SELECT+INSERT floor".into(),
            write.per_second,
            &refresh_rs,
            None,
            "—",
        ),
        (
            "OIDC refresh (rotation), RS256",
            refresh_rs.per_second,
            "raw RSA-2048 signatures/s".into(),
            rsa,
            &refresh_rs,
            None,
            "—",
        ),
        (
            "OIDC userinfo",
            userinfo.per_second,
            "SELECT floor".into(),
            read.per_second,
            &userinfo,
            None,
            "≥ 0.5",
        ),
        (
            "OIDC introspection",
            introspection.per_second,
            "SELECT floor".into(),
            read.per_second,
            &introspection,
            None,
            "≥ 0.5",
        ),
        (
            "OIDC discovery",
            discovery.per_second,
            "static floor".into(),
            stat.per_second,
            &discovery,
            None,
            "≥ 0.7",
        ),
        (
            "OIDC JWKS",
            jwks.per_second,
            "static floor".into(),
            stat.per_second,
            &jwks,
            None,
            "≥ 0.7",
        ),
        (
            "/healthz (idle)",
            plain.per_second,
            "static floor".into(),
            stat.per_second,
            &plain,
            None,
            "—",
        ),
    ];
    // The CPU of the database's own processes (PostgreSQL), per request; SQLite's is the
    // server's.
    let database_cpu = |m: &Measure| {
        if options.postgres.is_some() {
            format!("{:.0}", m.database_cpu_us_per_request)
        } else {
            "—".to_string()
        }
    };
    println!(
        "| flow | Sésame /s | baseline | baseline /s | ratio | target | p50 ms | p99 ms | max ms | CPU µs/req | DB CPU µs/req | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, value, baseline, base_value, m, paired, target) in &rows {
        let ratio = paired.unwrap_or(value / base_value);
        println!(
            "| {name} | {value:.0} | {baseline} | {base_value:.0} | {ratio:.2} | {target} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} |",
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            m.cpu_us_per_request,
            database_cpu(m),
            m.errors
        );
    }
    println!();
    // The floors themselves: what one of their requests costs, to read the flows' CPU against.
    println!("| floor | /s | p50 ms | p99 ms | CPU µs/req (floor server) | DB CPU µs/req |");
    println!("|---|---|---|---|---|---|");
    for (name, m) in [
        ("SELECT+INSERT", &write),
        ("SELECT", &read),
        ("static", &stat),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.0} | {} |",
            m.per_second,
            m.p50_ms,
            m.p99_ms,
            m.cpu_us_per_request,
            database_cpu(m)
        );
    }
    println!();
    println!(
        "- login ÷ Argon2 storm by storm (each over the mean of the two baselines around it; the \
         table gives their median): {}",
        login_ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "- login p99 ÷ p50 under saturation: {:.2} (target ≤ 1.5)",
        login.p99_ms / login.p50_ms.max(0.001)
    );
    println!(
        "- /healthz during the login storm: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < 50 ms)",
        health.p50_ms, health.p99_ms, health.max_ms
    );
    println!(
        "- RSS: idle {} MiB, during the login storm {} MiB (target ≤ idle + {} cores × 19 MiB + 32 MiB = {} MiB)",
        rss_idle / 1024,
        rss_storm / 1024,
        cores(),
        rss_idle / 1024 + cores() as u64 * 19 + 32
    );
    if load.sessions > 0 {
        println!(
            "- {} live SSO sessions (seeded): {:.0} bytes each in the database (target ≤ 1 KB); \
             idle RSS of a fresh `sesame serve` with them {} MiB (target ≤ 50 MiB; the demo \
             process after every flow: {} MiB); SSO from {}/{} random ones",
            load.sessions,
            load.database_bytes_per_session,
            load.fresh_serve_rss_kib / 1024,
            load.rss_idle_kib / 1024,
            load.sso_hits_ok,
            load.sso_hits_tried
        );
    }
    println!(
        "- start-up (spawn to /healthz answering): {:.0} ms",
        servers.startup_ms
    );
    println!(
        "- import of {} generated students (`sesame import students`): {:.1} s (target < 30 s for 50,000)",
        servers.students.len(),
        servers.import_seconds
    );
    println!(
        "- floors: SELECT+INSERT {:.0}/s (p99 {:.1} ms), SELECT {:.0}/s, static {:.0}/s",
        write.per_second, write.p99_ms, read.per_second, stat.per_second
    );
    println!("- raw signatures on every core (aws-lc-rs): RSA-2048 {rsa:.0}/s, P-256 {ec:.0}/s");
    println!(
        "- database: {}",
        if servers.postgres.is_some() {
            "PostgreSQL (Sésame and the floor, each in a fresh schema)"
        } else {
            "SQLite (WAL, synchronous=FULL)"
        }
    );
    println!(
        "- machine: {} cores; {} round(s) of {} s, interleaved (the login: {} storm(s) per round \
         between Argon2 baselines of the same length); medians",
        cores(),
        rounds,
        round.as_secs(),
        login_ratios.len() / rounds.max(1)
    );

    let mut json = BTreeMap::new();
    json.insert("argon2_hashes_per_second", serde_json::json!(argon));
    json.insert("login", serde_json::to_value(&login).unwrap());
    json.insert("login_ratio_per_storm", serde_json::json!(login_ratios));
    json.insert("login_ratio", serde_json::json!(login_ratio));
    json.insert(
        "healthz_during_login_storm",
        serde_json::to_value(&health).unwrap(),
    );
    json.insert("floor_select_insert", serde_json::to_value(&write).unwrap());
    json.insert("floor_select", serde_json::to_value(&read).unwrap());
    json.insert("floor_static", serde_json::to_value(&stat).unwrap());
    json.insert(
        "cas_service_validate",
        serde_json::to_value(&alone).unwrap(),
    );
    json.insert("cas_sso_flow", serde_json::to_value(&sso).unwrap());
    json.insert("healthz", serde_json::to_value(&plain).unwrap());
    json.insert("raw_rsa2048_signatures_per_second", serde_json::json!(rsa));
    json.insert("raw_p256_signatures_per_second", serde_json::json!(ec));
    json.insert("oidc_token_rs256", serde_json::to_value(&token_rs).unwrap());
    json.insert(
        "floor_and_rsa2048_in_series_per_second",
        serde_json::json!(in_series(write.per_second, rsa)),
    );
    json.insert("oidc_authorize", serde_json::to_value(&authorize).unwrap());
    json.insert("oidc_token_es256", serde_json::to_value(&token_es).unwrap());
    json.insert(
        "oidc_refresh_es256",
        serde_json::to_value(&refresh_es).unwrap(),
    );
    json.insert(
        "oidc_refresh_rs256",
        serde_json::to_value(&refresh_rs).unwrap(),
    );
    json.insert("oidc_userinfo", serde_json::to_value(&userinfo).unwrap());
    json.insert(
        "oidc_introspection",
        serde_json::to_value(&introspection).unwrap(),
    );
    json.insert("oidc_discovery", serde_json::to_value(&discovery).unwrap());
    json.insert("oidc_jwks", serde_json::to_value(&jwks).unwrap());
    json.insert("rss_idle_kib", serde_json::json!(rss_idle));
    json.insert("rss_login_storm_kib", serde_json::json!(rss_storm));
    json.insert("startup_ms", serde_json::json!(servers.startup_ms));
    json.insert("activation", serde_json::to_value(&activation).unwrap());
    json.insert(
        "import",
        serde_json::json!({"students": servers.students.len(), "seconds": servers.import_seconds}),
    );
    json.insert("live_sessions", serde_json::to_value(&load).unwrap());
    json.insert("cores", serde_json::json!(cores()));
    json.insert("rounds", serde_json::json!(rounds));
    std::fs::write(&options.json, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    eprintln!("JSON written to {}", options.json.display());
}

/// Activates `n` of the imported students end to end, all at once (`n` at most the hashing
/// queue's bound), and returns their identifiers.
async fn seed_accounts(
    http: &reqwest::Client,
    base: &str,
    outbox: &activation::Outbox,
    students: &Arc<Vec<activation::Student>>,
    next: &Arc<AtomicU64>,
    n: usize,
) -> Vec<String> {
    let watch = Stopwatch::start();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let student = students[next.fetch_add(1, Ordering::Relaxed) as usize].clone();
        let (http, base, outbox) = (http.clone(), base.to_string(), outbox.clone());
        tasks.push(tokio::spawn(async move {
            activation::activate(http, &base, &student, &outbox).await.1
        }));
    }
    let mut accounts = Vec::new();
    for task in tasks {
        accounts.extend(task.await.unwrap());
    }
    assert_eq!(accounts.len(), n, "every seeded student must activate");
    eprintln!(
        "activated {n} students to sign in as in {:.1} s",
        watch.elapsed().as_secs_f64()
    );
    accounts
}

/// `--login-only`: an Argon2 baseline, a login storm, another baseline; the ratio to their mean.
async fn login_only(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    workers: usize,
    accounts_of: impl Fn(usize) -> Vec<String>,
    storm: Duration,
) {
    eprintln!("sesame pid {pid}");
    let baseline = Duration::from_secs(10);
    let before = tokio::task::spawn_blocking(move || argon2_baseline(baseline))
        .await
        .unwrap();
    let mut users = Vec::new();
    for w in 0..workers {
        users.push(Arc::new(Mutex::new(
            VirtualUser::new(http.clone(), base, accounts_of(w)).await,
        )));
    }
    eprintln!("storm starts");
    let (machine_before, driver_before) = (machine_ticks(), cpu_ticks(std::process::id()));
    let threads_before = thread_kinds(pid);
    let logins = drive(workers, storm, Some(pid), move |w| {
        let user = users[w].clone();
        async move { Some(user.lock().await.login().await) }
    })
    .await;
    let (machine_after, driver_after) = (machine_ticks(), cpu_ticks(std::process::id()));
    let threads_after = thread_kinds(pid);
    eprintln!("storm ends");
    let count = (logins.per_second * storm.as_secs_f64()).max(1.0);
    for (kind, after) in &threads_after {
        let before = threads_before.get(kind).copied().unwrap_or_default();
        let per = |i: usize| after[i].saturating_sub(before[i]) as f64 / count;
        println!(
            "  {kind:<24} {:>8.0} µs run, {:>7.0} µs waiting to run, {:>5.1} slices per login",
            per(0) / 1e3,
            per(1) / 1e3,
            per(2)
        );
    }
    // Where the two cores went during the storm, in shares of all ticks.
    let spent: Vec<u64> = machine_after
        .iter()
        .zip(machine_before)
        .map(|(a, b)| a.saturating_sub(b))
        .collect();
    let all = spent.iter().sum::<u64>().max(1) as f64;
    let share = |t: u64| 100.0 * t as f64 / all;
    let server = logins.cpu_us_per_request * logins.per_second * storm.as_secs_f64() / 1e4;
    println!(
        "machine during the storm: user {:.1} %, system {:.1} %, idle {:.1} %, irq {:.1} %, \
         steal {:.1} %; server {:.1} %, load driver {:.1} % (of {} ticks)",
        share(spent[0]),
        share(spent[1]),
        share(spent[2]),
        share(spent[3]),
        share(spent[4]),
        server / all * 100.0,
        share(driver_after.saturating_sub(driver_before)),
        all
    );
    let after = tokio::task::spawn_blocking(move || argon2_baseline(baseline))
        .await
        .unwrap();
    let argon = (before + after) / 2.0;
    println!(
        "raw Argon2 CPU per hash: {:.0} µs",
        cores() as f64 * 1e6 / argon
    );
    println!(
        "argon2 {before:.1}/s and {after:.1}/s; logins {:.1}/s (ratio {:.3}), p50 {:.1} ms, p99 {:.1} ms, \
         server CPU {:.0} µs/login, errors {}",
        logins.per_second,
        logins.per_second / argon,
        logins.p50_ms,
        logins.p99_ms,
        logins.cpu_us_per_request,
        logins.errors
    );
}
