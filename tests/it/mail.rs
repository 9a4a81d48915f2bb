//! The mail outbox end to end: a queued mail leaves through the configured transport, and a
//! transport outage loses nothing (DESIGN.md §4 "Mail and SMS").

use std::path::{Path, PathBuf};
use std::time::Duration;

use sesame::locale::Locale;
use sesame::mail::{EmailAddress, OutgoingMail, messages};

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends! {
    a_queued_mail_is_written_as_an_eml_file_by_the_sender,
    a_mail_survives_an_unwritable_outbox_and_leaves_after_its_backoff,
    the_maintenance_job_sends_the_outbox,
}

fn reset_mail() -> OutgoingMail {
    let link = url::Url::parse("http://127.0.0.1:8080/password/reset?token=Zq8-Ab_c1").unwrap();
    messages::password_reset(
        Locale::En,
        EmailAddress::parse("emilie.dupre@example.org").unwrap(),
        &link,
        "Université Clermont Auvergne",
        30,
    )
}

/// The `.eml` files in `dir`, sorted by name.
fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Checks that `bytes` is the RFC 5322 form of `mail`: recipient, subject and both parts.
fn assert_is_the_mail(bytes: &[u8], mail: &OutgoingMail) {
    let parsed = mail_parser::MessageParser::default()
        .parse(bytes)
        .expect("an RFC 5322 message");
    let to = parsed.to().and_then(|a| a.first()).expect("a To header");
    assert_eq!(to.address(), Some(mail.to.as_str()));
    assert_eq!(parsed.subject(), Some(mail.subject.as_str()));
    let text = parsed.body_text(0).expect("a text part");
    let html = parsed.body_html(0).expect("an HTML part");
    assert!(
        text.contains("http://127.0.0.1:8080/password/reset?token=Zq8-Ab_c1"),
        "{text}"
    );
    assert!(html.contains("href=\"http://127.0.0.1:8080/password/reset?token=Zq8-Ab_c1\""));
    assert_eq!(text.replace("\r\n", "\n").trim_end(), mail.text.trim_end());
}

