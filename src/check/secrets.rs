//! Secrets for the chains table-check and the tests start: a peer secret
//! and a client secret in files of their own (mode 0600) in a fresh
//! directory, removed on drop. Chains run the way the README starts them,
//! with peers and clients authenticated.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::client::connection::ClientOptions;
use crate::secure::challenge::fresh_nonce;
use crate::secure::secret::Secret;

pub struct ClusterSecrets {
    directory: PathBuf,
}

impl ClusterSecrets {
    /// Makes a directory with a fresh `peer.secret` and `client.secret`.
    pub fn create() -> io::Result<ClusterSecrets> {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "chaintable-secrets-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&directory)?;
        fs::set_permissions(&directory, fs::Permissions::from_mode(0o700))?;
        let secrets = ClusterSecrets { directory };
        for path in [secrets.peer_file(), secrets.client_file()] {
            write_secret(&path)?;
        }
        Ok(secrets)
    }

    pub fn peer_file(&self) -> PathBuf {
        self.directory.join("peer.secret")
    }

    pub fn client_file(&self) -> PathBuf {
        self.directory.join("client.secret")
    }

    /// The arguments that give a server both secrets.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--peer-secret-file".to_owned(),
            self.peer_file().display().to_string(),
            "--client-secret-file".to_owned(),
            self.client_file().display().to_string(),
        ]
    }

    /// Client options that prove the client secret.
    pub fn client_options(&self, base: ClientOptions) -> io::Result<ClientOptions> {
        let secret = Secret::load(&self.client_file()).map_err(io::Error::other)?;
        Ok(ClientOptions { secret: Some(secret.client_key()), ..base })
    }
}

/// A new random secret (hex) in a new file only its owner can read.
fn write_secret(path: &Path) -> io::Result<()> {
    let secret: String =
        fresh_nonce().map_err(io::Error::other)?.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    io::Write::write_all(&mut file, secret.as_bytes())
}

impl Drop for ClusterSecrets {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.directory);
    }
}
