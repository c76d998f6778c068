//! DNS-over-TLS server configuration: the certificate chain and key from PEM
//! files, reloaded when either file changes. A bad file at start-up is an
//! error; a bad file at reload is logged and the previous certificate kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::filewatch::FileStamp;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("certificate {cert} and key {key} do not form a usable TLS configuration: {reason}")]
    Config {
        cert: String,
        key: String,
        reason: String,
    },
}

/// Loads a server configuration for DoT (ALPN `dot`, TLS 1.2 and 1.3, ring).
/// With `client_ca`, clients must present a certificate it signed (mutual TLS).
pub fn load_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let file_err = |p: &Path, reason: String| TlsError::File {
        path: p.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(cert, "no PEM certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match client_ca {
        None => None,
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| file_err(ca, e.to_string()))? {
                roots
                    .add(c.map_err(|e| file_err(ca, e.to_string()))?)
                    .map_err(|e| file_err(ca, e.to_string()))?;
            }
            Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| file_err(ca, e.to_string()))?,
            )
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| match verifier {
            Some(v) => b.with_client_cert_verifier(v).with_single_cert(certs, key_der),
            None => b.with_no_client_auth().with_single_cert(certs, key_der),
        })
        .map_err(|e| TlsError::Config {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"dot".to_vec()];
    Ok(Arc::new(config))
}

/// Polls the certificate and key every `period` and swaps in a new
/// configuration when they change and load cleanly.
pub async fn watch(
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    shared: Arc<ArcSwap<ServerConfig>>,
    period: Duration,
    cancel: CancellationToken,
) {
    let mut last = FileStamp::of_all(&[&cert, &key]);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = FileStamp::of_all(&[&cert, &key]);
        if now == last || now.is_none() {
            continue;
        }
        last = now;
        match load_server_config(&cert, &key, client_ca.as_deref()) {
            Ok(cfg) => {
                shared.store(cfg);
                tracing::info!(cert = %cert.display(), "DNS-over-TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!("DNS-over-TLS certificate reload rejected, keeping the previous one: {e}")
            }
        }
    }
}