async fn a_queued_mail_is_written_as_an_eml_file_by_the_sender(backend: Backend) {
    let app = TestApp::start(backend).await;
    let outbox_dir = app.app.config.outbox_dir().to_path_buf();
    let mail = reset_mail();
    app.app.outbox.queue(&mail).await.unwrap();
    assert_eq!(app.app.outbox.depth().await.unwrap(), 1);
    assert!(
        eml_files(&outbox_dir).is_empty(),
        "nothing leaves before the job runs"
    );

    let report = app.app.mail_sender.run_once().await.unwrap();
    assert_eq!((report.sent, report.deferred, report.given_up), (1, 0, 0));
    assert_eq!(app.app.outbox.depth().await.unwrap(), 0);
    let files = eml_files(&outbox_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_is_the_mail(&std::fs::read(&files[0]).unwrap(), &mail);

    // Sent once, never again.
    let again = app.app.mail_sender.run_once().await.unwrap();
    assert_eq!(again.claimed, 0);
    assert_eq!(eml_files(&outbox_dir).len(), 1);
}

async fn a_mail_survives_an_unwritable_outbox_and_leaves_after_its_backoff(backend: Backend) {
    let app = TestApp::start(backend).await;
    let outbox_dir = app.app.config.outbox_dir().to_path_buf();
    // A file where the directory should be: every write fails, as when a disk is gone.
    std::fs::remove_dir_all(&outbox_dir).unwrap();
    std::fs::write(&outbox_dir, b"not a directory").unwrap();
    let mail = reset_mail();
    app.app.outbox.queue(&mail).await.unwrap();
    app.app.outbox.queue(&mail).await.unwrap();

    let failed = app.app.mail_sender.run_once().await.unwrap();
    assert_eq!((failed.claimed, failed.sent, failed.deferred), (2, 0, 2));
    assert_eq!(app.app.outbox.depth().await.unwrap(), 2, "nothing is lost");
    // The first retry waits a minute.
    app.clock.advance(Duration::from_secs(59));
    assert_eq!(app.app.mail_sender.run_once().await.unwrap().claimed, 0);

    std::fs::remove_file(&outbox_dir).unwrap();
    app.clock.advance(Duration::from_secs(1));
    let retried = app.app.mail_sender.run_once().await.unwrap();
    assert_eq!((retried.claimed, retried.sent), (2, 2));
    assert_eq!(app.app.outbox.depth().await.unwrap(), 0);
    let files = eml_files(&outbox_dir);
    assert_eq!(files.len(), 2);
    assert_is_the_mail(&std::fs::read(&files[0]).unwrap(), &mail);
}

async fn the_maintenance_job_sends_the_outbox(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.app.outbox.queue(&reset_mail()).await.unwrap();
    let maintenance = app.app.maintenance();
    maintenance.send_mail_once().await;
    assert_eq!(app.app.outbox.depth().await.unwrap(), 0);
    assert_eq!(eml_files(app.app.config.outbox_dir()).len(), 1);
    // Sent rows are purged a week later.
    assert_eq!(maintenance.run_once().await.purged_mails, 0);
    app.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    assert_eq!(maintenance.run_once().await.purged_mails, 1);
}

/// A real SMTP server (Python's aiosmtpd, delivering into a Maildir) on loopback.
#[cfg(sesame_smtp_tests)]
mod smtp {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use super::{assert_is_the_mail, reset_mail};
    use crate::on_both_backends;
    use crate::support::binary::free_port;
    use crate::support::{Backend, TestApp};

    on_both_backends! {
        mails_reach_a_real_smtp_server_and_wait_out_its_outage,
    }

    /// The server process; killed when dropped.
    struct SmtpServer {
        child: Child,
    }

    impl SmtpServer {
        async fn start(port: u16, maildir: &Path) -> Self {
            let python = std::env::var("SESAME_TEST_AIOSMTPD")
                .expect("SESAME_TEST_AIOSMTPD was set when the tests were built");
            let child = Command::new(python)
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starts python -m aiosmtpd");
            let server = Self { child };
            // Waiting on another process, which no test clock can move.
            let stopwatch = sesame::clock::Stopwatch::start();
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                assert!(
                    stopwatch.elapsed() < Duration::from_secs(20),
                    "aiosmtpd did not listen on {port}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            server
        }

        fn stop(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for SmtpServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn delivered(maildir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    async fn mails_reach_a_real_smtp_server_and_wait_out_its_outage(backend: Backend) {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let server = SmtpServer::start(port, &maildir).await;
        let url = format!("smtp://127.0.0.1:{port}?tls=none");
        let app = TestApp::start_with(backend, &[("SESAME_MAIL__SMTP_URL", url.as_str())]).await;
        assert_eq!(app.app.mail_sender.transport().name(), "smtp");

        let mail = reset_mail();
        app.app.outbox.queue(&mail).await.unwrap();
        let report = app.app.mail_sender.run_once().await.unwrap();
        assert_eq!((report.sent, report.deferred), (1, 0), "{report:?}");
        let files = delivered(&maildir);
        assert_eq!(files.len(), 1, "{files:?}");
        let bytes = std::fs::read(&files[0]).unwrap();
        assert_is_the_mail(&bytes, &mail);
        let head = String::from_utf8_lossy(&bytes);
        assert!(
            head.contains("X-RcptTo: emilie.dupre@example.org"),
            "{head}"
        );

        // The relay goes down: the mail stays queued, with a later next attempt.
        server.stop();
        app.app.outbox.queue(&mail).await.unwrap();
        let down = app.app.mail_sender.run_once().await.unwrap();
        assert_eq!(
            (down.claimed, down.sent, down.deferred),
            (1, 0, 1),
            "{down:?}"
        );
        assert_eq!(app.app.outbox.depth().await.unwrap(), 1);
        assert_eq!(app.app.mail_sender.run_once().await.unwrap().claimed, 0);

        // It comes back; after the backoff the mail leaves.
        let _server = SmtpServer::start(port, &maildir).await;
        app.clock.advance(Duration::from_secs(60));
        let back = app.app.mail_sender.run_once().await.unwrap();
        assert_eq!((back.claimed, back.sent), (1, 1), "{back:?}");
        assert_eq!(app.app.outbox.depth().await.unwrap(), 0);
        assert_eq!(delivered(&maildir).len(), 2);
    }
}
