//! TLS on the listener: the server's certificate chain and private key read from PEM files
//! (`--tls-cert` / `--tls-key`), the rustls configuration each new connection takes, and its
//! reload on SIGHUP. A reload swaps the configuration that connections accepted from then on
//! use; connections already open keep the one they started with.
//!
//! The server speaks HTTP/1.1 only, so that is the one protocol it offers over ALPN.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, bail};
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The TLS files of a server and the configuration last read from them.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS from the two paths of the serve options: `None` when neither is set, an error when
    /// only one is or when the files cannot be used.
    pub fn from_paths(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Option<Self>> {
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                bail!(
                    "--tls-cert (BATCHD_TLS_CERT, tls_cert) is set but --tls-key is not: TLS needs both"
                )
            }
            (None, Some(_)) => {
                bail!(
                    "--tls-key (BATCHD_TLS_KEY, tls_key) is set but --tls-cert is not: TLS needs both"
                )
            }
        };
        let config = load(cert, key)?;
        Ok(Some(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(config),
        }))
    }

    /// What accepts the next connection: the configuration current at this moment.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Reads both files again; on success new connections use them, on failure nothing changes.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// Reloads on every `signal` (SIGHUP), logging the outcome; runs until the stream ends.
    #[cfg(unix)]
    pub async fn reload_on(self: Arc<Self>, mut signal: tokio::signal::unix::Signal) {
        while signal.recv().await.is_some() {
            match self.reload() {
                Ok(()) => tracing::info!(
                    cert = %self.cert.display(),
                    key = %self.key.display(),
                    "TLS certificate reloaded: new connections use it"
                ),
                Err(err) => tracing::error!(
                    error = format!("{err:#}"),
                    "TLS reload failed; keeping the certificate in use"
                ),
            }
        }
    }
}

/// Reads a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1) from PEM
/// files into a server configuration. Errors name the file and what is wrong with it, and never
/// quote the key.
fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow!(
                "TLS certificate file {}: {}",
                cert_path.display(),
                pem_error(e)
            )
        })?;
    if chain.is_empty() {
        bail!(
            "TLS certificate file {}: no PEM CERTIFICATE block in it",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow!(
            "TLS key file {}: no PEM private key block (PKCS#8, PKCS#1 or SEC1) in it",
            key_path.display()
        ),
        e => anyhow!("TLS key file {}: {}", key_path.display(), pem_error(e)),
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => anyhow!(
                "TLS key file {} does not belong to the first certificate of {}",
                key_path.display(),
                cert_path.display()
            ),
            e => anyhow!(
                "TLS certificate {} with key {}: {e}",
                cert_path.display(),
                key_path.display()
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A PEM reading error in words, without the bytes of the file (they may be a key).
fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        pem::Error::NoItemsFound => "no PEM block of the expected kind in it".into(),
        pem::Error::MissingSectionEnd { .. } => "not valid PEM: a block has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "not valid PEM: a malformed BEGIN line".into(),
        pem::Error::Base64Decode(_) => "not valid PEM: a block is not valid base64".into(),
        e => format!("not valid PEM: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn error(cert: &Path, key: &Path) -> String {
        format!("{:#}", Tls::from_paths(Some(cert), Some(key)).unwrap_err())
    }

    #[test]
    fn reads_pkcs8_and_pkcs1_keys_and_offers_http1_only() {
        for name in ["server-a", "server-b"] {
            let tls = Tls::from_paths(
                Some(&fixture(&format!("{name}.pem"))),
                Some(&fixture(&format!("{name}.key"))),
            )
            .unwrap()
            .unwrap();
            assert_eq!(
                tls.current.read().unwrap().alpn_protocols,
                vec![b"http/1.1".to_vec()]
            );
        }
        assert!(Tls::from_paths(None, None).unwrap().is_none());
    }

    #[test]
    fn bad_files_name_the_file_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let a = fixture("server-a.pem");
        let a_key = fixture("server-a.key");
        let err = error(&a, &fixture("server-b.key"));
        assert!(err.contains("server-b.key does not belong"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = error(&missing, &a_key);
        assert!(err.contains("missing.pem: cannot read it"), "{err}");
        let err = error(&a_key, &a_key);
        assert!(
            err.contains("server-a.key: no PEM CERTIFICATE block"),
            "{err}"
        );
        let err = error(&a, &a);
        assert!(
            err.contains("key file") && err.contains("server-a.pem: no PEM private key"),
            "{err}"
        );
        // A truncated key: the message says so without quoting any of it.
        let key = std::fs::read_to_string(&a_key).unwrap();
        let cut = dir.path().join("cut.key");
        std::fs::write(&cut, &key[..key.len() - 30]).unwrap();
        let err = error(&a, &cut);
        assert!(err.contains("cut.key: not valid PEM"), "{err}");
        let body: String = key.lines().nth(1).unwrap().chars().take(16).collect();
        assert!(!err.contains(&body), "{err}");
        let only = Tls::from_paths(Some(&a), None).unwrap_err().to_string();
        assert!(
            only.contains("--tls-key") && only.contains("both"),
            "{only}"
        );
        let only = Tls::from_paths(None, Some(&a_key)).unwrap_err().to_string();
        assert!(
            only.contains("--tls-cert") && only.contains("both"),
            "{only}"
        );
    }
}
