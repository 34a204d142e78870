//! Connection options, from flags and `--defaults-file`, and connecting.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder};

use super::{Error, Result};
use crate::mycnf::OptionFile;
use crate::secret::Secret;

/// Where and as whom to connect. A socket wins over TCP when both are given,
/// as with the mysql client.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl ConnectOptions {
    /// Fills what the flags left open from an option file's `[client]`,
    /// `[xtrabackup]` and `[innoxide]` sections (the most specific wins).
    pub fn fill_from(&mut self, file: &OptionFile) {
        let sections = ["innoxide", "xtrabackup", "client"];
        if self.user.is_none() {
            self.user = file.get(&sections, "user").map(str::to_owned);
        }
        if self.password.is_none() {
            self.password = file.get(&sections, "password").map(Secret::new);
        }
        if self.host.is_none() {
            self.host = file.get(&sections, "host").map(str::to_owned);
        }
        if self.port.is_none() {
            self.port = file.get(&sections, "port").and_then(|p| p.parse().ok());
        }
        if self.socket.is_none() {
            self.socket = file.get(&sections, "socket").map(PathBuf::from);
        }
    }

    /// A human description of the target, with no secret in it.
    pub fn target(&self) -> String {
        let user = self.user.as_deref().unwrap_or("root");
        match (&self.socket, &self.host) {
            (Some(socket), _) => format!("{user}@unix:{}", socket.display()),
            (None, host) => format!(
                "{user}@{}:{}",
                host.as_deref().unwrap_or("localhost"),
                self.port.unwrap_or(3306)
            ),
        }
    }

    fn opts(&self) -> Opts {
        let mut builder = OptsBuilder::default()
            .user(Some(self.user.clone().unwrap_or_else(|| "root".into())))
            .pass(self.password.as_ref().map(|p| p.expose().to_owned()))
            .prefer_socket(false)
            .stmt_cache_size(0)
            // Names our sessions in performance_schema.session_connect_attrs:
            // operators see who they are, and adaptive pacing leaves them out
            // of the server's own load.
            .connect_attribute("program_name", PROGRAM_NAME)
            // The server's maximum (one year): the control session sits idle
            // under the backup lock for the whole copy, and the default 8 h
            // would end it (and the backup) on a long one.
            .wait_timeout(Some(31_536_000))
            .tcp_keepalive(Some(Duration::from_secs(10)));
        if let Some(socket) = &self.socket {
            builder = builder.socket(Some(socket.to_string_lossy().into_owned()));
        } else {
            builder = builder
                .ip_or_hostname(self.host.clone().unwrap_or_else(|| "127.0.0.1".into()))
                .tcp_port(self.port.unwrap_or(3306));
        }
        builder.into()
    }
}

/// The `program_name` connection attribute of every session the agent opens.
pub const PROGRAM_NAME: &str = "innoxide-agent";

/// Opens one session. Sessions are cheap and each holds its own server-side
/// state (the backup lock, the redo consumer), so the engine opens several.
pub async fn connect(options: &ConnectOptions) -> Result<Conn> {
    let connecting = Conn::new(options.opts());
    match tokio::time::timeout(Duration::from_secs(30), connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(Error::Connect {
            target: options.target(),
            source,
        }),
        Err(_) => Err(Error::Connect {
            target: options.target(),
            source: mysql_async::Error::Other("no answer within 30 s".into()),
        }),
    }
}
