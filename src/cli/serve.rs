//! `sesame serve` and `sesame demo`.

use crate::app::App;
use crate::clock::Stopwatch;
use crate::config::Config;
use crate::web::server::{TlsFiles, serve, shutdown_signal};

pub async fn run(config: Config, demo: bool) -> anyhow::Result<()> {
    let started = Stopwatch::start();
    let config = if demo {
        super::demo::configure(config)
    } else {
        config
    };
    let app = App::start(config).await?;
    if demo {
        super::demo::seed(&app).await?;
    }
    let config = app.config.clone();
    // The first pass runs at once (promotions due while the node was down), then periodically;
    // it also drops the throttle counters of idle addresses, keeping their memory bounded.
    let jobs = app.maintenance().spawn(config.maintenance.interval.0);
    let router = app.router(demo);
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let public_url = config.public_url().to_string();
    let backend = app.store.backend();
    let result = serve(
        router,
        config.server.listen,
        tls,
        config.server.shutdown_grace.0,
        |addr| {
            let mode = if demo { "demo" } else { "serve" };
            let mut banner = format!(
                "Sésame ({mode}) is serving {public_url} — listening on {addr}, database: {backend}, \
                 ready in {} ms\n",
                started.elapsed().as_millis()
            );
            if demo {
                banner.push_str(&super::demo::welcome(&app));
            }
            // One write: scripts that wait for "listening on" then read the accounts see both.
            print!("{banner}");
            tracing::info!(%addr, %public_url, backend, demo, "listening");
        },
        shutdown_signal(),
    )
    .await;
    jobs.abort();
    result?;
    println!("Sésame stopped.");
    Ok(())
}
