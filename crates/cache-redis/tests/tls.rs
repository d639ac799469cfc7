//! `rediss://` against a real TLS `redis-server`: an untrusted certificate is a `Tls` error, a trusted
//! one works end to end (rustls with the `ring` provider), and `redis://` against a TLS-only server is a
//! clear connection error. One test in its own binary, because trusting the test CA goes through the
//! process environment (`SSL_CERT_FILE`, read by rustls-native-certs).

mod common;

use std::time::{Duration, Instant};

use cache_core::{ErrorKind, SetOptions, Store};
use cache_redis::RedisStore;
use common::config;
use test_redis::RedisServer;

/// The tests' configuration with time for a TLS handshake: loading the system's certificate store
/// and the handshake took over the shared 500 ms connect timeout on a loaded 2-core machine.
fn tls_config(url: &str) -> cache_redis::RedisConfig {
    config(url).with_connect_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn rediss_checks_the_certificate_and_then_works() {
    let server = RedisServer::builder().tls().password("tls-pw").start();
    let url = server.url();
    assert!(url.starts_with("rediss://"));

    // The test CA is not trusted yet: the handshake fails on the certificate.
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");
    let started = Instant::now();
    let e = RedisStore::connect(&tls_config(&url)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    eprintln!("untrusted certificate: {e}");
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(!e.to_string().contains("tls-pw"), "password leaked: {e}");

    // Plain redis:// against the TLS-only port.
    let plain = format!("redis://:tls-pw@{}", server.addr());
    let e = RedisStore::connect(&tls_config(&plain)).await.unwrap_err();
    eprintln!("redis:// against TLS: {e}");
    assert!(
        matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout),
        "{e}"
    );

    // Trust the test CA: everything works over TLS.
    std::env::set_var("SSL_CERT_FILE", server.ca_cert_path().unwrap());
    let s = RedisStore::connect(&tls_config(&url)).await.unwrap();
    assert!(s.target().ends_with("(TLS)"), "{}", s.target());
    s.set("k", b"over tls", SetOptions::new()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"over tls"[..]));
    assert_eq!(server.cli(["GET", "t:k"]), "over tls");
    assert!(s.connectivity().await.reachable);

    // A wrong password over TLS is still an auth error.
    let wrong = url.replace("tls-pw", "nope");
    let e = RedisStore::connect(&tls_config(&wrong)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}
