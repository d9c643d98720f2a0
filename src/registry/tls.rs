//! TLS for registries: rustls with the system's roots plus the CAs of `--cert-dir` and
//! `certs.d/HOST[:PORT]/` (`*.crt`), a client certificate from there (`*.cert` + `*.key`), or
//! no checks at all with `--tls-verify=false`. The system's roots are read the first time a
//! certificate is checked, not when the client is made: a plain-HTTP registry never pays for
//! them, and a system without any still reaches a registry whose CA was given.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::RegistryError;

/// The rustls configuration for a host, with the CAs and client certificate found in
/// `cert_dirs`.
pub fn client_config(
    cert_dirs: &[PathBuf],
    tls_verify: bool,
) -> Result<rustls::ClientConfig, RegistryError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut extra = Vec::new();
    let mut identity = None;
    for dir in cert_dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        names.sort();
        for p in &names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    let certs = read_certs(p)?;
                    tracing::debug!(ca = %p.display(), n = certs.len(), "extra CA");
                    extra.extend(certs);
                }
                Some("cert") => {
                    let key_path = p.with_extension("key");
                    let certs = read_certs(p)?;
                    let key =
                        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| bad(&key_path, &e))?;
                    tracing::debug!(cert = %p.display(), "client certificate");
                    identity = Some((certs, key));
                }
                _ => {}
            }
        }
    }
    let verifier = Arc::new(Verifier {
        provider: provider.clone(),
        roots: tls_verify.then(|| Roots {
            extra,
            verifier: OnceLock::new(),
        }),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Certificates {
            path: PathBuf::from("(TLS settings)"),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config =
        match identity {
            Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| {
                RegistryError::Certificates {
                    path: PathBuf::from("(client certificate)"),
                    reason: e.to_string(),
                }
            })?,
            None => builder.with_no_client_auth(),
        };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn bad(path: &Path, e: &dyn std::fmt::Display) -> RegistryError {
    RegistryError::Certificates {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, &e))?;
    if certs.is_empty() {
        return Err(bad(path, &"it holds no PEM certificate"));
    }
    Ok(certs)
}

/// How server certificates are checked: WebPKI against the system's roots and the extra CAs
/// (built on first use), or, with `--tls-verify=false` (`roots` None), not at all. The
/// handshake's signatures are checked either way, so the connection is at least to whoever
/// holds the certificate's key.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    roots: Option<Roots>,
}

#[derive(Debug)]
struct Roots {
    extra: Vec<CertificateDer<'static>>,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl Verifier {
    fn webpki<'a>(&self, roots: &'a Roots) -> Result<&'a Arc<WebPkiServerVerifier>, rustls::Error> {
        roots
            .verifier
            .get_or_init(|| {
                let mut store = rustls::RootCertStore::empty();
                for c in &roots.extra {
                    store
                        .add(c.clone())
                        .map_err(|e| format!("an extra CA cannot be used: {e}"))?;
                }
                let native = rustls_native_certs::load_native_certs();
                let (added, ignored) = store.add_parsable_certificates(native.certs);
                tracing::debug!(added, ignored, extra = roots.extra.len(), "root certificates");
                if store.is_empty() {
                    return Err("no CA certificates: the system has none (install ca-certificates) and none were given (`--cert-dir`)".into());
                }
                WebPkiServerVerifier::builder_with_provider(store.into(), self.provider.clone())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| {
                // A certificate error (never taken for a server that does not speak TLS).
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(std::io::Error::other(e.clone()))),
                ))
            })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.roots {
            Some(roots) => self.webpki(roots)?.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
