//! The real services tests need: a moto S3 server on loopback (installed into a virtualenv under
//! `target/` on first use) and a git binary. Whatever is started here is stopped when its guard
//! drops, on success and on failure alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::shell;

/// moto's version is pinned: it is the S3 server whose conditional-put behaviour was verified
/// (../shared/reference/infra.md §1).
const MOTO: &str = "moto[s3]==5.2.5";
/// The bucket every test shares; tests use their own key prefixes inside it.
pub(crate) const BUCKET: &str = "finn-test";

/// A running moto server; dropping it stops the server.
pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        // moto keeps everything in memory; killing it loses nothing of ours.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv() -> PathBuf {
    shell::workspace_root().join("target").join("moto-venv")
}

/// Installs moto into `target/moto-venv` unless it is already there.
fn install_moto() -> Result<PathBuf> {
    let venv = venv();
    let server = venv.join("bin").join("moto_server");
    if server.exists() {
        return Ok(server);
    }
    eprintln!("installing {MOTO} into {} (first use only)", venv.display());
    shell::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    shell::run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO,
        "flask",
        "flask-cors",
    ]))?;
    Ok(server)
}

/// Starts moto on a free loopback port, waits until it answers and creates [`BUCKET`].
pub(crate) fn start_moto() -> Result<Moto> {
    let server = install_moto()?;
    let port = free_port()?;
    let log = shell::workspace_root().join("target").join("moto.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file))
        .spawn()
        .with_context(|| format!("cannot start {}", server.display()))?;
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until_answering(addr, Duration::from_secs(60), &log)?;
    let status = http(addr, "PUT", &format!("/{BUCKET}"))?;
    if !(200..300).contains(&status) {
        bail!("moto refused to create bucket {BUCKET}: HTTP {status}");
    }
    eprintln!("moto S3 server at {} with bucket {BUCKET}", moto.endpoint);
    Ok(moto)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_until_answering(addr: SocketAddr, limit: Duration, log: &Path) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if http(addr, "GET", "/").is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "moto did not answer on {addr} within {limit:?}; see {}",
        log.display()
    )
}

/// A minimal HTTP/1.1 request (moto does not check signatures); returns the status code.
fn http(addr: SocketAddr, method: &str, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    Ok(status)
}

/// The git tier's tests drive the git CLI; fail early with a clear message if it is missing.
pub(crate) fn check_git() -> Result<()> {
    if !shell::has_program("git", &["--version"]) {
        bail!("git is not on PATH; the git archive tests need it");
    }
    Ok(())
}
