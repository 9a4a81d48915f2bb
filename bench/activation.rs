//! The start of the academic year: 50,000 generated students imported through `sesame import`,
//! then activated end to end at `/activate` by the load driver, the codes read from the demo's
//! file outbox.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sesame::clock::Stopwatch;
use tokio::sync::{Mutex, oneshot};

/// A generated student still to activate.
#[derive(Debug, Clone)]
pub struct Student {
    pub dossier_number: String,
    pub birth_date: String,
}

/// Writes `n` students made by `gen_people.py` to `path` and returns them. Their dossier numbers
/// are moved by 10,000,000 so that they never meet the demo's own sample students (made by the
/// same generator, numbered from 22000000).
pub fn generate(tool: &Path, n: usize, path: &Path) -> Vec<Student> {
    let out = Command::new("python3")
        .arg(tool)
        .args(["students", &n.to_string(), "--seed", "2026"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 CSV");
    let mut lines = text.lines();
    let mut csv = format!("{}\n", lines.next().expect("a header"));
    let mut students = Vec::new();
    for line in lines {
        let (dossier, rest) = line.split_once(',').expect("a CSV row");
        let moved = dossier.parse::<u64>().expect("a dossier number") + 10_000_000;
        csv.push_str(&format!("{moved:08},{rest}\n"));
        // dossier_number,last_name,first_name,birth_date,… (names hold no commas in this feed).
        let birth_date = rest.split(',').nth(2).expect("a birth date").to_string();
        students.push(Student {
            dossier_number: format!("{moved:08}"),
            birth_date,
        });
    }
    std::fs::write(path, csv).unwrap();
    students
}

/// The codes mailed to the outbox, by recipient: a reader task polls the directory and hands each
/// code to the virtual user waiting for it.
#[derive(Clone, Default)]
pub struct Outbox {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<String>>>>,
    arrived: Arc<Mutex<HashMap<String, String>>>,
}

impl Outbox {
    /// Starts reading `dir` every 10 ms while a virtual user waits for a code. Each mail read is
    /// removed, so that the directory stays small: a poll over the thousands of mails of a full
    /// run would take the load driver's CPU from the flows measured meanwhile.
    pub fn watch(dir: PathBuf) -> Self {
        let outbox = Outbox::default();
        let reader = outbox.clone();
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if reader.waiting.lock().await.is_empty() {
                    continue;
                }
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().to_string();
                        if !name.ends_with(".eml") || seen.contains(&name) {
                            continue;
                        }
                        let Ok(text) = std::fs::read_to_string(entry.path()) else {
                            continue;
                        };
                        let _ = std::fs::remove_file(entry.path());
                        seen.insert(name);
                        if let (Some(to), Some(code)) = (recipient(&text), code(&text)) {
                            match reader.waiting.lock().await.remove(&to) {
                                Some(sender) => {
                                    let _ = sender.send(code);
                                }
                                None => {
                                    reader.arrived.lock().await.insert(to, code);
                                }
                            }
                        }
                    }
                }
            }
        });
        outbox
    }

    /// The code mailed to `to`, waiting at most 30 s.
    pub async fn code_for(&self, to: &str) -> Option<String> {
        let receiver = {
            let mut waiting = self.waiting.lock().await;
            if let Some(code) = self.arrived.lock().await.remove(to) {
                return Some(code);
            }
            let (sender, receiver) = oneshot::channel();
            waiting.insert(to.to_string(), sender);
            receiver
        };
        tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .ok()?
            .ok()
    }
}

fn recipient(mail: &str) -> Option<String> {
    let line = mail.lines().find(|l| l.starts_with("To: "))?;
    let address = line.trim_start_matches("To: ").trim();
    Some(
        address
            .rsplit_once('<')
            .map(|(_, a)| a.trim_end_matches('>'))
            .unwrap_or(address)
            .to_string(),
    )
}

/// The six-digit code of the plain-text part (quoted-printable or base64).
fn code(mail: &str) -> Option<String> {
    use base64::Engine as _;
    let start = mail.find("Content-Type: text/plain")?;
    let part = &mail[start..];
    let (headers, body) = part.split_once("\r\n\r\n")?;
    let body = body.split("\r\n--").next()?;
    let text = if headers.contains("base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(joined)
                .ok()?,
        )
        .ok()?
    } else {
        body.replace("=\r\n", "")
    };
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(5)).find_map(|i| {
        let run = &bytes[i..i + 6];
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + 6).copied();
        (run.iter().all(u8::is_ascii_digit)
            && !before.is_some_and(|b| b.is_ascii_digit())
            && !after.is_some_and(|b| b.is_ascii_digit()))
        .then(|| String::from_utf8_lossy(run).to_string())
    })
}

