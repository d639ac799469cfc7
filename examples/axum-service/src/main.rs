//! Runs the example service: `cargo run -p axum-service` (set `REDIS_URL` for Redis, `ADDR` to choose
//! the listen address, default `127.0.0.1:3000`, and `COOKIE_SECURE=false` only to serve the pages
//! over plain HTTP on a host other than localhost).

use anyhow::Context;
use axum_service::{app, AppState};
use cachekit::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = Config::from_env()?;
    let mut state = AppState::new(&config).await?;
    if std::env::var("COOKIE_SECURE").is_ok_and(|v| v.eq_ignore_ascii_case("false")) {
        state = state.with_insecure_cookies();
    }
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!(
        "listening on http://{addr} ({} backend); open it in a browser to log in",
        config.backend.name()
    );
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
