//! The real `sesame` binary: serving, the demo, admin commands on the same database, and
//! configuration errors.

use std::collections::BTreeMap;

use crate::support::binary::{Server, run, stderr, stdout};
use crate::support::{Backend, test_env};

fn env_without_data_dir(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut env = test_env(dir, Backend::Sqlite);
    env.remove("SESAME_DATA_DIR");
    env
}

#[tokio::test]
async fn the_demo_serves_pages_and_probes_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path(), Backend::Sqlite);
    let server = Server::start(dir.path(), &env, "demo", &[]).unwrap();
    assert!(
        server
            .banner
            .contains("Sésame (demo) is serving http://127.0.0.1:"),
        "{}",
        server.banner
    );
    assert!(server.banner.contains("database: sqlite"));

    let home = server.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Démonstration"));
    assert!(home.header("content-security-policy").is_some());
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);
    let missing = server.get("/missing").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(
        missing
            .header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    // The demo's own OIDC client starts a code flow with PKCE against this Sésame.
    let demo_oidc = server.get("/demo/oidc").await;
    assert_eq!(demo_oidc.status, 303);
    let to = demo_oidc.header("location").unwrap();
    assert!(
        to.starts_with("/oidc/authorize?response_type=code&client_id=demo-oidc"),
        "{to}"
    );
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    let discovery = server.get("/.well-known/openid-configuration").await;
    assert_eq!(discovery.status, 200);
    assert!(discovery.body.contains("\"issuer\":\"http://127.0.0.1:"));

    let (code, _) = server.terminate();
    assert_eq!(code, Some(0), "a clean exit on SIGTERM");
}

#[tokio::test]
async fn admin_commands_act_on_the_servers_database_through_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_without_data_dir(dir.path());
    let data = dir.path().join("elsewhere");
    let data = data.to_str().unwrap();

    let before = run(
        dir.path(),
        &env,
        &["--data-dir", data, "keys", "list", "--json"],
    );
    assert!(before.status.success(), "{}", stderr(&before));
    assert_eq!(stdout(&before).trim(), "[]");

    let server = Server::start(dir.path(), &env, "serve", &["--data-dir", data]).unwrap();
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
    assert!(dir.path().join("elsewhere/sesame.db").exists());

    let listed = run(
        dir.path(),
        &env,
        &["--data-dir", data, "keys", "list", "--json"],
    );
    let keys: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k["state"] == "current"));

    let rotated = run(
        dir.path(),
        &env,
        &[
            "--data-dir",
            data,
            "keys",
            "rotate",
            "--algorithm",
            "ES256",
            "--json",
        ],
    );
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let created: serde_json::Value = serde_json::from_str(&stdout(&rotated)).unwrap();
    assert_eq!(created[0]["algorithm"], "ES256");
    assert_eq!(created[0]["state"], "next");
    assert!(created[0]["signs_from"].is_string());

    let table = run(dir.path(), &env, &["--data-dir", data, "keys", "list"]);
    let text = stdout(&table);
    assert!(text.starts_with("KID"), "{text}");
    assert_eq!(text.lines().count(), 5, "header and four keys: {text}");
    assert_eq!(text.matches(" next ").count(), 1);

    // The server restarts on the same keys.
    let server = Server::start(dir.path(), &env, "serve", &["--data-dir", data]).unwrap();
    assert_eq!(server.get("/readyz").await.status, 200);
    server.terminate();
    let after = run(
        dir.path(),
        &env,
        &["--data-dir", data, "keys", "list", "--json"],
    );
    let after: serde_json::Value = serde_json::from_str(&stdout(&after)).unwrap();
    assert_eq!(after.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_bad_rotation_request_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path(), Backend::Sqlite);
    let first = run(
        dir.path(),
        &env,
        &["keys", "rotate", "--algorithm", "HS256"],
    );
    assert_eq!(first.status.code(), Some(1));
    assert!(stderr(&first).contains("unknown signing algorithm `HS256`"));
    let listed = run(dir.path(), &env, &["keys", "list", "--json"]);
    assert_eq!(stdout(&listed).trim(), "[]");
}

