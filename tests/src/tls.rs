//! Throwaway certificates for TLS tests (rcgen): a CA, a server certificate for
//! `localhost`/`127.0.0.1` signed by it, a client certificate signed by it, and a "rogue"
//! client certificate from a CA nobody trusts. Written as PEM files into a temp dir.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and certificates signed by it, as PEM files.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    /// The CA certificate (trust anchor for servers and clients).
    pub ca: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A client certificate from another CA.
    pub rogue_cert: PathBuf,
    /// Its key.
    pub rogue_key: PathBuf,
}

fn new_ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn leaf(
    cn: &str,
    purpose: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, &KeyPair>,
) -> (String, String) {
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![purpose];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl TestPki {
    /// A fresh CA with server, client and rogue client certificates.
    pub fn generate() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        // A unique CA name per call: a client trusting another TestPki's CA then fails with
        // "unknown issuer", not a signature mismatch between two same-named CAs.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ca_params = new_ca_params(&format!("slotgate test CA {}-{n}", std::process::id()));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let path = |name: &str| dir.path().join(name);
        write(&path("ca.crt"), &ca_cert.pem());
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (c, k) = leaf(
            "slotgate server",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        write(&path("server.crt"), &c);
        write(&path("server.key"), &k);
        let (c, k) = leaf("app client", ExtendedKeyUsagePurpose::ClientAuth, &issuer);
        write(&path("client.crt"), &c);
        write(&path("client.key"), &k);

        let rogue_key = KeyPair::generate().expect("key");
        let rogue_params = new_ca_params("rogue CA");
        let rogue_issuer = Issuer::from_params(&rogue_params, &rogue_key);
        let (c, k) = leaf(
            "rogue client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_issuer,
        );
        write(&path("rogue.crt"), &c);
        write(&path("rogue.key"), &k);

        TestPki {
            ca: path("ca.crt"),
            server_cert: path("server.crt"),
            server_key: path("server.key"),
            client_cert: path("client.crt"),
            client_key: path("client.key"),
            rogue_cert: path("rogue.crt"),
            rogue_key: path("rogue.key"),
            ca_key,
            ca_params,
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new server certificate and key from the same CA, with common name `cn`, written
    /// to `<cn>.crt` / `<cn>.key`; returns (cert, key) paths.
    pub fn issue_server(&self, cn: &str) -> (PathBuf, PathBuf) {
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let (c, k) = leaf(cn, ExtendedKeyUsagePurpose::ServerAuth, &issuer);
        let cert = self.dir.path().join(format!("{cn}.crt"));
        let key = self.dir.path().join(format!("{cn}.key"));
        write(&cert, &c);
        write(&key, &k);
        (cert, key)
    }

    /// `tls:` config lines for slotgate with this server certificate (and `client_ca`
    /// when `mtls`).
    pub fn slotgate_tls_yaml(&self, mtls: bool) -> String {
        let mut s = format!(
            "tls:\n  cert: \"{}\"\n  key: \"{}\"\n",
            self.server_cert.display(),
            self.server_key.display()
        );
        if mtls {
            s.push_str(&format!("  client_ca: \"{}\"\n", self.ca.display()));
        }
        s
    }

    /// `redis-cli` TLS arguments trusting this CA (and presenting the client certificate
    /// when `with_client_cert`).
    pub fn cli_args(&self, with_client_cert: bool) -> Vec<String> {
        let mut v = vec![
            "--tls".to_string(),
            "--cacert".to_string(),
            self.ca.display().to_string(),
        ];
        if with_client_cert {
            v.extend([
                "--cert".to_string(),
                self.client_cert.display().to_string(),
                "--key".to_string(),
                self.client_key.display().to_string(),
            ]);
        }
        v
    }
}
