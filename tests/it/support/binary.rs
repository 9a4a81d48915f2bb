//! Drives the real `sesame` binary: runs commands, starts servers on a free port and talks to
//! them over loopback with plain HTTP/1.1.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const BINARY: &str = env!("CARGO_BIN_EXE_sesame");

/// `sesame ARGS` in `dir` with exactly `env` (plus PATH), to completion.
pub fn run(dir: &Path, env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    command(dir, env, args).output().unwrap()
}

fn command(dir: &Path, env: &BTreeMap<String, String>, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    command
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `sesame serve`/`demo`, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub banner: String,
}

impl Server {
    /// Starts `sesame SUBCOMMAND --listen 127.0.0.1:PORT EXTRA…` on a free port and waits for
    /// its banner.
    pub fn start(
        dir: &Path,
        env: &BTreeMap<String, String>,
        subcommand: &str,
        extra: &[&str],
    ) -> Result<Self, String> {
        Self::start_on(free_port(), dir, env, subcommand, extra)
    }

    // The child is waited for by `terminate` or `Drop`, which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    pub fn start_on(
        port: u16,
        dir: &Path,
        env: &BTreeMap<String, String>,
        subcommand: &str,
        extra: &[&str],
    ) -> Result<Self, String> {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![subcommand, "--listen", listen.as_str()];
        args.extend_from_slice(extra);
        let mut child = command(dir, env, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(banner)) => {
                let addr = banner
                    .split("listening on ")
                    .nth(1)
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("no address in banner: {banner}"))?;
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                Ok(Self {
                    child,
                    addr,
                    banner,
                })
            }
            _ => {
                let output = child.wait_with_output().unwrap();
                Err(format!(
                    "the server did not start (exit {:?}): {}",
                    output.status.code(),
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        }
    }

    /// Sends SIGTERM and waits for the process; returns its exit code and the rest of stderr.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use std::io::Read as _;
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = self.child.wait().unwrap();
        (status.code(), stderr)
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path, &self.addr.to_string()).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// A port nobody listens on right now (the public URL must name the real port, so servers under
/// test cannot use port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(sesame_postgres_tests)]
/// Polls `check` until it is true or `within` has passed; true if it became true. For waiting on
/// another process, which no test clock can move.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let stopwatch = sesame::clock::Stopwatch::start();
    loop {
        if check().await {
            return true;
        }
        if stopwatch.elapsed() >= within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

/// `GET path` with the given Host, one connection, read to the end.
pub async fn http_get(addr: SocketAddr, path: &str, host: &str) -> HttpResponse {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .expect("connect timed out")
    .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

/// Reads a whole `Connection: close` response.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> HttpResponse {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}
