//! TLS with rustls (ring provider, TLS 1.2 and 1.3): the client-facing server config
//! (certificate chain, key, optional client-certificate verification) and the upstream
//! client config. Certificates and keys are PEM files read through `rustls-pki-types`.
//! The server config lives in an [`ArcSwap`] so SIGHUP can replace it: new handshakes use
//! the new certificate, established connections keep theirs.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{TlsConfig, UpstreamTlsConfig};
use crate::error::ProxyError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn tls_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Tls(format!("{what} {}: {e}", path.display()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err("cannot read certificates from", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("invalid certificate PEM in", path, e))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate in", path, "empty PEM"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProxyError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_err("cannot read a private key from", path, e))
}

fn load_roots(path: &Path) -> Result<RootCertStore, ProxyError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| tls_err("unusable CA certificate in", path, e))?;
    }
    Ok(roots)
}

/// Build the client-facing server config from `cfg`'s files.
///
/// # Errors
/// [`ProxyError::Tls`] naming the file when a certificate, key or CA cannot be used.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, ProxyError> {
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(load_roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| tls_err("cannot verify clients with", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key do not match:", &cfg.cert, e))?;
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// The current server config, replaceable at run time.
pub(crate) struct ServerTls {
    config: ArcSwap<ServerConfig>,
    /// Deadline for a client's handshake.
    pub handshake_timeout: std::time::Duration,
}

impl ServerTls {
    pub fn new(cfg: &TlsConfig) -> Result<ServerTls, ProxyError> {
        Ok(ServerTls {
            config: ArcSwap::new(server_config(cfg)?),
            handshake_timeout: cfg.handshake_timeout,
        })
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Use `config` (from [`server_config`]) for new handshakes.
    pub fn install(&self, config: Arc<ServerConfig>) {
        self.config.store(config);
    }
}

/// The upstream connector: trusted roots from `cfg.ca` (else the system's PEM bundle at
/// `/etc/ssl/certs/ca-certificates.crt`), an optional client certificate, and the name to
/// verify.
pub(crate) struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

/// Where Debian keeps the system's trusted CAs.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl UpstreamTls {
    pub fn new(cfg: &UpstreamTlsConfig) -> Result<UpstreamTls, ProxyError> {
        let roots = match &cfg.ca {
            Some(ca) => load_roots(ca)?,
            None => load_roots(Path::new(SYSTEM_ROOTS))?,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&cfg.cert, &cfg.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| tls_err("client certificate and key do not match:", cert, e))?,
            _ => builder.with_no_client_auth(),
        };
        let server_name = cfg
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .map_err(|e| ProxyError::Tls(format!("upstream.tls.server_name {n:?}: {e}")))
            })
            .transpose()?;
        Ok(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The connector and the name to verify for a node at `host` (the configured
    /// `server_name`, else the node's host as the cluster reports it).
    pub fn for_host(
        &self,
        host: &str,
    ) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), String> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| format!("server name {host:?}: {e}"))?,
        };
        Ok((self.connector.clone(), name))
    }
}