#[test]
fn check_config_reports_every_problem_at_once_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlistn = \"127.0.0.1:1\"\nrequest_timeout = \"soon\"\npublic_url = \"not a url\"\n\
         [database]\nurl = \"mysql://db/sesame\"\n",
    )
    .unwrap();
    let env = test_env(dir.path(), Backend::Sqlite);
    let file = file.to_str().unwrap();

    let output = run(dir.path(), &env, &["--config", file, "check-config"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("4 problem(s)"), "{text}");
    for key in [
        "server.listn",
        "server.request_timeout",
        "server.public_url",
        "database.url",
    ] {
        assert!(text.contains(key), "{key} missing: {text}");
    }

    let json = run(
        dir.path(),
        &env,
        &["--config", file, "check-config", "--json"],
    );
    assert_eq!(json.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 4);

    // Serving with it fails the same way, before touching anything.
    let serve = run(dir.path(), &env, &["--config", file, "serve"]);
    assert_eq!(serve.status.code(), Some(2));
    assert!(stderr(&serve).contains("server.listn"));
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), Backend::Sqlite);
    env.insert(
        "SESAME_DATABASE__URL".into(),
        "postgres://sesame:s3cr3t-password@db.uca.fr/sesame".into(),
    );
    let output = run(dir.path(), &env, &["check-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains("s3cr3t-password"), "{text}");
    assert!(
        text.contains("postgres://sesame:********@db.uca.fr/sesame"),
        "{text}"
    );
    assert!(text.contains("listen = \"127.0.0.1:8080\""));

    let json = run(dir.path(), &env, &["check-config", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(
        report["config"]["server"]["public_url"],
        "http://127.0.0.1:8080/"
    );
    assert!(!stdout(&json).contains("s3cr3t-password"));
}

#[tokio::test]
async fn without_its_master_key_the_server_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path(), Backend::Sqlite);
    let server = Server::start(dir.path(), &env, "serve", &[]).unwrap();
    server.terminate();
    let key = dir.path().join("keys/master.key");
    std::fs::remove_file(&key).unwrap();

    let output = run(dir.path(), &env, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("master key file"), "{text}");
    assert!(text.contains("is missing"), "{text}");
    assert!(!key.exists(), "no key was silently regenerated");
}

#[test]
fn migrate_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path(), Backend::Sqlite);
    for _ in 0..2 {
        let output = run(dir.path(), &env, &["migrate"]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output).trim(), "The sqlite database is up to date.");
    }
    let json = run(dir.path(), &env, &["migrate", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["migrated"], true);
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path(), Backend::Sqlite);
    for command in [
        vec![],
        vec!["serve"],
        vec!["demo"],
        vec!["migrate"],
        vec!["check-config"],
        vec!["keys"],
        vec!["keys", "list"],
        vec!["keys", "rotate"],
        vec!["admin", "show"],
        vec!["admin", "unlock"],
        vec!["admin", "disable"],
        vec!["admin", "enable"],
        vec!["admin", "revoke-sessions"],
        vec!["admin", "sessions"],
        vec!["admin", "audit"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let output = run(dir.path(), &env, &args);
        assert!(output.status.success(), "{command:?}");
        let text = stdout(&output);
        assert!(text.contains("Usage: sesame"), "{command:?}: {text}");
        assert!(
            text.contains("--config"),
            "global options shown for {command:?}"
        );
    }
    let json_flag = run(dir.path(), &env, &["keys", "list", "--help"]);
    assert!(stdout(&json_flag).contains("--json"));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), Backend::Sqlite);
    // At the default level, no line per request: the access log is DEBUG (ADR 0008, amended).
    env.insert("SESAME_LOG__LEVEL".into(), "info".into());
    let server = Server::start(dir.path(), &env, "serve", &["--log-format", "json"]).unwrap();
    assert_eq!(server.get("/healthz").await.status, 200);
    let (_, logs) = server.terminate();
    assert!(!logs.contains("/healthz"), "{logs}");
    // With it asked for, one JSON line per request, with its span.
    env.insert("SESAME_LOG__LEVEL".into(), "info,tower_http=debug".into());
    let server = Server::start(dir.path(), &env, "serve", &["--log-format", "json"]).unwrap();
    assert_eq!(
        server.get("/healthz?ticket=ST-secret-value").await.status,
        200
    );
    let (_, logs) = server.terminate();
    let mut saw_request = false;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["level"].is_string());
        if entry["span"]["path"] == "/healthz" {
            saw_request = true;
            assert!(
                entry["span"]["request_id"]
                    .as_str()
                    .is_some_and(|id| id.len() == 32)
            );
        }
    }
    assert!(saw_request, "{logs}");
    assert!(
        !logs.contains("ST-secret-value"),
        "query strings are never logged"
    );
}

