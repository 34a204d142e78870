//! Azurite, Microsoft's Azure Storage emulator, as a throwaway Blob service
//! on loopback with one container: what the agent's `az://` code talks to in
//! tests. Azurite checks Shared Key signatures, so a wrong key is refused as
//! Azure would refuse it. The process is killed when the value is dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::testbed::{AZURITE_BIN, azurite_prefix};

/// The emulator's well-known account (the same in every Azurite).
pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (public, documented by Microsoft).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-10-04";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct AzuriteServer {
    port: u16,
    container: String,
    _data: tempfile::TempDir,
    _child: Child,
}

impl AzuriteServer {
    /// Starts Azurite's Blob service on a free port and creates the
    /// container `backups`.
    pub async fn start() -> Result<AzuriteServer> {
        let bin: PathBuf = azurite_prefix()?.join(AZURITE_BIN);
        let data = tempfile::Builder::new()
            .prefix("innoxide-azurite-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data.path())
            .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("Azurite did not listen on port {port} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let server = AzuriteServer {
            port,
            container: "backups".into(),
            _data: data,
            _child: child,
        };
        server.create_container().await?;
        Ok(server)
    }

    /// The account's Blob endpoint (path-style, as the emulator serves it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    /// `az://<container>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{}/{prefix}", self.container)
    }

    /// Create Container, signed with the account key (Shared Key).
    async fn create_container(&self) -> Result<()> {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let path = format!("/{ACCOUNT}/{}", self.container);
        // Verb, eleven standard headers (all empty; an empty body has an
        // empty Content-Length), the x-ms-* headers, the resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{ACCOUNT}{path}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY)?;
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        let signature = base64::engine::general_purpose::STANDARD
            .encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()));
        let request = format!(
            "PUT {path}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {API_VERSION}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            port = self.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        let status = answer.lines().next().unwrap_or_default();
        if !status.contains(" 201 ") {
            bail!(
                "Azurite refused to create container {}: {answer}",
                self.container
            );
        }
        Ok(())
    }
}
