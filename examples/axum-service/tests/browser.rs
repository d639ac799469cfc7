//! The session pages as a person meets them: headless Chromium, driven through chromedriver (WebDriver)
//! with fantoccini, against the example service on a real `redis-server`, everything on loopback.
//!
//! Log in on the form, see the visit counter survive reloads, check the cookie's attributes (and that
//! page script cannot read it), log out (cookie gone, session key deleted in Redis), then log in from
//! two browser profiles and "log out everywhere" from one: the other is logged out too.
//!
//! Not part of `cargo test` (`test = false` in Cargo.toml): it needs `chromium` and `chromedriver`
//! (Debian: `apt-get install -y chromium chromium-driver`). `cargo xtask browser` checks for them,
//! fails loudly when they are missing, and runs this; `cargo xtask ci` runs that step. The binaries
//! can be overridden with `CHROMIUM_BIN` and `CHROMEDRIVER_BIN`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum_service::{app, AppState};
use cachekit::Config;
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use sessions::SessionToken;
use test_redis::RedisServer;

const COOKIE: &str = "__Host-session";
const PREFIX: &str = "browser";
/// How long a page element may take to appear (page loads are local: this is a hang guard only).
const ELEMENT_WAIT: Duration = Duration::from_secs(20);

fn bin(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A chromedriver process on a loopback port, killed on drop.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start() -> Result<Self> {
        let port = free_port()?;
        let child = Command::new(bin("CHROMEDRIVER_BIN", "chromedriver"))
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start chromedriver (Debian: apt-get install -y chromium-driver)")?;
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Readiness: the port accepts connections (a startup poll, not a timing assumption).
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = driver.child.try_wait()? {
                bail!("chromedriver exited at startup: {status}");
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(driver)
    }

    /// A new browser with its own fresh profile (its own cookie jar).
    async fn browser(&self, profile: &tempfile::TempDir) -> Result<Client> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!("--user-data-dir={}", profile.path().display()),
            // Belt and braces for "loopback only": no host name resolves, so nothing the browser
            // might still try in the background can leave the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_owned(),
        ])
        .collect::<Vec<_>>();
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": which(&bin("CHROMIUM_BIN", "chromium"))?,
                "args": args,
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("chromedriver could not start chromium")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The absolute path of a program on `PATH` (chromedriver wants one).
fn which(program: &str) -> Result<String> {
    if program.contains('/') {
        return Ok(program.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .with_context(|| {
            format!("{program} is not installed (Debian: apt-get install -y chromium)")
        })
}

async fn text(browser: &Client, id: &str) -> Result<String> {
    let found = browser
        .wait()
        .at_most(ELEMENT_WAIT)
        .for_element(Locator::Id(id))
        .await;
    match found {
        Ok(element) => Ok(element.text().await?),
        Err(e) => {
            let url = browser.current_url().await?;
            let source = browser.source().await.unwrap_or_default();
            bail!("no #{id} on {url}: {e}\n{source}")
        }
    }
}

async fn click(browser: &Client, id: &str) -> Result<()> {
    browser
        .wait()
        .at_most(ELEMENT_WAIT)
        .for_element(Locator::Id(id))
        .await?
        .click()
        .await?;
    Ok(())
}

async fn log_in(browser: &Client, base: &str, user: &str) -> Result<()> {
    browser.goto(base).await?;
    browser
        .wait()
        .at_most(ELEMENT_WAIT)
        .for_element(Locator::Id("username"))
        .await?
        .send_keys(user)
        .await?;
    click(browser, "login").await?;
    assert_eq!(text(browser, "user").await?, user);
    Ok(())
}

async fn session_cookie(browser: &Client) -> Result<Option<Cookie<'static>>> {
    Ok(browser
        .get_all_cookies()
        .await?
        .into_iter()
        .find(|c| c.name() == COOKIE))
}

/// Whether Redis holds the session of this cookie value (its key is the token's hash).
fn stored(server: &RedisServer, token: &str) -> Result<bool> {
    let handle = SessionToken::parse(token)?.handle().clone();
    let key = format!("{PREFIX}:session:{handle}");
    Ok(server.cli(["EXISTS", key.as_str()]).trim() == "1")
}

async fn on_login_page(browser: &Client) -> Result<bool> {
    Ok(browser
        .wait()
        .at_most(ELEMENT_WAIT)
        .for_element(Locator::Id("username"))
        .await
        .is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_a_real_browser() -> Result<()> {
    let started = Instant::now();
    let redis = RedisServer::start();
    let config = Config::builder()
        .redis_url(redis.url())
        .key_prefix(PREFIX)
        .build()?;
    let state = AppState::new(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });

    let driver = Chromedriver::start()?;
    let (profile_a, profile_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let a = driver.browser(&profile_a).await?;
    let result = scenario(&a, &driver, &profile_b, &redis, &base).await;
    // Quit the browser whatever happened, so that no chromium outlives the test.
    let _ = a.close().await;
    server.abort();
    result?;
    println!(
        "browser scenario took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn scenario(
    a: &Client,
    driver: &Chromedriver,
    profile_b: &tempfile::TempDir,
    redis: &RedisServer,
    base: &str,
) -> Result<()> {
    // Not logged in: the login form.
    a.goto(base).await?;
    assert!(on_login_page(a).await?);
    assert!(session_cookie(a).await?.is_none());

    // Log in; the visit counter survives reloads.
    log_in(a, base, "ada").await?;
    assert_eq!(text(a, "visits").await?, "1");
    a.refresh().await?;
    assert_eq!(text(a, "visits").await?, "2");
    a.refresh().await?;
    assert_eq!(text(a, "visits").await?, "3");

    // The cookie as the browser stored it.
    let cookie = session_cookie(a)
        .await?
        .context("no session cookie after login")?;
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.secure(), Some(true), "{cookie:?}");
    assert_eq!(
        cookie.same_site(),
        Some(cookie::SameSite::Lax),
        "{cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    let token = cookie.value().to_owned();
    assert!(
        stored(redis, &token)?,
        "the session is in Redis under its hash"
    );
    // HttpOnly: page script does not see it.
    let visible = a.execute("return document.cookie;", vec![]).await?;
    let visible = visible.as_str().unwrap_or_default();
    assert!(
        !visible.contains(COOKIE) && !visible.contains(&token),
        "{visible:?}"
    );

    // Log out: cookie gone, session deleted in Redis, back to the form.
    click(a, "logout").await?;
    assert!(on_login_page(a).await?);
    assert!(session_cookie(a).await?.is_none(), "the cookie is cleared");
    assert!(!stored(redis, &token)?, "the session key is deleted");

    // Two browsers, one user; "log out everywhere" from one ends the other.
    log_in(a, base, "ada").await?;
    let b = driver.browser(profile_b).await?;
    let result = async {
        log_in(&b, base, "ada").await?;
        let token_b = session_cookie(&b)
            .await?
            .context("no cookie in the second browser")?
            .value()
            .to_owned();
        a.refresh().await?;
        assert_eq!(text(a, "devices").await?, "2");
        let token_a = session_cookie(a)
            .await?
            .context("cookie")?
            .value()
            .to_owned();
        assert_ne!(token_a, token_b);

        click(a, "logout-everywhere").await?;
        assert!(on_login_page(a).await?);
        assert!(session_cookie(a).await?.is_none());
        assert!(!stored(redis, &token_a)? && !stored(redis, &token_b)?);

        b.refresh().await?;
        assert!(on_login_page(&b).await?, "the other browser is logged out");
        assert!(
            session_cookie(&b).await?.is_none(),
            "its dead cookie is cleared"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = b.close().await;
    result
}