/// The helpdesk commands on the database of a running Sésame (here the in-process one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helpdesk_commands_explain_and_act_on_an_account() {
    use crate::support::TestApp;
    use crate::support::browser::Browser;

    let app = TestApp::start_with(
        Backend::Sqlite,
        &[
            ("SESAME_LOCKOUT__PERMANENT_LOCKOUT_AFTER", "3"),
            ("SESAME_LOCKOUT__MAX_LOGIN_FAILURES", "100"),
        ],
    )
    .await;
    // The binary runs on the system clock: so does this test.
    {
        use sesame::clock::Clock as _;
        app.clock.set(sesame::clock::SystemClock.now());
    }
    let password = "cheval agrafe pile correcte";
    app.active_student(password).await;
    let mut browser = Browser::new(&app);
    browser.get("/login").await;
    for _ in 0..3 {
        browser
            .post(
                "/login",
                &[("username", "emilie.dupre"), ("password", "pas celui-ci")],
            )
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        run(dir.path(), &app.env, &all)
    };

    let shown = admin(&["show", "Emilie.Dupre@etu.uca.fr"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    for needle in [
        "emilie.dupre (Émilie Dupré)",
        "state:         active",
        "lock:          HARD: 3 consecutive wrong passwords",
        "factors:       password",
        "contact:       email e*****@example.org",
        "sessions:      0",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains("emilie@example.org"), "contacts are masked");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&admin(&["show", "emilie.dupre", "--json"]))).unwrap();
    assert_eq!(json["lock"]["state"], "hard");
    assert_eq!(json["lock"]["failures"], 3);

    let unlocked = admin(&[
        "unlock",
        "emilie.dupre",
        "--reason",
        "appel au guichet",
        "--json",
    ]);
    assert!(unlocked.status.success(), "{}", stderr(&unlocked));
    let unlocked: serde_json::Value = serde_json::from_str(&stdout(&unlocked)).unwrap();
    assert_eq!(unlocked["unlocked"], true);
    let audit = admin(&["audit", "--login", "emilie.dupre", "--json", "--limit", "5"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&stdout(&audit)).unwrap();
    assert_eq!(events[0]["action"], "login.unlocked");
    assert_eq!(events[0]["details"]["reason"], "appel au guichet");
    assert!(
        events[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("operator:")
    );
    assert!(events.len() <= 5);

    let signed_in = browser
        .post(
            "/login",
            &[("username", "emilie.dupre"), ("password", password)],
        )
        .await;
    assert_eq!(signed_in.status, axum::http::StatusCode::SEE_OTHER);
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&admin(&["sessions", "emilie.dupre", "--json"]))).unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["factors"], serde_json::json!(["pwd"]));
    let revoked = admin(&[
        "revoke-sessions",
        "emilie.dupre",
        "--reason",
        "téléphone volé",
    ]);
    assert!(stdout(&revoked).contains("1 session(s) of emilie.dupre ended."));
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("name=\"password\"")
    );

    let disabled = admin(&["disable", "emilie.dupre", "--reason", "compte compromis"]);
    assert!(disabled.status.success());
    assert!(
        stdout(&admin(&["show", "emilie.dupre"]))
            .contains("state:         disabled (compte compromis)")
    );
    let enabled = admin(&["enable", "emilie.dupre", "--reason", "vérifié", "--json"]);
    let enabled: serde_json::Value = serde_json::from_str(&stdout(&enabled)).unwrap();
    assert_eq!(enabled["state"], "active");

    // Bad arguments: a clear message, a non-zero exit, nothing changed.
    let unknown = admin(&["show", "nobody.here"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no account has the login `nobody.here`"));
    let no_reason = admin(&["unlock", "emilie.dupre"]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(stderr(&no_reason).contains("--reason"));
    let blank_reason = admin(&["disable", "emilie.dupre", "--reason", "  "]);
    assert!(!blank_reason.status.success());
    assert!(stderr(&blank_reason).contains("reason"));
    let bad_since = admin(&["audit", "--since", "whenever"]);
    assert!(!bad_since.status.success());
    assert!(stderr(&bad_since).contains("--since `whenever`"));
    let bad_limit = admin(&["audit", "--limit", "0"]);
    assert!(!bad_limit.status.success());
    assert_eq!(
        app.helpdesk().show("emilie.dupre").await.unwrap().state,
        "active",
        "the refused commands changed nothing"
    );
}

#[test]
fn services_are_added_listed_shown_and_removed_and_dangerous_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), Backend::Sqlite);
    env.insert(
        "SESAME_CONFIG".into(),
        dir.path().join("sesame.toml").display().to_string(),
    );
    std::fs::write(
        dir.path().join("sesame.toml"),
        "[cas]\n[[cas.services]]\nid = \"ent\"\nname = \"ENT\"\npattern = \"https://ent.uca.fr/\"\nmatch = \"prefix\"\n",
    )
    .unwrap();
    let service = |args: &[&str]| {
        let mut all = vec!["service"];
        all.extend_from_slice(args);
        run(dir.path(), &env, &all)
    };
    let added = service(&[
        "add",
        "moodle",
        "--name",
        "Moodle",
        "--url",
        "https://moodle.uca.fr/",
        "--attribute",
        "mail,displayName",
        "--attribute",
        "supannEtuId",
        "--order",
        "5",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let listed = stdout(&service(&["list"]));
    assert!(
        listed.contains("ent") && listed.contains("config"),
        "{listed}"
    );
    assert!(
        listed.contains("moodle") && listed.contains("database"),
        "{listed}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&service(&["show", "moodle", "--json"]))).unwrap();
    assert_eq!(
        shown["attributes"],
        serde_json::json!(["mail", "displayName", "supannEtuId"])
    );
    assert_eq!(shown["match"], "prefix");
    assert_eq!(shown["order"], 5);

    for (args, message) in [
        (
            vec![
                "add",
                "evil",
                "--name",
                "E",
                "--url",
                "https://ent.uca.fr/.*",
                "--match",
                "regex",
            ],
            "escape the dots",
        ),
        (
            vec![
                "add",
                "evil",
                "--name",
                "E",
                "--url",
                r"https://ent\.uca\.fr/notes/.*",
                "--match",
                "regex",
            ],
            "ends with `.*`",
        ),
        (
            vec!["add", "evil", "--name", "E", "--url", "http://app.uca.fr/"],
            "must be https",
        ),
        (
            vec!["add", "moodle", "--name", "M", "--url", "https://m.uca.fr/"],
            "exists already",
        ),
        (
            vec!["add", "ent", "--name", "M", "--url", "https://m.uca.fr/"],
            "configuration file",
        ),
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--url",
                "https://x.uca.fr/",
                "--attribute",
                "password",
            ],
            "unknown attribute",
        ),
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--url",
                "https://x.uca.fr/",
                "--match",
                "glob",
            ],
            "unknown match mode",
        ),
        (vec!["remove", "ent"], "configuration file"),
        (vec!["remove", "nothing"], "no CAS service"),
        (vec!["show", "nothing"], "no CAS service"),
    ] {
        let refused = service(&args);
        assert!(!refused.status.success(), "{args:?}");
        assert!(
            stderr(&refused).contains(message),
            "{args:?}: {}",
            stderr(&refused)
        );
    }
    let removed = service(&["remove", "moodle", "--json"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!stdout(&service(&["list"])).contains("moodle"));
    let audit = run(dir.path(), &env, &["admin", "audit", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&stdout(&audit)).unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"cas.service_added") && actions.contains(&"cas.service_removed"));
}