/// A browser with a cookie jar, for the activation's steps.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            if let Some((name, value)) = value.split(';').next().and_then(|p| p.split_once('=')) {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    /// GETs `path` (for its CSRF cookie) then POSTs `fields` with the token; status, location
    /// and body.
    async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Option<(u16, String, String)> {
        let url = format!("{}{path}", self.base);
        let page = self
            .http
            .get(&url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .ok()?;
        self.keep(&page);
        let _ = page.bytes().await;
        let csrf = self.cookies.get("sesame-csrf").cloned().unwrap_or_default();
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &csrf));
        let answer = self
            .http
            .post(&url)
            .header("cookie", self.cookie_header())
            .form(&form)
            .send()
            .await
            .ok()?;
        self.keep(&answer);
        let status = answer.status().as_u16();
        let location = answer
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = answer.text().await.unwrap_or_default();
        Some((status, location, body))
    }
}

/// The password every activation sets: strong for zxcvbn and free of the student's own words
/// (name, dossier, birth date), which the policy refuses.
pub const PASSWORD: &str = "cheval agrafe pile correcte";

/// One activation, from the dossier pair to the password: the time it took and the new
/// identifier, read from the last page (`None`: the activation failed).
pub async fn activate(
    http: reqwest::Client,
    base: &str,
    student: &Student,
    outbox: &Outbox,
) -> (Duration, Option<String>) {
    let watch = Stopwatch::start();
    let mut browser = Browser {
        http,
        base: base.to_string(),
        cookies: HashMap::new(),
    };
    let email = format!("bench.{}@example.org", student.dossier_number);
    let outcome: Result<String, String> = async {
        let step = |name: &str, answer: Option<(u16, String, String)>| {
            answer.ok_or_else(|| format!("{name}: no answer"))
        };
        let (status, location, _) = step(
            "/activate",
            browser
                .form(
                    "/activate",
                    &[
                        ("dossier_number", &student.dossier_number),
                        ("birth_date", &student.birth_date),
                    ],
                )
                .await,
        )?;
        if status != 303 || location != "/activate/contact" {
            return Err(format!("/activate answered {status} {location}"));
        }
        let (status, location, _) = step(
            "/activate/contact",
            browser
                .form(
                    "/activate/contact",
                    &[("email", &email), ("phone", "06 12 34 56 78")],
                )
                .await,
        )?;
        if status != 303 {
            return Err(format!("/activate/contact answered {status} {location}"));
        }
        let code = outbox
            .code_for(&email)
            .await
            .ok_or_else(|| format!("no code mailed to {email} within 30 s"))?;
        let (status, location, _) = step(
            "/activate/code",
            browser.form("/activate/code", &[("code", &code)]).await,
        )?;
        if status != 303 || location != "/activate/password" {
            return Err(format!("/activate/code answered {status} {location}"));
        }
        let password = PASSWORD;
        let (status, location, body) = step(
            "/activate/password",
            browser
                .form(
                    "/activate/password",
                    &[
                        ("new_password", password),
                        ("new_password_confirm", password),
                    ],
                )
                .await,
        )?;
        // The last page shows the new identifier; a refused password shows the form again.
        match identifier(&body) {
            Some(login) if status == 200 => Ok(login),
            _ => Err(format!(
                "/activate/password answered {status} {location} without the new identifier"
            )),
        }
    }
    .await;
    static REPORTED: std::sync::Once = std::sync::Once::new();
    if let Err(reason) = &outcome {
        REPORTED.call_once(|| eprintln!("first failed activation: {reason}"));
    }
    (watch.elapsed(), outcome.ok())
}

/// The identifier the activation's last page shows (`<strong id="identifier">…</strong>`).
fn identifier(page: &str) -> Option<String> {
    let start = page.find("id=\"identifier\">")? + "id=\"identifier\">".len();
    let end = page[start..].find('<')? + start;
    let login = page[start..end].trim();
    (!login.is_empty()).then(|| login.to_string())
}
