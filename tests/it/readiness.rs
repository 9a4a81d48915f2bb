//! `sesame serve` on PostgreSQL: readiness follows the database through an outage.

#[cfg(sesame_postgres_tests)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_postgresql_through_an_outage_while_liveness_stays_up() {
    use std::time::Duration;

    use crate::support::binary::{Server, eventually};
    use crate::support::relay::Relay;
    use crate::support::{Backend, postgres_url, test_env};

    let target = url::Url::parse(&postgres_url()).unwrap();
    let database = format!(
        "{}:{}",
        target.host_str().unwrap(),
        target.port().unwrap_or(5432)
    );
    let relay = Relay::start(
        tokio::net::lookup_host(&database)
            .await
            .unwrap()
            .next()
            .unwrap(),
    )
    .await;
    let mut through_relay = target.clone();
    through_relay.set_host(Some("127.0.0.1")).unwrap();
    through_relay.set_port(Some(relay.addr.port())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), Backend::Postgres);
    env.insert("SESAME_DATABASE__URL".into(), through_relay.to_string());
    env.insert("SESAME_DATABASE__ACQUIRE_TIMEOUT".into(), "1s".into());
    let server = Server::start(dir.path(), &env, "serve", &[]).unwrap();
    assert!(
        server.banner.contains("database: postgres"),
        "{}",
        server.banner
    );
    assert_eq!(server.get("/").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);

    relay.cut();
    assert!(
        eventually(Duration::from_secs(15), || async {
            server.get("/readyz").await.status == 503
        })
        .await,
        "readyz did not report the outage"
    );
    let probe = server.get("/readyz").await;
    assert_eq!(probe.body, "database unavailable\n");
    assert_eq!(
        server.get("/healthz").await.status,
        200,
        "the process is alive"
    );

    relay.restore();
    assert!(
        eventually(Duration::from_secs(30), || async {
            server.get("/readyz").await.status == 200
        })
        .await,
        "readyz did not recover"
    );
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}