#[test]
fn oidc_clients_are_added_with_a_secret_shown_once_listed_rotated_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), Backend::Sqlite);
    env.insert(
        "SESAME_CONFIG".into(),
        dir.path().join("sesame.toml").display().to_string(),
    );
    std::fs::write(
        dir.path().join("sesame.toml"),
        "[oidc]\n[[oidc.clients]]\nid = \"ent\"\nname = \"ENT\"\nredirect_uris = [\"https://ent.uca.fr/cb\"]\npublic = true\nauth_method = \"none\"\n",
    )
    .unwrap();
    let client = |args: &[&str]| {
        let mut all = vec!["client"];
        all.extend_from_slice(args);
        run(dir.path(), &env, &all)
    };
    let added = client(&[
        "add",
        "moodle",
        "--name",
        "Moodle",
        "--redirect-uri",
        "https://moodle.uca.fr/auth/oidc/",
        "--backchannel-logout-uri",
        "https://moodle.uca.fr/auth/oidc/logout.php",
        "--scope",
        "profile",
        "--json",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let added: serde_json::Value = serde_json::from_str(&stdout(&added)).unwrap();
    let secret = added["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43, "256 bits");
    assert_eq!(
        added["client"]["scopes"],
        serde_json::json!(["openid", "profile"])
    );
    assert!(
        added["client"].get("secret_sha256").is_none(),
        "never shown"
    );
    let shown = stdout(&client(&["show", "moodle", "--json"]));
    assert!(
        !shown.contains(&secret) && !shown.contains("secret_sha256"),
        "{shown}"
    );
    let listed = stdout(&client(&["list"]));
    assert!(
        listed.contains("ent") && listed.contains("config"),
        "{listed}"
    );
    assert!(
        listed.contains("moodle") && listed.contains("database"),
        "{listed}"
    );
    // Only the digest is stored.
    let db = std::fs::read(dir.path().join("data/sesame.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains(&secret));
    let rotated = client(&["rotate-secret", "moodle", "--json"]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let rotated: serde_json::Value = serde_json::from_str(&stdout(&rotated)).unwrap();
    assert_ne!(rotated["client_secret"].as_str().unwrap(), secret);
    let public = client(&[
        "add",
        "spa",
        "--name",
        "SPA",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1:5173/cb",
    ]);
    assert!(public.status.success(), "{}", stderr(&public));
    assert!(
        !stdout(&public).contains("client secret"),
        "a public client has none"
    );
    for (args, message) in [
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--redirect-uri",
                "http://app.uca.fr/cb",
            ],
            "must be https",
        ),
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--redirect-uri",
                "https://app.uca.fr/cb#f",
            ],
            "fragment",
        ),
        (vec!["add", "x", "--name", "X"], "needs a redirect URI"),
        (
            vec![
                "add",
                "moodle",
                "--name",
                "M",
                "--redirect-uri",
                "https://m.uca.fr/",
            ],
            "already exists",
        ),
        (
            vec![
                "add",
                "ent",
                "--name",
                "M",
                "--redirect-uri",
                "https://m.uca.fr/",
            ],
            "configuration",
        ),
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.uca.fr/",
                "--scope",
                "offline",
            ],
            "unknown scope",
        ),
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.uca.fr/",
                "--signing-alg",
                "HS256",
            ],
            "unknown signing algorithm",
        ),
        (
            vec![
                "add",
                "x",
                "--name",
                "X",
                "--redirect-uri",
                "https://x.uca.fr/",
                "--public",
                "--grant",
                "client_credentials",
            ],
            "client_credentials",
        ),
        (vec!["rotate-secret", "spa"], "public"),
        (vec!["remove", "ent"], "configuration file"),
        (vec!["remove", "nothing"], "no OIDC client"),
    ] {
        let refused = client(&args);
        assert!(!refused.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&refused).contains(message),
            "{args:?}: {}",
            stderr(&refused)
        );
    }
    assert!(
        !stdout(&client(&["list"])).contains(" x "),
        "nothing half-made"
    );
    let removed = client(&["remove", "moodle"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!stdout(&client(&["list"])).contains("moodle"));
}
